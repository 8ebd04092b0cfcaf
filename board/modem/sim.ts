/**
 * A cellular modem simulator speaking the AT subset dmgw uses (TS 27.007 / 27.005, PDU mode), for
 * tests, the demo and benches. It runs in-process on any `ByteLink` (the far end of a socat pty pair,
 * or a memory pair), or as its own process:
 *
 *   node --import tsx board/modem/sim.ts /path/to/pty
 *     stdin:  pdu <hex>                      store a PDU (with its SMSC field), signal +CMTI
 *             push <hex> [originator] [max]  a WAP Push to port 2948, split when longer than max
 *             text <originator> <text...>    a plain GSM 7-bit text
 *             list                           print the stored slots
 *     stdout: "ready" once the port is open, then one line per stdin command
 *
 *   host bytes --> line / prompt-body assembler --> behaviours (overridable) --> built-in commands
 *   inject*()  --> storage slots --> +CMTI: "SM",<index>   (or +CMT: when AT+CNMI mt=2)
 *
 * Responses use the V1 format (`\r\n<line>\r\n`); the CMGS prompt is `\r\n> ` with no line end.
 */
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { CTRL_Z, ESC, splitParams } from "./at.js";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import {
  MAX_UD_OCTETS,
  WAP_PUSH_PORT,
  WAP_PUSH_SOURCE_PORT,
  bytesToHex,
  encodeSmsDeliver,
  hexToBytes,
} from "./sms-pdu.js";

export interface StoredSms {
  readonly index: number;
  /** 0 received unread, 1 received read. */
  stat: number;
  /** The PDU with its SMSC field. */
  readonly pdu: Uint8Array;
}

/**
 * What a behaviour answers: lines then OK (or its own final), nothing at all (`silent`, a hung
 * modem), or `undefined` to fall through to the next behaviour and the built-in commands.
 */
export type SimReply =
  { readonly lines?: readonly string[]; readonly final?: string; readonly silent?: boolean } | undefined;

/** A scripted override (zwave-js `defineBehavior` style): sees each command line first. */
export type SimBehavior = (command: string, sim: ModemSimulator) => SimReply;

export interface ModemSimulatorOptions {
  /** Bytes from the simulated modem to the host; default: dropped until `attachSimulator` sets it. */
  readonly write?: (bytes: Uint8Array) => void;
  /** Storage name reported in +CMTI and +CPMS; default "SM". */
  readonly mem?: string;
  /** Storage slots; default 30. */
  readonly capacity?: number;
  /** First storage index; default 1 (some modems count from 0). */
  readonly firstIndex?: number;
}

const encoder = new TextEncoder();
const CTRL_Z_CHAR = String.fromCharCode(CTRL_Z);
const ESC_CHAR = String.fromCharCode(ESC);

export class ModemSimulator {
  /** Every command line received, in order (for assertions). */
  readonly commands: string[] = [];
  /** Indices deleted by AT+CMGD, in order. */
  readonly deleted: number[] = [];
  /** PDUs submitted with AT+CMGS (hex as received). */
  readonly submitted: string[] = [];
  echo = true;
  pduMode = false;
  /** AT+CNMI parameters <mode>,<mt>,<bm>,<ds>,<bfr>. */
  cnmi: readonly number[] = [0, 0, 0, 0, 0];

  #write: (bytes: Uint8Array) => void;
  readonly #mem: string;
  readonly #capacity: number;
  readonly #firstIndex: number;
  readonly #slots = new Map<number, StoredSms>();
  readonly #behaviors: SimBehavior[] = [];
  #buf = "";
  #body: { readonly length: number } | undefined; // collecting a CMGS body after the prompt
  #messageRef = 0;

  constructor(options: ModemSimulatorOptions = {}) {
    this.#write = options.write ?? (() => undefined);
    this.#mem = options.mem ?? "SM";
    this.#capacity = options.capacity ?? 30;
    this.#firstIndex = options.firstIndex ?? 1;
  }

  /** Where the simulator's bytes go from now on (a new link after a reconnect); input state resets. */
  setOutput(write: (bytes: Uint8Array) => void): void {
    this.#write = write;
    this.#buf = "";
    this.#body = undefined;
  }

  /** Adds an override consulted before the built-in commands; returns a function removing it. */
  defineBehavior(behavior: SimBehavior): () => void {
    this.#behaviors.unshift(behavior);
    return () => {
      const i = this.#behaviors.indexOf(behavior);
      if (i >= 0) this.#behaviors.splice(i, 1);
    };
  }

  /** The occupied storage slots, by index. */
  stored(): readonly StoredSms[] {
    return [...this.#slots.values()].sort((a, b) => a.index - b.index);
  }

  /** Writes raw bytes to the host (for tests of odd modem output). */
  emit(text: string | Uint8Array): void {
    this.#write(typeof text === "string" ? encoder.encode(text) : text);
  }

  /**
   * A message arrives from the network: stored and announced with `+CMTI` when AT+CNMI <mt> is 1,
   * delivered as `+CMT` without storing when <mt> is 2, stored silently when <mt> is 0. Returns the
   * storage index, or `undefined` when delivered directly. Throws when the storage is full.
   */
  injectPdu(pdu: Uint8Array): number | undefined {
    const mt = this.cnmi[1] ?? 0;
    if (mt === 2) {
      const tpduLength = pdu.length - 1 - (pdu[0] ?? 0);
      this.emit(`\r\n+CMT: ,${tpduLength}\r\n${bytesToHex(pdu)}\r\n`);
      return undefined;
    }
    let index = this.#firstIndex;
    while (this.#slots.has(index)) index++;
    if (index >= this.#firstIndex + this.#capacity) throw new Error("simulated SMS storage is full");
    this.#slots.set(index, { index, stat: 0, pdu });
    if (mt === 1) this.emit(`\r\n+CMTI: "${this.#mem}",${index}\r\n`);
    return index;
  }

  /** A WAP Push (WDP to port 2948 by default) as one or more SMS; returns their indices. */
  injectWapPush(data: Uint8Array, options: WapPushPduOptions = {}): (number | undefined)[] {
    return wapPushPdus(data, options).map((pdu) => this.injectPdu(pdu));
  }

  /** A plain GSM 7-bit text message. */
  injectText(originator: string, text: string): number | undefined {
    return this.injectPdu(encodeSmsDeliver({ originator, text, smsc: "+491710760000" }));
  }

  /** Bytes from the host. */
  receive(chunk: Uint8Array): void {
    this.#buf += Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
    for (;;) {
      if (this.#body !== undefined) {
        const end = indexOfBodyEnd(this.#buf);
        if (end < 0) return;
        const body = this.#buf.slice(0, end).trim();
        const cancelled = this.#buf.charCodeAt(end) === ESC;
        this.#buf = this.#buf.slice(end + 1);
        this.#body = undefined;
        if (cancelled) this.#respond([], "OK");
        else this.#submit(body);
        continue;
      }
      const end = this.#buf.search(/[\r\n]/);
      if (end < 0) return;
      const line = this.#buf.slice(0, end).trim();
      this.#buf = this.#buf.slice(end + 1);
      if (line === "") continue;
      if (this.echo) this.emit(`${line}\r`);
      this.commands.push(line);
      this.#command(line);
    }
  }

  #command(line: string): void {
    for (const b of this.#behaviors) {
      const reply = b(line, this);
      if (reply !== undefined) {
        if (reply.silent !== true) this.#respond(reply.lines ?? [], reply.final ?? "OK");
        return;
      }
    }
    const upper = line.toUpperCase();
    if (!upper.startsWith("AT")) {
      this.#respond([], "ERROR");
      return;
    }
    const cmd = upper.slice(2);
    const eq = cmd.indexOf("=");
    const name = eq < 0 ? cmd : cmd.slice(0, eq);
    const arg = eq < 0 ? undefined : line.slice(2 + eq + 1);
    const ints =
      arg === undefined ? [] : splitParams(arg).map((p) => (/^\d+$/.test(p) ? Number(p) : Number.NaN));

    switch (name) {
      case "":
      case "Z":
      case "&F":
        this.#respond([], "OK");
        return;
      case "E0":
      case "E":
        this.echo = false;
        this.#respond([], "OK");
        return;
      case "E1":
        this.echo = true;
        this.#respond([], "OK");
        return;
      case "I":
      case "+CGMI":
        this.#respond(["dmgw modem simulator"], "OK");
        return;
      case "+CMEE":
        this.#respond([], "OK");
        return;
      case "+CSQ":
        this.#respond(["+CSQ: 21,99"], "OK");
        return;
      case "+CREG?":
        this.#respond(["+CREG: 0,1"], "OK");
        return;
      case "+CMGF?":
        this.#respond([`+CMGF: ${this.pduMode ? 0 : 1}`], "OK");
        return;
      case "+CMGF":
        if (ints[0] === 0 || ints[0] === 1) {
          this.pduMode = ints[0] === 0;
          this.#respond([], "OK");
        } else this.#respond([], "ERROR");
        return;
      case "+CNMI":
        if (ints.length >= 2 && ints.every((n) => !Number.isNaN(n))) {
          this.cnmi = ints;
          this.#respond([], "OK");
        } else this.#respond([], "ERROR");
        return;
      case "+CPMS?":
        this.#respond(
          [`+CPMS: ${[1, 2, 3].map(() => `"${this.#mem}",${this.#slots.size},${this.#capacity}`).join(",")}`],
          "OK",
        );
        return;
      case "+CPMS": {
        const mems = splitParams(arg ?? "");
        if (mems.some((m) => m !== "" && m !== this.#mem)) {
          this.#respond([], "+CMS ERROR: 302");
          return;
        }
        const used = `${this.#slots.size},${this.#capacity}`;
        this.#respond([`+CPMS: ${used},${used},${used}`], "OK");
        return;
      }
      case "+CMGR":
        this.#read(ints[0]);
        return;
      case "+CMGL":
        this.#list(ints[0] ?? 0);
        return;
      case "+CMGD":
        this.#delete(ints[0], ints[1] ?? 0);
        return;
      case "+CMGS": {
        const length = ints[0];
        if (length === undefined || Number.isNaN(length) || !this.pduMode) {
          this.#respond([], "+CMS ERROR: 304");
          return;
        }
        this.#body = { length };
        this.emit("\r\n> ");
        return;
      }
      default:
        this.#respond([], "ERROR");
    }
  }

  #read(index: number | undefined): void {
    if (!this.pduMode) {
      this.#respond([], "+CMS ERROR: 303"); // text mode is not simulated
      return;
    }
    const slot = index === undefined ? undefined : this.#slots.get(index);
    if (slot === undefined) {
      this.#respond([], "+CMS ERROR: 321"); // invalid memory index
      return;
    }
    const stat = slot.stat;
    slot.stat = 1;
    this.#respond([`+CMGR: ${stat},,${tpduLength(slot.pdu)}`, bytesToHex(slot.pdu)], "OK");
  }

  #list(stat: number): void {
    if (!this.pduMode) {
      this.#respond([], "+CMS ERROR: 303");
      return;
    }
    if (Number.isNaN(stat) || stat < 0 || stat > 4) {
      this.#respond([], "+CMS ERROR: 302");
      return;
    }
    const lines: string[] = [];
    for (const slot of this.stored()) {
      if (stat !== 4 && slot.stat !== stat) continue;
      lines.push(`+CMGL: ${slot.index},${slot.stat},,${tpduLength(slot.pdu)}`, bytesToHex(slot.pdu));
      slot.stat = 1;
    }
    this.#respond(lines, "OK");
  }

  #delete(index: number | undefined, flag: number): void {
    if (index === undefined || Number.isNaN(index) || Number.isNaN(flag)) {
      this.#respond([], "+CMS ERROR: 321");
      return;
    }
    const victims =
      flag === 0
        ? this.#slots.has(index)
          ? [index]
          : []
        : this.stored()
            .filter((s) => flag >= 4 || s.stat === 1)
            .map((s) => s.index);
    for (const i of victims) {
      this.#slots.delete(i);
      this.deleted.push(i);
    }
    this.#respond([], "OK");
  }

  #submit(hex: string): void {
    try {
      hexToBytes(hex);
    } catch {
      // A body that is not hex is the host's mistake; a real modem answers 304 (invalid PDU mode parameter).
      this.#respond([], "+CMS ERROR: 304");
      return;
    }
    this.submitted.push(hex.toUpperCase());
    this.#messageRef = (this.#messageRef + 1) % 256;
    this.#respond([`+CMGS: ${this.#messageRef}`], "OK");
  }

  #respond(lines: readonly string[], final: string): void {
    this.emit([...lines, final].map((l) => `\r\n${l}\r\n`).join(""));
  }
}

/** Index of the Ctrl-Z or ESC ending a prompted body (the buffer is latin1: one unit per byte). */
function indexOfBodyEnd(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charAt(i);
    if (c === CTRL_Z_CHAR || c === ESC_CHAR) return i;
  }
  return -1;
}

function tpduLength(pdu: Uint8Array): number {
  return pdu.length - 1 - (pdu[0] ?? 0);
}

export interface WapPushPduOptions {
  /** Default "+491720000001". */
  readonly originator?: string;
  /** Concatenation reference; default 0x42. */
  readonly reference?: number;
  readonly referenceBits?: 8 | 16;
  /** Data octets per SMS; default the most that fits (128 with an 8-bit reference). */
  readonly maxPartBytes?: number;
  readonly destinationPort?: number;
  readonly sourcePort?: number;
  readonly timestampMs?: number;
}

/**
 * A WDP datagram as SMS-DELIVER PDUs: a 16-bit port IE (0x05) in every part, plus a concatenation IE
 * (0x00 or 0x08) when it takes more than one SMS (WDP over GSM SMS; protocol.md 5.3).
 */
export function wapPushPdus(data: Uint8Array, options: WapPushPduOptions = {}): Uint8Array[] {
  const ports = {
    destination: options.destinationPort ?? WAP_PUSH_PORT,
    source: options.sourcePort ?? WAP_PUSH_SOURCE_PORT,
  };
  const base = {
    originator: options.originator ?? "+491720000001",
    smsc: "+491710760000",
    ...(options.timestampMs === undefined ? {} : { timestampMs: options.timestampMs }),
    ports,
  };
  const portsHeader = 1 + 6; // UDHL + IE 05
  const concatIe = options.referenceBits === 16 ? 6 : 5;
  const fitsOne = data.length <= Math.min(options.maxPartBytes ?? Infinity, MAX_UD_OCTETS - portsHeader);
  if (fitsOne) return [encodeSmsDeliver({ ...base, userData: data })];
  const per = Math.min(options.maxPartBytes ?? Infinity, MAX_UD_OCTETS - portsHeader - concatIe);
  const total = Math.ceil(data.length / per);
  if (total > 255) throw new Error("WAP Push too long for 255 SMS");
  const out: Uint8Array[] = [];
  for (let i = 0; i < total; i++) {
    out.push(
      encodeSmsDeliver({
        ...base,
        concat: {
          reference: options.reference ?? 0x42,
          total,
          sequence: i + 1,
          ...(options.referenceBits === undefined ? {} : { referenceBits: options.referenceBits }),
        },
        userData: data.subarray(i * per, (i + 1) * per),
      }),
    );
  }
  return out;
}

/** A simulator attached to a link; `done` settles when the link ends or fails. */
export interface AttachedSimulator {
  readonly sim: ModemSimulator;
  readonly done: Promise<void>;
}

/**
 * Runs a simulator on a link (the far end of a pty pair or a memory pair). Pass an existing simulator
 * to move it, with its storage, to a new link.
 */
export function attachSimulator(
  link: ByteLink,
  simulator: ModemSimulator | ModemSimulatorOptions = {},
): AttachedSimulator {
  const writer = link.writable.getWriter();
  const write = (bytes: Uint8Array): void => {
    writer.write(bytes).catch(() => {
      // The host went away; the read side reports it.
    });
  };
  const sim = simulator instanceof ModemSimulator ? simulator : new ModemSimulator(simulator);
  sim.setOutput(write);
  return { sim, done: pump(link, sim) };
}

async function pump(link: ByteLink, sim: ModemSimulator): Promise<void> {
  const reader = link.readable.getReader();
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      sim.receive(r.value);
    }
  } catch {
    // The link failed: the simulator simply stops answering, as an unplugged modem does.
  } finally {
    reader.releaseLock();
  }
}

async function main(path: string): Promise<void> {
  const link = await openSerialLink({ path });
  const { sim } = attachSimulator(link);
  process.stdout.write("ready\n");
  const rl = createInterface({ input: process.stdin });
  const stop = async (): Promise<void> => {
    rl.close();
    await link.close();
  };
  process.once("SIGTERM", () => void stop());
  process.once("SIGINT", () => void stop());
  for await (const raw of rl) {
    const [verb = "", ...rest] = raw.trim().split(/\s+/);
    try {
      if (verb === "pdu")
        process.stdout.write(`stored ${String(sim.injectPdu(hexToBytes(rest[0] ?? "")))}\n`);
      else if (verb === "push") {
        const opts = {
          originator: rest[1] ?? "+491720000001",
          ...(rest[2] === undefined ? {} : { maxPartBytes: Number(rest[2]) }),
        };
        process.stdout.write(`stored ${sim.injectWapPush(hexToBytes(rest[0] ?? ""), opts).join(",")}\n`);
      } else if (verb === "text")
        process.stdout.write(`stored ${String(sim.injectText(rest[0] ?? "", rest.slice(1).join(" ")))}\n`);
      else if (verb === "list")
        process.stdout.write(
          `slots ${sim
            .stored()
            .map((s) => s.index)
            .join(",")}\n`,
        );
      else if (verb !== "") process.stdout.write(`unknown ${verb}\n`);
    } catch (e) {
      process.stdout.write(`error ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }
  await stop();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = process.argv[2];
  if (path === undefined) {
    process.stderr.write("usage: sim.ts <tty-path>\n");
    process.exitCode = 64;
  } else {
    main(path).catch((e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    });
  }
}
