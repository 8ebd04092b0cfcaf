/**
 * Proxy-mode sessions (design.md section 3): the gateway as the DM server of its end devices. The
 * same `ServerSession` the DM Server simulator uses runs over whatever a proxy driver carries.
 *
 *   execute(device, commands) --> ServerSession(initiation = a fresh SessionID, commands enqueued)
 *                             --> driver.notify(address, Pkg#0)      (keyed with the device's SRVCRED)
 *   device's Package 1 ---------> handler(from, message, route) --> session.receive --> answer
 *   ... until the session ends --> per-command records, or one gateway-made status:
 *        504 no answer in time, 503 unreachable (notify failed, no driver), 502 invalid response
 *        (undecodable, wrong session, protocol broken, device aborted), 401 authentication failed
 *        either way, 514 cancelled, 413 the commands cannot fit the device's limits.
 *
 * Decisions:
 * - `execute` never rejects for what a device did and always settles by its deadline: a timer set at
 *   the deadline settles it with 504, an abort with 514. A message that arrives for a settled
 *   session is refused (404), so a late device cannot act on a job that gave up on it.
 * - One session at a time per device: a second `execute` for the same device waits its turn within
 *   its own deadline.
 * - The first message of a session names its device in the SyncHdr Source; it is decoded once here
 *   to route it (later messages come with the route the binding kept: RespURI token, topic, port).
 *   On MQTT the topic names the device too, and the two must agree.
 * - A device may start a session itself (client-initiated: a Generic Alert, a DevInfo change): it is
 *   served with no commands when the gateway holds its account, refused (403) otherwise.
 * - Nonces are stored from every outcome (ServerSession reports what to persist even on failure),
 *   so a device that was challenged authenticates next time.
 * - With enrolment configured, an unknown device's own session runs on the account derived from the
 *   shared secret (device-accounts.ts); the account is stored only once the device authenticated.
 */
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import type {
  DeviceAddress,
  DeviceAnswer,
  DeviceCommandResult,
  GatewayMadeStatus,
  DeviceMessageHandler,
  DmMessage,
  ProxyDriver,
  TransportKind,
} from "../../drivers/driver.js";
import { isGatewayError } from "../core/errors.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import { buildPackage0, package0Credentials, PACKAGE0_VERSION, sessionIdText } from "../dm/package0.js";
import {
  ServerSession,
  type CommandRecord,
  type SessionErrorCode,
  type SessionOutcome,
} from "../dm/server-session.js";
import { tryDecodeMessage, type Command } from "../syncml/index.js";
import {
  enrolledAccount,
  type DeviceAccount,
  type DeviceAccounts,
  type Enrolment,
  type NewDeviceAccount,
} from "./device-accounts.js";

export type { GatewayMadeStatus } from "../../drivers/driver.js";

export type DeviceOutcome =
  | {
      readonly kind: "replied";
      /** One result per command, in the order given (the shape adaptation devices answer in too). */
      readonly results: readonly DeviceCommandResult[];
      /** The session's records of the commands (what went out under which CmdIDs, every Status). */
      readonly records: readonly CommandRecord[];
      readonly outcome: SessionOutcome;
    }
  | { readonly kind: "failed"; readonly status: GatewayMadeStatus; readonly reason: string };

export interface ProxyTarget {
  readonly deviceId: string;
  readonly address: DeviceAddress;
}

export interface ExecuteOptions {
  /** The outcome is settled within this many ms. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface ProxySessionsOptions {
  readonly accounts: DeviceAccounts;
  /** "dmgw:southbound:proxy". */
  readonly log?: Logger;
  readonly randomBytes?: (size: number) => Uint8Array;
  /** Source LocURI of our replies; default "dmgw". */
  readonly serverUri?: string;
  /** The largest message we accept from a device; default 64 KiB. */
  readonly maxMsgSize?: number;
  /** The largest object we accept from a device; default 4 MiB. */
  readonly maxObjSize?: number;
  /** How long a device-initiated session may sit idle before it is dropped, ms; default 60 s. */
  readonly idleMs?: number;
  /** Lets devices without an account enrol with the site's shared secret (device-accounts.ts). */
  readonly enrolment?: Enrolment;
  /**
   * Every finished session (its DevInfo, alerts, records), with where the device's first message
   * came from: the registry keeps the inventory.
   */
  readonly onSession?: (deviceId: string, from: DeviceAddress, outcome: SessionOutcome) => void;
}

interface Live {
  readonly deviceId: string;
  readonly transport: TransportKind;
  /** Where the device's first message came from (for a session it started, its only address). */
  from: DeviceAddress | undefined;
  /** The account a device is enrolling with: stored once the device authenticated. */
  readonly enrolling: NewDeviceAccount | undefined;
  readonly session: ServerSession;
  readonly route: string;
  /** The device's Package 1 arrived. */
  started: boolean;
  /** A message of this session is being handled. */
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Settles an `execute`; undefined for a device-initiated session. */
  readonly settle: ((outcome: DeviceOutcome) => void) | undefined;
  readonly idleMs: number | undefined;
  done: boolean;
}

const DEFAULT_MAX_MSG = 64 * 1024;
const DEFAULT_MAX_OBJ = 4 * 1024 * 1024;
const DEFAULT_IDLE_MS = 60_000;
const ZERO_NONCE = new Uint8Array(4);

const ERROR_STATUS: Readonly<Record<SessionErrorCode, GatewayMadeStatus>> = {
  "content-type": 502,
  decode: 502,
  protocol: 502,
  "unexpected-device": 502,
  "wrong-session": 502,
  aborted: 502,
  "auth-failed": 401,
  "server-auth-rejected": 401,
  "command-too-large": 413,
  "object-too-large": 413,
  encode: 500,
};

export class ProxySessions {
  /** Give this to every proxy driver (`ctx.onMessage`). */
  readonly handler: DeviceMessageHandler;
  readonly #o: ProxySessionsOptions;
  readonly #log: Logger;
  readonly #random: (size: number) => Uint8Array;
  readonly #drivers = new Map<TransportKind, ProxyDriver>();
  readonly #byRoute = new Map<string, Live>();
  /** Sessions started by `execute`, waiting for or in their Package 1, by device. */
  readonly #byDevice = new Map<string, Live>();
  /**
   * Started sessions of bindings without routes (mqtt, serial), by `transport|address`: the channel
   * says who talks (the topic's device id, the port), so a message that does not even decode still
   * reaches the session it breaks (502) instead of leaving it to time out.
   */
  readonly #byChannel = new Map<string, Live>();
  /** The tail of each device's queue of `execute` calls. */
  readonly #turns = new Map<string, Promise<void>>();
  /** Counters since start, for metrics and `./DMGW` (stats()). */
  #sessions = 0;
  #codecErrors = 0;

  constructor(options: ProxySessionsOptions) {
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
    this.#random = options.randomBytes ?? ((n) => new Uint8Array(cryptoRandomBytes(n)));
    this.handler = (from, message, route) => Promise.resolve(this.#handle(from, message, route));
  }

  /** Routes notifications of `driver.kind` devices through this driver. */
  attach(driver: ProxyDriver): void {
    this.#drivers.set(driver.kind, driver);
  }

  /** Sessions open now (started by `execute` or by a device). */
  get active(): number {
    return this.#byRoute.size;
  }

  /**
   * Counters since start: sessions opened (either side started them), and device messages that did
   * not decode (a first message refused 400, or a session ended by a `decode` error).
   */
  stats(): { readonly active: number; readonly sessions: number; readonly codecErrors: number } {
    return { active: this.#byRoute.size, sessions: this.#sessions, codecErrors: this.#codecErrors };
  }

  /**
   * Runs `commands` on the device in one server-initiated session. Never rejects; settles within
   * `timeoutMs`.
   */
  async execute(
    target: ProxyTarget,
    commands: readonly Command[],
    options: ExecuteOptions,
  ): Promise<DeviceOutcome> {
    const deadline = Date.now() + options.timeoutMs;
    const id = target.deviceId;
    const previous = this.#turns.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#turns.set(id, tail);
    try {
      const waited = await this.#waitTurn(previous, deadline, options.signal);
      if (waited !== undefined) return waited;
      return await this.#run(target, commands, deadline, options.signal);
    } finally {
      release();
      if (this.#turns.get(id) === tail) this.#turns.delete(id);
    }
  }

  /** Drops every open session (their `execute` calls settle 514). */
  close(): void {
    for (const live of [...this.#byRoute.values()]) {
      this.#finish(live, { kind: "failed", status: 514, reason: "the gateway is stopping" });
    }
  }

  async #waitTurn(
    previous: Promise<void>,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<DeviceOutcome | undefined> {
    if (signal?.aborted === true) return { kind: "failed", status: 514, reason: "cancelled" };
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<DeviceOutcome>((resolve) => {
      timer = setTimeout(
        () => {
          resolve({ kind: "failed", status: 504, reason: "the device was busy with another session" });
        },
        Math.max(0, deadline - Date.now()),
      );
      onAbort = () => {
        resolve({ kind: "failed", status: 514, reason: "cancelled" });
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([previous.then(() => undefined), stop]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
    }
  }

  async #run(
    target: ProxyTarget,
    commands: readonly Command[],
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<DeviceOutcome> {
    const id = target.deviceId;
    const account = this.#o.accounts.get(id);
    if (account === undefined) {
      return { kind: "failed", status: 401, reason: "the gateway holds no account for the device" };
    }
    const driver = this.#drivers.get(target.address.transport);
    if (driver === undefined) {
      return { kind: "failed", status: 503, reason: `no ${target.address.transport} driver is running` };
    }
    const idBytes = this.#random(2);
    const sessionNumber = (((idBytes[0] ?? 0) << 8) | (idBytes[1] ?? 0)) % 0xffff || 1;
    const sessionId = sessionIdText(sessionNumber);
    let settle!: (outcome: DeviceOutcome) => void;
    const result = new Promise<DeviceOutcome>((resolve) => {
      settle = resolve;
    });
    const live = this.#open(account, target.address.transport, driver, { sessionId }, settle, undefined);
    live.session.enqueue(commands);
    this.#byDevice.set(id, live);
    live.timer = setTimeout(
      () => {
        this.#finish(live, {
          kind: "failed",
          status: 504,
          reason: live.started
            ? "the device stopped answering"
            : "the device did not answer the notification",
        });
      },
      Math.max(0, deadline - Date.now()),
    );
    const onAbort = (): void => {
      this.#finish(live, { kind: "failed", status: 514, reason: "cancelled" });
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted === true) onAbort();
    const package0 = this.#package0(account, sessionNumber);
    if (!live.done) {
      try {
        await driver.notify(target.address, package0);
      } catch (e) {
        const reason = isGatewayError(e) ? e.message : `notification failed: ${String(e)}`;
        this.#finish(live, { kind: "failed", status: 503, reason });
      }
    }
    try {
      return await result;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  #open(
    account: DeviceAccount,
    transport: TransportKind,
    driver: ProxyDriver,
    initiation: { readonly sessionId: string } | "client",
    settle: ((outcome: DeviceOutcome) => void) | undefined,
    idleMs: number | undefined,
    enrolling?: NewDeviceAccount,
  ): Live {
    let route = Buffer.from(this.#random(16)).toString("hex");
    while (this.#byRoute.has(route)) route = Buffer.from(this.#random(16)).toString("hex");
    const respUri = driver.respUri(route);
    const session = new ServerSession({
      serverUri: this.#o.serverUri ?? "dmgw",
      expectedDevice: account.deviceId,
      clientAuth: account.clientAuth,
      serverAuth: account.serverAuth,
      clientNonce: account.nonces.client,
      serverNonce: account.nonces.server,
      randomBytes: (n) => this.#random(n),
      initiation,
      maxMsgSize: this.#o.maxMsgSize ?? DEFAULT_MAX_MSG,
      maxObjSize: this.#o.maxObjSize ?? DEFAULT_MAX_OBJ,
      ...(respUri !== undefined && { respUri }),
    });
    const live: Live = {
      deviceId: account.deviceId,
      transport,
      from: undefined,
      enrolling,
      session,
      route,
      started: false,
      busy: false,
      timer: undefined,
      settle,
      idleMs,
      done: false,
    };
    this.#byRoute.set(route, live);
    this.#sessions++;
    return live;
  }

  #package0(account: DeviceAccount, sessionNumber: number): Uint8Array {
    return buildPackage0(
      {
        version: PACKAGE0_VERSION,
        uiMode: "background",
        initiator: "server",
        sessionId: sessionNumber,
        serverId: account.serverId,
        vendorSpecific: new Uint8Array(0),
      },
      package0Credentials(account.serverId, account.serverAuth, account.nonces.server),
    );
  }

  #handle(from: DeviceAddress, message: DmMessage, route: string | undefined): DeviceAnswer {
    let live = route === undefined ? undefined : this.#byRoute.get(route);
    if (route !== undefined && live === undefined) {
      return { kind: "refused", status: 404, reason: "no such session (it ended or timed out)" };
    }
    if (route === undefined && from.transport !== "http") live = this.#byChannel.get(channelKey(from));
    if (live === undefined) {
      const first = this.#firstMessage(from, message);
      if (first.kind === "refused") return first;
      live = first.live;
    }
    if (live.transport !== from.transport) {
      return { kind: "refused", status: 403, reason: `the session runs over ${live.transport}` };
    }
    if (live.busy)
      return { kind: "refused", status: 400, reason: "a message of this session is in progress" };
    if (!live.started && from.transport !== "http") this.#byChannel.set(channelKey(from), live);
    live.started = true;
    live.from ??= from;
    live.busy = true;
    try {
      this.#touch(live);
      const step = live.session.receive(message.body, message.contentType, message.headers);
      const reply = step.kind === "reply" ? step : step.reply;
      if (step.kind === "end") this.#ended(live, step.outcome);
      if (reply === undefined) return { kind: "ended" };
      const answer = { body: reply.body, contentType: reply.contentType, headers: reply.headers };
      return step.kind === "end"
        ? { kind: "reply", message: answer, last: true }
        : { kind: "reply", message: answer };
    } finally {
      live.busy = false;
    }
  }

  /** Routes the first message of a session by the device its SyncHdr names. */
  #firstMessage(
    from: DeviceAddress,
    message: DmMessage,
  ): { readonly kind: "live"; readonly live: Live } | (DeviceAnswer & { readonly kind: "refused" }) {
    const decoded = tryDecodeMessage(message.body);
    if (!decoded.ok) {
      this.#codecErrors++;
      this.#log.warn("a device sent a message that does not decode", {
        transport: from.transport,
        address: from.address,
        code: decoded.error.code,
        bytes: message.body.length,
        head: message.body.subarray(0, 16),
      });
      return { kind: "refused", status: 400, reason: `the message does not decode (${decoded.error.code})` };
    }
    const deviceId = decoded.value.message.hdr.source.locUri;
    if (from.transport === "mqtt" && from.address !== deviceId) {
      return { kind: "refused", status: 403, reason: "the message names another device than its topic" };
    }
    const waiting = this.#byDevice.get(deviceId);
    if (waiting !== undefined && !waiting.started) return { kind: "live", live: waiting };
    const stored = this.#o.accounts.get(deviceId);
    const enrolment = this.#o.enrolment;
    const enrolling =
      stored === undefined && enrolment !== undefined ? enrolledAccount(deviceId, enrolment) : undefined;
    const account: DeviceAccount | undefined =
      stored ??
      (enrolling === undefined
        ? undefined
        : { ...enrolling, nonces: { client: ZERO_NONCE, server: ZERO_NONCE } });
    const driver = this.#drivers.get(from.transport);
    if (account === undefined || driver === undefined) {
      this.#log.warn("a session from an unknown device was refused", {
        transport: from.transport,
        address: from.address,
        deviceId,
      });
      return { kind: "refused", status: 403, reason: "unknown device" };
    }
    // A device-initiated session: served with no commands; dropped when it goes quiet.
    const live = this.#open(
      account,
      from.transport,
      driver,
      "client",
      undefined,
      this.#o.idleMs ?? DEFAULT_IDLE_MS,
      enrolling,
    );
    return { kind: "live", live };
  }

  /** Re-arms the idle timer of a device-initiated session. */
  #touch(live: Live): void {
    if (live.idleMs === undefined) return;
    clearTimeout(live.timer);
    live.timer = setTimeout(() => {
      this.#log.debug(() => `dropping the idle session of ${live.deviceId}`);
      this.#finish(live, { kind: "failed", status: 504, reason: "idle" });
    }, live.idleMs);
  }

  #ended(live: Live, outcome: SessionOutcome): void {
    const nonces = { client: outcome.nextClientNonce, server: outcome.nextServerNonce };
    if (live.enrolling === undefined) {
      this.#o.accounts.saveNonces(live.deviceId, nonces);
    } else if (outcome.authenticated) {
      // Enrolled: the device proved it holds the derived secret.
      this.#o.accounts.put({ ...live.enrolling, nonces });
      this.#log.info("a device enrolled with the shared secret", { deviceId: live.deviceId });
    } else {
      this.#log.warn("a device failed to enrol (wrong enrolment credentials)", { deviceId: live.deviceId });
      this.#finish(live, { kind: "failed", status: 401, reason: "enrolment failed" });
      return;
    }
    try {
      this.#o.onSession?.(live.deviceId, live.from ?? { transport: live.transport, address: "" }, outcome);
    } catch (e) {
      this.#log.error("an onSession listener threw", { error: e instanceof Error ? e.message : String(e) });
    }
    const error = outcome.error;
    if (error === undefined) {
      this.#finish(live, {
        kind: "replied",
        results: outcome.commands.map(commandResult),
        records: outcome.commands,
        outcome,
      });
    } else {
      if (error.code === "decode") this.#codecErrors++;
      this.#log.warn(`the session with ${live.deviceId} failed: ${error.reason}`, {
        deviceId: live.deviceId,
        code: error.code,
      });
      this.#finish(live, { kind: "failed", status: ERROR_STATUS[error.code], reason: error.reason });
    }
  }

  #finish(live: Live, outcome: DeviceOutcome): void {
    if (live.done) return;
    live.done = true;
    clearTimeout(live.timer);
    this.#byRoute.delete(live.route);
    if (this.#byDevice.get(live.deviceId) === live) this.#byDevice.delete(live.deviceId);
    if (live.from !== undefined && this.#byChannel.get(channelKey(live.from)) === live) {
      this.#byChannel.delete(channelKey(live.from));
    }
    live.settle?.(outcome);
  }
}

function channelKey(from: DeviceAddress): string {
  return `${from.transport}|${from.address}`;
}

function commandResult(record: CommandRecord): DeviceCommandResult {
  return {
    status: record.status,
    items: record.results.flatMap((r) => r.items),
    inner: record.inner.map(commandResult),
  };
}
