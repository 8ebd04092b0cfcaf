/**
 * The cellular modem as a WAP Push source (protocol.md 5.3-5.4): SMS in PDU mode, the WDP datagrams
 * addressed to port 2948 reassembled and handed to a callback; every other stored SMS is deleted and
 * counted. I/O lives here; framing is in `at.ts`, the PDU codec in `sms-pdu.ts`, reassembly in
 * `concat.ts`.
 *
 *   ByteLink (SerialPort, recreated per connection)
 *     | bytes                                         ^ "AT...\r"
 *     v                                               |
 *   AtSession (one command in flight, deadlines) --- Modem#command()
 *     | +CMTI: "SM",3 / +CMT:                         ^
 *     v                                               |
 *   work queue (one job at a time): AT+CMGR=i -> decodeSmsDeliver -> port 2948?
 *     | no: AT+CMGD=i, counted
 *     v yes
 *   Reassembler (parts keep their storage slot) -> complete -> onPush(data) -> AT+CMGD each part
 *
 * Storage is the durable buffer: a part waits in its slot until its message is complete (or dropped
 * after the reassembly timeout), so a restart re-reads it with `AT+CMGL=4`. Delivery is therefore at
 * least once: a push handed over just before the link dies, and not yet deleted, comes again after
 * the reconnect (the DM layer starts one session per notification session id, protocol.md 5.1).
 *
 * Link loss (the read side ends or fails, a write fails, a command times out) puts the modem in
 * `degraded` and reconnects with exponential backoff and jitter, creating a new link from the
 * factory each time (style.md 2.13.1); the init sequence and the storage drain run again.
 */
import { backoffDelay, type BackoffOptions } from "../../src/core/backoff.js";
import { isGatewayError, type GatewayError } from "../../src/core/errors.js";
import {
  AtSession,
  parseCmti,
  parseStoredPdus,
  splitParams,
  type AtOutcome,
  type AtUrc,
  type StoredPdu,
} from "./at.js";
import { Reassembler, type DroppedMessage, type ReassemblerOptions } from "./concat.js";
import { ModemErrorCode, modemError } from "./errors.js";
import { serialLinkFactory, type ByteLink, type ByteLinkFactory } from "../../src/core/byte-link.js";
import { MTI_DELIVER, WAP_PUSH_PORT, hexToBytes, tpduMessageType, tryDecodeSmsDeliver } from "./sms-pdu.js";

export type ModemState = "stopped" | "starting" | "ready" | "degraded" | "stopping";

/** A WAP Push datagram as received, after reassembly. */
export interface WapPush {
  readonly originator: string;
  readonly destinationPort: number;
  readonly sourcePort: number;
  /** The WDP payload (the connectionless WSP Push PDU), all parts joined. */
  readonly data: Uint8Array;
  readonly parts: number;
  /** Service centre timestamp of the part that completed the message, when valid. */
  readonly timestampMs: number | undefined;
}

/** The modem's logger ("dmgw:board:modem"); debug text is built lazily. */
export interface ModemLogger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: () => string): void;
}

const SILENT: ModemLogger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
};

export interface ModemCounters {
  /** Received messages read (stored or `+CMT`). */
  readonly received: number;
  /** Pushes handed to `onPush`. */
  readonly pushes: number;
  /** Messages not for the push port (or not SMS-DELIVER), deleted. */
  readonly ignored: number;
  /** Messages that failed to decode, deleted. */
  readonly malformed: number;
  /** Parts seen before, deleted. */
  readonly duplicates: number;
  /** Incomplete pushes dropped after the reassembly timeout (their parts deleted). */
  readonly expired: number;
  /** Incomplete pushes dropped to stay within the pending bound (their parts deleted). */
  readonly evicted: number;
  /** `onPush` threw or rejected. */
  readonly handlerErrors: number;
  /** `AT+CMGD` answered with an error. */
  readonly deleteFailures: number;
  /** Times the link was lost while in use. */
  readonly linkLosses: number;
  /** Successful reconnections after a loss. */
  readonly reconnects: number;
}

/** The modem's reconnect policy; defaults: 500 ms, doubling, capped at 30 s, ±20 % jitter. */
export type ReconnectOptions = BackoffOptions;

const RECONNECT_DEFAULTS: Required<BackoffOptions> = {
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.2,
};

export interface ModemOptions {
  /** Serial device from the board profile or config, e.g. `/dev/serial/by-id/usb-...-if02-port0`. */
  readonly path: string;
  /** Default 115200. */
  readonly baudRate?: number;
  /** Overrides the link (tests, in-memory simulator); default: a new `SerialPort` on `path` per call. */
  readonly link?: ByteLinkFactory;
  /**
   * Receives each push once it is complete. The parts are deleted after it returns (or its promise
   * settles), whether or not it failed; a failure is logged and counted, never propagated.
   */
  readonly onPush: (push: WapPush) => void | Promise<void>;
  /** State changes; `cause` with `degraded`. A throwing listener is logged and ignored. */
  readonly onState?: (state: ModemState, cause?: GatewayError) => void;
  /** WDP destination port to accept; default 2948. */
  readonly pushPort?: number;
  /** Message storage for `AT+CPMS="<m>","<m>","<m>"`; default: keep the modem's (queried with AT+CPMS?). */
  readonly storage?: string;
  /** `AT+CNMI` parameters; default "2,1,0,0,0" (store, announce with +CMTI). */
  readonly cnmi?: string;
  /** Per-command deadline; default 5000 ms. */
  readonly commandTimeoutMs?: number;
  /** Deadline of `AT+CMGL=4` (a full SIM lists slowly); default 30 000 ms. */
  readonly listTimeoutMs?: number;
  readonly reassembly?: ReassemblerOptions;
  readonly reconnect?: ReconnectOptions;
  readonly log?: ModemLogger;
  /** Clock for deadlines and reassembly; default `Date.now`. Timers are real. */
  readonly now?: () => number;
  /** Random source for the backoff jitter; default `Math.random`. */
  readonly random?: () => number;
}

interface PendingCommand {
  readonly text: string;
  readonly timeoutMs: number;
  readonly callerStack: string | undefined;
  readonly resolve: (o: AtOutcome) => void;
  readonly reject: (e: GatewayError) => void;
}

/** Where a stored message lives: `${mem}:${index}`; "" for a `+CMT` that was never stored. */
type Slot = string;

const slotOf = (mem: string, index: number): Slot => `${mem}:${index}`;

function parseSlot(slot: Slot): { mem: string; index: number } | undefined {
  const at = slot.lastIndexOf(":");
  if (at < 0) return undefined;
  return { mem: slot.slice(0, at), index: Number(slot.slice(at + 1)) };
}

/** `mem` unknown: the modem's current read storage is used. */
const CURRENT_MEM = "?";

export class Modem {
  readonly #options: ModemOptions;
  #state: ModemState = "stopped";
  #lifeGen = 0; // bumped by stop(): stale start/reconnect work notices and gives up
  #linkGen = 0; // bumped whenever a link is dropped: its stale read loop and writes are ignored
  #link: ByteLink | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #session: AtSession | undefined;
  #pending = new Map<number, PendingCommand>();
  #atTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #work: Promise<void> = Promise.resolve();
  #queuedSlots = new Set<Slot>();
  #readMem: string = CURRENT_MEM;
  #reassembler: Reassembler<Slot> | undefined;
  #counters = {
    received: 0,
    pushes: 0,
    ignored: 0,
    malformed: 0,
    duplicates: 0,
    handlerErrors: 0,
    deleteFailures: 0,
    linkLosses: 0,
    reconnects: 0,
  };

  constructor(options: ModemOptions) {
    this.#options = options;
  }

  get state(): ModemState {
    return this.#state;
  }

  /** A snapshot of the counters (they survive stop/start). */
  get counters(): ModemCounters {
    const r = this.#reassembler?.counters;
    return { ...this.#counters, expired: r?.expired ?? 0, evicted: r?.evicted ?? 0 };
  }

  /** Incomplete pushes waiting for parts. */
  get pendingPushes(): number {
    return this.#reassembler?.pendingCount ?? 0;
  }

  get #log(): ModemLogger {
    return this.#options.log ?? SILENT;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  /**
   * Opens the link, runs the init sequence and starts draining storage; resolves once `ready`.
   * Idempotent: while starting it returns the same promise; when ready or degraded it resolves at
   * once. Rejects with `Modem_StartFailed` (cause: the first failure) and leaves the modem `stopped`.
   */
  start(): Promise<void> {
    if (this.#state === "ready" || this.#state === "degraded") return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#stopping !== undefined) await this.#stopping;
    const life = ++this.#lifeGen;
    this.#reassembler ??= new Reassembler<Slot>(this.#options.reassembly);
    this.#setState("starting");
    try {
      await this.#connect(life);
    } catch (e) {
      await this.#dropLink(modemError("modem start failed", ModemErrorCode.Link_Closed, { cause: e }));
      if (life === this.#lifeGen) this.#setState("stopped");
      throw modemError(`modem on ${this.#options.path} did not start`, ModemErrorCode.Modem_StartFailed, {
        cause: e,
        context: { path: this.#options.path },
      });
    }
    this.#attempt = 0;
    this.#setState("ready");
    this.#log.info(`modem ready on ${this.#options.path}`);
    this.#enqueueDrain();
  }

  /**
   * Closes the link, cancels every timer and waits for the work in progress to end. Idempotent, safe
   * after a failed start, never rejects; afterwards no handle of the modem is left.
   */
  stop(): Promise<void> {
    if (this.#state === "stopped" && this.#starting === undefined) return Promise.resolve();
    this.#stopping ??= this.#stop().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const starting = this.#starting; // a start() that began after this stop() waits for it instead
    try {
      this.#lifeGen++;
      this.#setState("stopping");
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = undefined;
      clearTimeout(this.#expiryTimer);
      this.#expiryTimer = undefined;
      await this.#dropLink(modemError("modem stopped", ModemErrorCode.Link_Closed));
      await this.#work;
      await starting?.catch(() => undefined);
      this.#reassembler?.clear(); // the parts stay in storage and are listed again at the next start
      this.#queuedSlots.clear();
    } catch (e) {
      this.#log.error(`modem stop: ${describe(e)}`);
    } finally {
      this.#setState("stopped");
    }
  }

  /** Resolves when the queued work (reads, deletions, deliveries) has run; for tests and tools. */
  async idle(): Promise<void> {
    let seen: Promise<void> | undefined;
    while (seen !== this.#work) {
      seen = this.#work;
      await seen;
    }
  }

  // ---- connection ------------------------------------------------------------------------------

  async #connect(life: number): Promise<void> {
    const factory =
      this.#options.link ??
      serialLinkFactory({
        path: this.#options.path,
        ...(this.#options.baudRate === undefined ? {} : { baudRate: this.#options.baudRate }),
      });
    let link: ByteLink;
    try {
      link = await factory();
    } catch (e) {
      throw isGatewayError(e)
        ? e
        : modemError(`cannot open ${this.#options.path}`, ModemErrorCode.Link_OpenFailed, {
            cause: e,
            context: { path: this.#options.path },
          });
    }
    if (life !== this.#lifeGen) {
      await link.close();
      throw modemError("modem stopped while connecting", ModemErrorCode.Link_Closed);
    }
    this.#attach(link);
    this.#log.info(`modem link up on ${this.#options.path}`);
    await this.#init();
  }

  #attach(link: ByteLink): void {
    const gen = ++this.#linkGen;
    this.#link = link;
    this.#writer = link.writable.getWriter();
    this.#reader = link.readable.getReader();
    this.#session = new AtSession({ defaultTimeoutMs: this.#options.commandTimeoutMs ?? 5000 });
    void this.#readLoop(this.#reader, gen);
  }

  async #readLoop(reader: ReadableStreamDefaultReader<Uint8Array>, gen: number): Promise<void> {
    let cause: unknown;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done || gen !== this.#linkGen) break;
        this.#log.debug(() => `« ${JSON.stringify(Buffer.from(r.value).toString("latin1"))}`);
        this.#session?.receive(r.value, this.#now());
        this.#pump();
      }
    } catch (e) {
      cause = e;
    }
    if (gen === this.#linkGen) {
      this.#linkLost(modemError("modem link closed", ModemErrorCode.Link_Closed, { cause }));
    }
  }

  /** The init sequence (TS 27.005): echo off, PDU mode, storage, new-message indications. */
  async #init(): Promise<void> {
    // The first command after opening may meet line noise or an echo; try "AT" a few times.
    let synced = false;
    for (let i = 0; i < 3 && !synced; i++) {
      try {
        synced = (await this.#command("AT", { timeoutMs: 2000 })).kind === "ok";
      } catch (e) {
        if (!isGatewayError(e) || e.code !== ModemErrorCode.Modem_Timeout) throw e;
      }
    }
    if (!synced)
      throw modemError("modem does not answer AT", ModemErrorCode.Modem_Timeout, {
        context: { command: "AT" },
      });
    await this.#expectOk("ATE0");
    await this.#command("AT+CMEE=1"); // numeric +CME/+CMS errors; refusal is harmless
    await this.#expectOk("AT+CMGF=0");
    const storage = this.#options.storage;
    if (storage !== undefined) {
      await this.#expectOk(`AT+CPMS="${storage}","${storage}","${storage}"`);
      this.#readMem = storage;
    } else {
      const q = await this.#command("AT+CPMS?");
      const line = q.kind === "ok" ? q.lines.find((l) => l.startsWith("+CPMS:")) : undefined;
      const mem = line === undefined ? undefined : splitParams(line.slice("+CPMS:".length).trim())[0];
      this.#readMem = mem !== undefined && mem !== "" ? mem : CURRENT_MEM;
    }
    await this.#expectOk(`AT+CNMI=${this.#options.cnmi ?? "2,1,0,0,0"}`);
  }

  #linkLost(cause: GatewayError): void {
    if (this.#state === "stopping" || this.#state === "stopped") return;
    this.#counters.linkLosses++;
    this.#log.warn(`modem link lost: ${cause.message}`);
    void this.#dropLink(cause);
    // While starting or reconnecting, the failed command ends that attempt, which decides what next.
    if (this.#state === "ready") {
      this.#setState("degraded", cause);
      this.#scheduleReconnect();
    }
  }

  async #dropLink(cause: GatewayError): Promise<void> {
    const link = this.#link;
    const session = this.#session;
    const reader = this.#reader;
    this.#linkGen++;
    this.#link = undefined;
    this.#session = undefined;
    this.#reader = undefined;
    this.#writer = undefined;
    clearTimeout(this.#atTimer);
    this.#atTimer = undefined;
    if (session !== undefined) {
      session.abortAll(cause.message);
      for (const c of session.drain().completions) {
        const p = this.#pending.get(c.id);
        this.#pending.delete(c.id);
        p?.reject(cause);
      }
    }
    await reader?.cancel().catch(() => undefined);
    await link?.close().catch(() => undefined);
  }

  #scheduleReconnect(): void {
    const delay = backoffDelay(
      this.#attempt,
      this.#options.reconnect ?? {},
      RECONNECT_DEFAULTS,
      this.#options.random,
    );
    this.#attempt++;
    this.#log.debug(() => `modem reconnect #${this.#attempt} in ${delay} ms`);
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#reconnect();
    }, delay);
  }

  async #reconnect(): Promise<void> {
    const life = this.#lifeGen;
    try {
      await this.#connect(life);
    } catch (e) {
      if (life !== this.#lifeGen) return;
      this.#log.debug(() => `modem reconnect failed: ${describe(e)}`);
      await this.#dropLink(modemError("reconnect failed", ModemErrorCode.Link_Closed, { cause: e }));
      if (life === this.#lifeGen) this.#scheduleReconnect();
      return;
    }
    if (life !== this.#lifeGen) return;
    this.#attempt = 0;
    this.#counters.reconnects++;
    this.#setState("ready");
    this.#log.info(`modem link restored on ${this.#options.path}`);
    this.#enqueueDrain();
  }

  #setState(state: ModemState, cause?: GatewayError): void {
    if (this.#state === state) return;
    this.#state = state;
    try {
      if (cause === undefined) this.#options.onState?.(state);
      else this.#options.onState?.(state, cause);
    } catch (e) {
      this.#log.error(`modem onState listener threw: ${describe(e)}`);
    }
  }

  // ---- AT commands -----------------------------------------------------------------------------

  /**
   * Runs one command. Resolves with `ok` or `error` (the modem said no: a value); rejects with
   * `Modem_Timeout` (context: `command`, `awaited`, `timeoutMs`) or `Link_Closed`.
   */
  #command(text: string, opts: { readonly timeoutMs?: number } = {}): Promise<AtOutcome> {
    const session = this.#session;
    if (session === undefined) {
      return Promise.reject(
        modemError(`no modem link for ${text}`, ModemErrorCode.Link_Closed, { context: { command: text } }),
      );
    }
    // Waiters remember their caller (style.md 2.13.7): the rejection carries this stack.
    const callerStack = new Error().stack;
    const timeoutMs = opts.timeoutMs ?? this.#options.commandTimeoutMs ?? 5000;
    return new Promise<AtOutcome>((resolve, reject) => {
      const id = session.enqueue({ text, timeoutMs }, this.#now());
      this.#pending.set(id, { text, timeoutMs, callerStack, resolve, reject });
      this.#pump();
    });
  }

  async #expectOk(text: string, opts: { readonly timeoutMs?: number } = {}): Promise<readonly string[]> {
    const out = await this.#command(text, opts);
    if (out.kind !== "ok") {
      throw modemError(`modem refused ${text}`, ModemErrorCode.Modem_CommandFailed, {
        context: { command: text, final: out.kind === "error" ? out.final : out.kind },
      });
    }
    return out.lines;
  }

  /** Applies what the AT session produced: writes, completions, URCs. */
  #pump(): void {
    const session = this.#session;
    if (session === undefined) return;
    for (;;) {
      const step = session.drain();
      if (
        step.writes.length +
          step.completions.length +
          step.urcs.length +
          step.unexpected.length +
          step.discarded.length ===
        0
      ) {
        break;
      }
      for (const w of step.writes) this.#write(w);
      for (const d of step.discarded) {
        this.#log.warn(`modem: discarded ${d.bytes.length} bytes (${d.reason}): ${hexHead(d.bytes)}`);
      }
      for (const u of step.unexpected) this.#log.debug(() => `modem: unexpected ${JSON.stringify(u)}`);
      for (const c of step.completions) {
        const p = this.#pending.get(c.id);
        this.#pending.delete(c.id);
        if (p === undefined) continue;
        const o = c.outcome;
        if (o.kind === "ok" || o.kind === "error") p.resolve(o);
        else if (o.kind === "timeout") {
          const err = modemError(
            `no ${o.awaited} for ${p.text} within ${p.timeoutMs} ms`,
            ModemErrorCode.Modem_Timeout,
            {
              context: { command: p.text, awaited: o.awaited, timeoutMs: p.timeoutMs },
            },
          );
          if (p.callerStack !== undefined)
            err.stack = `${err.name}: ${err.message}\n${p.callerStack.split("\n").slice(1).join("\n")}`;
          p.reject(err);
        } else
          p.reject(
            modemError(`${p.text} aborted: ${o.reason}`, ModemErrorCode.Link_Closed, {
              context: { command: p.text },
            }),
          );
      }
      for (const u of step.urcs) this.#urc(u);
    }
    this.#armAtTimer(session);
  }

  #write(bytes: Uint8Array): void {
    const writer = this.#writer;
    const gen = this.#linkGen;
    if (writer === undefined) return;
    this.#log.debug(() => `» ${JSON.stringify(Buffer.from(bytes).toString("latin1"))}`);
    writer.write(bytes).catch((e: unknown) => {
      if (gen === this.#linkGen)
        this.#linkLost(modemError("write to the modem failed", ModemErrorCode.Link_Closed, { cause: e }));
    });
  }

  #armAtTimer(session: AtSession): void {
    clearTimeout(this.#atTimer);
    this.#atTimer = undefined;
    const deadline = session.nextDeadline();
    if (deadline === undefined) return;
    this.#atTimer = setTimeout(
      () => {
        this.#atTimer = undefined;
        if (this.#session !== session) return;
        session.tick(this.#now());
        this.#pump();
      },
      Math.max(0, deadline - this.#now()),
    );
  }

  // ---- messages --------------------------------------------------------------------------------

  #urc(u: AtUrc): void {
    switch (u.name) {
      case "+CMTI":
      case "+CDSI": {
        const at = parseCmti(u.line);
        if (at === undefined) {
          this.#log.warn(`modem: malformed ${JSON.stringify(u.line)}`);
          return;
        }
        // With the read storage unknown (AT+CPMS? failed) the drain filed slots under "?"; do the same
        // here, or one stored part would pass for two.
        this.#enqueueSlot(slotOf(this.#readMem === CURRENT_MEM ? CURRENT_MEM : at.mem, at.index));
        return;
      }
      case "+CMT": {
        const params = splitParams(u.line.slice(u.line.indexOf(":") + 1).trim());
        const length = Number(params[params.length - 1]);
        const hex = u.pdu ?? "";
        this.#enqueue(() => this.#handleStored("", { index: undefined, stat: 0, length, hex }));
        return;
      }
      default:
        this.#log.debug(() => `modem: ignored ${JSON.stringify(u.line)}`);
    }
  }

  #enqueue(job: () => Promise<void>): void {
    this.#work = this.#work.then(job).catch((e: unknown) => {
      this.#jobFailed(e);
    });
  }

  #jobFailed(e: unknown): void {
    if (this.#state === "stopping" || this.#state === "stopped") return;
    if (isGatewayError(e) && e.code === ModemErrorCode.Modem_Timeout) {
      // A late answer could be taken for the next command's: start over on a fresh link.
      this.#linkLost(e);
      return;
    }
    if (isGatewayError(e) && e.code === ModemErrorCode.Link_Closed) {
      this.#log.debug(() => `modem job ended with the link: ${e.message}`);
      return;
    }
    this.#log.error(`modem job failed: ${describe(e)}`);
  }

  #enqueueSlot(slot: Slot): void {
    if (this.#queuedSlots.has(slot)) return;
    this.#queuedSlots.add(slot);
    this.#enqueue(async () => {
      this.#queuedSlots.delete(slot);
      await this.#readSlot(slot);
    });
  }

  #enqueueDrain(): void {
    this.#enqueue(async () => {
      const out = await this.#command("AT+CMGL=4", { timeoutMs: this.#options.listTimeoutMs ?? 30_000 });
      if (out.kind !== "ok") {
        this.#log.warn(`modem: AT+CMGL=4 refused (${describe(out)})`);
        return;
      }
      const { messages, rejected } = parseStoredPdus(out.lines, "+CMGL");
      for (const r of rejected)
        this.#log.warn(`modem: unparsable +CMGL line ${JSON.stringify(r.slice(0, 80))}`);
      this.#log.debug(() => `modem: ${messages.length} stored message(s)`);
      for (const m of messages) {
        const slot = slotOf(this.#readMem, m.index ?? -1);
        if (this.#reassembler?.holds(slot) === true) continue;
        await this.#handleStored(slot, m);
      }
    });
  }

  async #selectMem(mem: string): Promise<void> {
    if (mem === CURRENT_MEM || mem === this.#readMem) return;
    await this.#expectOk(`AT+CPMS="${mem}"`);
    this.#readMem = mem;
  }

  async #readSlot(slot: Slot): Promise<void> {
    const where = parseSlot(slot);
    if (where === undefined) return;
    if (this.#reassembler?.holds(slot) === true) return; // a part already waiting for its siblings
    await this.#selectMem(where.mem);
    const out = await this.#command(`AT+CMGR=${where.index}`);
    if (out.kind !== "ok") {
      this.#log.debug(() => `modem: ${slot} not readable (${describe(out)})`);
      return;
    }
    const { messages, rejected } = parseStoredPdus(out.lines, "+CMGR");
    const m = messages[0];
    if (m === undefined) {
      if (rejected.length > 0)
        this.#log.warn(
          `modem: unparsable +CMGR answer for ${slot}: ${JSON.stringify(rejected[0]?.slice(0, 80))}`,
        );
      return;
    }
    await this.#handleStored(slot, m);
  }

  async #handleStored(slot: Slot, m: StoredPdu): Promise<void> {
    if (m.stat === 2 || m.stat === 3) {
      this.#log.debug(() => `modem: ${slot} holds an outgoing message; left alone`);
      return;
    }
    this.#counters.received++;
    let pdu: Uint8Array;
    try {
      pdu = hexToBytes(m.hex);
    } catch {
      this.#counters.malformed++;
      this.#log.warn(
        `modem: ${slot}: PDU is not hex (${m.hex.length} chars: ${JSON.stringify(m.hex.slice(0, 32))})`,
      );
      await this.#deleteSlot(slot);
      return;
    }
    const mti = tpduMessageType(pdu);
    if (mti !== MTI_DELIVER) {
      this.#counters.ignored++;
      this.#log.debug(() => `modem: ${slot}: not an SMS-DELIVER (TP-MTI ${String(mti)}); deleted`);
      await this.#deleteSlot(slot);
      return;
    }
    const decoded = tryDecodeSmsDeliver(pdu, { tpduLength: m.length });
    if (!decoded.ok) {
      this.#counters.malformed++;
      this.#log.warn(
        `modem: ${slot}: malformed SMS (${decoded.error.message}), ${pdu.length} bytes: ${hexHead(pdu)}`,
      );
      await this.#deleteSlot(slot);
      return;
    }
    const sms = decoded.value;
    const ports = sms.udh?.ports;
    const pushPort = this.#options.pushPort ?? WAP_PUSH_PORT;
    if (ports === undefined || ports.destination !== pushPort) {
      this.#counters.ignored++;
      this.#log.debug(
        () => `modem: ${slot}: SMS from ${sms.originator.value} not for port ${pushPort}; deleted`,
      );
      await this.#deleteSlot(slot);
      return;
    }
    if (sms.coding.alphabet !== "8bit" || sms.coding.compressed) {
      // WDP over SMS carries octets (8-bit data coding); anything else cannot be a WSP datagram.
      this.#counters.ignored++;
      this.#log.warn(
        `modem: ${slot}: SMS to port ${pushPort} with DCS 0x${sms.dcs.toString(16)} (not 8-bit); deleted`,
      );
      await this.#deleteSlot(slot);
      return;
    }
    const push = (data: Uint8Array, parts: number): WapPush => ({
      originator: sms.originator.value,
      destinationPort: ports.destination,
      sourcePort: ports.source,
      data,
      parts,
      timestampMs: sms.timestamp.epochMs,
    });
    const concat = sms.udh?.concat;
    const reassembler = (this.#reassembler ??= new Reassembler<Slot>(this.#options.reassembly));
    if (concat === undefined || concat.total === 1) {
      await this.#deliver(push(sms.payload, 1));
      await this.#deleteSlot(slot);
      return;
    }
    const { result, dropped } = reassembler.add(
      { originator: sms.originator.value, ...concat, data: sms.payload, tag: slot },
      this.#now(),
    );
    await this.#release(dropped);
    switch (result.kind) {
      case "complete":
        await this.#deliver(push(result.data, result.tags.length));
        for (const s of result.tags) await this.#deleteSlot(s);
        break;
      case "pending":
        this.#log.debug(() => `modem: ${slot}: part ${concat.sequence}/${concat.total} of ${result.key}`);
        this.#armExpiry();
        break;
      case "duplicate":
        this.#counters.duplicates++;
        await this.#deleteSlot(slot);
        break;
      case "invalid":
        this.#counters.malformed++;
        await this.#deleteSlot(slot);
        break;
    }
  }

  async #deliver(push: WapPush): Promise<void> {
    this.#counters.pushes++;
    this.#log.debug(
      () => `modem: push from ${push.originator}, ${push.data.length} bytes in ${push.parts} part(s)`,
    );
    try {
      await this.#options.onPush(push);
    } catch (e) {
      this.#counters.handlerErrors++;
      this.#log.error(`modem: onPush failed: ${describe(e)}`);
    }
  }

  async #deleteSlot(slot: Slot): Promise<void> {
    const where = parseSlot(slot);
    if (where === undefined) return; // a +CMT delivery was never stored
    await this.#selectMem(where.mem);
    const out = await this.#command(`AT+CMGD=${where.index}`);
    if (out.kind !== "ok") {
      this.#counters.deleteFailures++;
      this.#log.warn(`modem: AT+CMGD=${where.index} refused (${describe(out)})`);
    }
  }

  async #release(dropped: readonly DroppedMessage<Slot>[]): Promise<void> {
    for (const d of dropped) {
      this.#log.warn(
        `modem: incomplete push ${d.key} dropped (${d.reason}) with ${d.received}/${d.total} parts`,
      );
      for (const s of d.tags) await this.#deleteSlot(s);
    }
  }

  #armExpiry(): void {
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    const deadline = this.#reassembler?.nextDeadline();
    if (deadline === undefined) return;
    this.#expiryTimer = setTimeout(
      () => {
        this.#expiryTimer = undefined;
        const dropped = this.#reassembler?.expire(this.#now()) ?? [];
        if (dropped.length > 0) this.#enqueue(() => this.#release(dropped));
        this.#armExpiry();
      },
      Math.max(0, deadline - this.#now()),
    );
  }
}

function describe(x: unknown): string {
  if (x instanceof Error) return x.message;
  if (typeof x === "object" && x !== null && "kind" in x) {
    const o = x as AtOutcome;
    return o.kind === "error" ? `${o.final.kind}${"text" in o.final ? ` ${o.final.text}` : ""}` : o.kind;
  }
  return String(x);
}

function hexHead(bytes: Uint8Array): string {
  return Buffer.from(bytes.subarray(0, 16)).toString("hex") + (bytes.length > 16 ? "…" : "");
}
