/**
 * AT command framing (ITU-T V.250, 3GPP TS 27.007 / 27.005). Sans-I/O: bytes in, bytes out, the time
 * passed in by the caller; no timers, sockets or logs here.
 *
 *   modem bytes --> AtParser.push() --> events: final | info | urc | prompt | discarded
 *                        |
 *   AtSession: one command in flight, a deadline per command, the command's lines collected
 *     enqueue(cmd, now) / receive(bytes, now) / tick(now) / abortAll()  -->  drain(): AtStep
 *     AtStep = { writes (bytes to send), completions, urcs, unexpected, discarded }
 *
 * The `> ` prompt (AT+CMGS, AT+CMGW) has no line end after it (platform.md 10), so the parser
 * recognises it at the start of a line without waiting for CR/LF.
 */

/** Ctrl-Z ends a prompted body; ESC cancels it (TS 27.005 3.5.1). */
export const CTRL_Z = 0x1a;
export const ESC = 0x1b;

export type AtFinal =
  | { readonly kind: "ok" }
  | { readonly kind: "error" }
  /** `+CME ERROR: <err>` (TS 27.007 9.2); `code` is undefined in verbose mode (AT+CMEE=2). */
  | { readonly kind: "cme"; readonly code: number | undefined; readonly text: string }
  /** `+CMS ERROR: <err>` (TS 27.005 3.2.5). */
  | { readonly kind: "cms"; readonly code: number | undefined; readonly text: string };

export interface AtUrc {
  /** The part before ":" (`+CMTI`), or the whole line for bare codes (`RING`). */
  readonly name: string;
  readonly line: string;
  /** The second line of two-line URCs (`+CMT`, `+CDS`, `+CBM`): the PDU (or text). */
  readonly pdu: string | undefined;
}

export interface AtDiscard {
  readonly reason: string;
  readonly bytes: Uint8Array;
}

export type AtEvent =
  | { readonly type: "final"; readonly final: AtFinal; readonly line: string }
  | { readonly type: "info"; readonly line: string }
  | { readonly type: "urc"; readonly urc: AtUrc }
  | { readonly type: "prompt" }
  | { readonly type: "discarded"; readonly discard: AtDiscard };

/** URCs of TS 27.005/27.007 that the SMS path can meet; the value says whether a PDU line follows. */
export const DEFAULT_URCS: ReadonlyMap<string, boolean> = new Map([
  ["+CMTI", false],
  ["+CDSI", false],
  ["+CBMI", false],
  ["+CMT", true],
  ["+CDS", true],
  ["+CBM", true],
  ["RING", false],
  ["+CRING", false],
  ["+CLIP", false],
  ["+CUSD", false],
]);

export interface AtParserOptions {
  /** URC names, each with whether a second (PDU) line follows. Default `DEFAULT_URCS`. */
  readonly urcs?: ReadonlyMap<string, boolean>;
  /** A line longer than this is discarded (bounded memory); default 4096 characters. */
  readonly maxLineLength?: number;
}

const FINAL_CME = /^\+CME ERROR:\s*(.*)$/;
const FINAL_CMS = /^\+CMS ERROR:\s*(.*)$/;

/** Classifies a line as a final result code, or returns `undefined`. */
export function parseFinal(line: string): AtFinal | undefined {
  if (line === "OK") return { kind: "ok" };
  if (line === "ERROR") return { kind: "error" };
  const cme = FINAL_CME.exec(line);
  if (cme !== null) return { kind: "cme", ...errorDetail(cme[1] ?? "") };
  const cms = FINAL_CMS.exec(line);
  if (cms !== null) return { kind: "cms", ...errorDetail(cms[1] ?? "") };
  return undefined;
}

function errorDetail(text: string): { code: number | undefined; text: string } {
  const t = text.trim();
  return { code: /^\d+$/.test(t) ? Number(t) : undefined, text: t };
}

/** Incremental response parser: `push(chunk)` returns the events the chunk completed. */
export class AtParser {
  readonly #urcs: ReadonlyMap<string, boolean>;
  readonly #maxLineLength: number;
  #buf = "";
  #skipping = false; // inside an over-long line, dropping until its end
  #pduFor: { readonly name: string; readonly line: string } | undefined;

  constructor(options: AtParserOptions = {}) {
    this.#urcs = options.urcs ?? DEFAULT_URCS;
    this.#maxLineLength = options.maxLineLength ?? 4096;
  }

  /** Bytes held waiting for a line end. */
  get buffered(): number {
    return this.#buf.length;
  }

  push(chunk: Uint8Array): AtEvent[] {
    const events: AtEvent[] = [];
    // latin1 maps bytes 1:1 to code units, so nothing is lost before the lines are classified.
    this.#buf += Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
    for (;;) {
      if (!this.#skipping && this.#buf.startsWith("> ")) {
        events.push({ type: "prompt" });
        this.#buf = this.#buf.slice(2);
        continue;
      }
      const end = this.#buf.search(/[\r\n]/);
      if (end < 0) break;
      const line = this.#buf.slice(0, end);
      this.#buf = this.#buf.slice(end + 1);
      if (this.#skipping) {
        this.#skipping = false;
        continue;
      }
      this.#line(line.trim(), events);
    }
    if (this.#buf.length > this.#maxLineLength) {
      events.push({
        type: "discarded",
        discard: { reason: "line too long", bytes: Uint8Array.from(Buffer.from(this.#buf, "latin1")) },
      });
      this.#buf = "";
      this.#skipping = true;
    }
    return events;
  }

  /** Drops any partial line and pending two-line URC (after a link change). */
  reset(): void {
    this.#buf = "";
    this.#skipping = false;
    this.#pduFor = undefined;
  }

  #line(line: string, events: AtEvent[]): void {
    if (line === "") return;
    if (line === ">") {
      events.push({ type: "prompt" });
      return;
    }
    if (this.#pduFor !== undefined) {
      const { name, line: header } = this.#pduFor;
      this.#pduFor = undefined;
      events.push({ type: "urc", urc: { name, line: header, pdu: line } });
      return;
    }
    const final = parseFinal(line);
    if (final !== undefined) {
      events.push({ type: "final", final, line });
      return;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const twoLine = this.#urcs.get(name);
    if (twoLine === true) {
      this.#pduFor = { name, line };
      return;
    }
    if (twoLine === false) {
      events.push({ type: "urc", urc: { name, line, pdu: undefined } });
      return;
    }
    events.push({ type: "info", line });
  }
}

// ---------------------------------------------------------------------------------------------------
// Command queue

export interface AtCommand {
  /** The command without its line end, e.g. `AT+CMGR=3`. */
  readonly text: string;
  /** Sent after the `> ` prompt and ended with Ctrl-Z (AT+CMGS, AT+CMGW). */
  readonly body?: string;
  /** Deadline from when the command is written; default from the session options. */
  readonly timeoutMs?: number;
}

export type AtOutcome =
  | { readonly kind: "ok"; readonly lines: readonly string[] }
  | { readonly kind: "error"; readonly final: AtFinal; readonly lines: readonly string[] }
  /** No final result in time; `awaited` names what was missing. */
  | { readonly kind: "timeout"; readonly awaited: "final" | "prompt"; readonly lines: readonly string[] }
  | { readonly kind: "aborted"; readonly reason: string; readonly lines: readonly string[] };

export interface AtCompletion {
  readonly id: number;
  readonly command: AtCommand;
  readonly outcome: AtOutcome;
}

/** Everything the session produced since the last `drain()`. */
export interface AtStep {
  /** Bytes to write to the modem, in order. */
  readonly writes: readonly Uint8Array[];
  readonly completions: readonly AtCompletion[];
  readonly urcs: readonly AtUrc[];
  /** Lines, finals or prompts that arrived with no command to own them. */
  readonly unexpected: readonly string[];
  readonly discarded: readonly AtDiscard[];
}

export interface AtSessionOptions {
  /** Per-command deadline when the command gives none; default 5000 ms. */
  readonly defaultTimeoutMs?: number;
  readonly parser?: AtParserOptions;
}

interface InFlight {
  readonly id: number;
  readonly command: AtCommand;
  readonly deadlineMs: number;
  readonly lines: string[];
  bodySent: boolean;
}

const encoder = new TextEncoder();

/**
 * One command in flight at a time. A command is written when it reaches the head of the queue; its
 * information lines are collected until its final result code, its deadline, or `abortAll()`.
 * Unsolicited result codes pass through at any time, including between a command's lines.
 *
 * After a timeout the modem may still answer the old command; this session cannot tell that answer
 * from the next command's, so the I/O layer should treat a timeout as a sick link (the Modem
 * recreates the link).
 */
export class AtSession {
  readonly #parser: AtParser;
  readonly #defaultTimeoutMs: number;
  readonly #queue: { readonly id: number; readonly command: AtCommand }[] = [];
  #inFlight: InFlight | undefined;
  #nextId = 1;
  #writes: Uint8Array[] = [];
  #completions: AtCompletion[] = [];
  #urcs: AtUrc[] = [];
  #unexpected: string[] = [];
  #discarded: AtDiscard[] = [];

  constructor(options: AtSessionOptions = {}) {
    this.#parser = new AtParser(options.parser);
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 5000;
  }

  /** A command is in flight. */
  get busy(): boolean {
    return this.#inFlight !== undefined;
  }

  /** Commands waiting behind the one in flight. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Queues a command; returns the id its completion will carry. */
  enqueue(command: AtCommand, nowMs: number): number {
    const id = this.#nextId++;
    this.#queue.push({ id, command });
    this.#startNext(nowMs);
    return id;
  }

  /** Bytes from the modem. */
  receive(chunk: Uint8Array, nowMs: number): void {
    for (const ev of this.#parser.push(chunk)) this.#event(ev, nowMs);
  }

  /** Fails the command in flight if its deadline has passed at `nowMs`. */
  tick(nowMs: number): void {
    const f = this.#inFlight;
    if (f === undefined || nowMs < f.deadlineMs) return;
    const awaitingPrompt = f.command.body !== undefined && !f.bodySent;
    if (awaitingPrompt) this.#writes.push(Uint8Array.of(ESC)); // leave the prompt state
    this.#complete({ kind: "timeout", awaited: awaitingPrompt ? "prompt" : "final", lines: f.lines }, nowMs);
  }

  /** The deadline `tick()` must be called at, or `undefined` when nothing is in flight. */
  nextDeadline(): number | undefined {
    return this.#inFlight?.deadlineMs;
  }

  /** Completes the command in flight and every queued one with `aborted`; resets the parser. */
  abortAll(reason: string): void {
    const f = this.#inFlight;
    this.#inFlight = undefined;
    if (f !== undefined) {
      this.#completions.push({
        id: f.id,
        command: f.command,
        outcome: { kind: "aborted", reason, lines: f.lines },
      });
    }
    for (const q of this.#queue.splice(0)) {
      this.#completions.push({
        id: q.id,
        command: q.command,
        outcome: { kind: "aborted", reason, lines: [] },
      });
    }
    this.#parser.reset();
  }

  /** Returns and clears what the session produced since the last call. */
  drain(): AtStep {
    const step: AtStep = {
      writes: this.#writes,
      completions: this.#completions,
      urcs: this.#urcs,
      unexpected: this.#unexpected,
      discarded: this.#discarded,
    };
    this.#writes = [];
    this.#completions = [];
    this.#urcs = [];
    this.#unexpected = [];
    this.#discarded = [];
    return step;
  }

  #event(ev: AtEvent, nowMs: number): void {
    const f = this.#inFlight;
    switch (ev.type) {
      case "urc":
        this.#urcs.push(ev.urc);
        return;
      case "discarded":
        this.#discarded.push(ev.discard);
        return;
      case "prompt":
        if (f !== undefined && f.command.body !== undefined && !f.bodySent) {
          f.bodySent = true;
          this.#writes.push(concat(encoder.encode(f.command.body), Uint8Array.of(CTRL_Z)));
        } else {
          this.#unexpected.push("> ");
        }
        return;
      case "info":
        if (f === undefined) this.#unexpected.push(ev.line);
        else if (ev.line !== f.command.text) f.lines.push(ev.line); // skip the echo before ATE0
        return;
      case "final":
        if (f === undefined) {
          this.#unexpected.push(ev.line);
          return;
        }
        this.#complete(
          ev.final.kind === "ok"
            ? { kind: "ok", lines: f.lines }
            : { kind: "error", final: ev.final, lines: f.lines },
          nowMs,
        );
        return;
    }
  }

  #complete(outcome: AtOutcome, nowMs: number): void {
    const f = this.#inFlight;
    if (f === undefined) return;
    this.#inFlight = undefined;
    this.#completions.push({ id: f.id, command: f.command, outcome });
    this.#startNext(nowMs);
  }

  #startNext(nowMs: number): void {
    if (this.#inFlight !== undefined) return;
    const next = this.#queue.shift();
    if (next === undefined) return;
    this.#inFlight = {
      id: next.id,
      command: next.command,
      deadlineMs: nowMs + (next.command.timeoutMs ?? this.#defaultTimeoutMs),
      lines: [],
      bodySent: false,
    };
    this.#writes.push(encoder.encode(`${next.command.text}\r`));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// TS 27.005 response helpers

/** Splits AT parameters at commas outside double quotes; quotes are removed from quoted values. */
export function splitParams(text: string): string[] {
  const out: string[] = [];
  const finish = (raw: string): void => {
    const t = raw.trim();
    out.push(t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t);
  };
  let cur = "";
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === "," && !quoted) {
      finish(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  finish(cur);
  return out;
}

function afterPrefix(line: string, prefix: string): string | undefined {
  return line.startsWith(`${prefix}:`) ? line.slice(prefix.length + 1).trim() : undefined;
}

function toInt(s: string | undefined): number | undefined {
  return s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined;
}

/** `+CMTI: "SM",3` (also `+CDSI`) to the storage and index, or `undefined` when malformed. */
export function parseCmti(line: string): { readonly mem: string; readonly index: number } | undefined {
  const colon = line.indexOf(":");
  if (colon < 0) return undefined;
  const [mem, idx] = splitParams(line.slice(colon + 1).trim());
  const index = toInt(idx);
  return mem === undefined || mem === "" || index === undefined ? undefined : { mem, index };
}

/** A stored message as listed or read in PDU mode. */
export interface StoredPdu {
  /** Storage index (from `+CMGL`; `undefined` for `+CMGR`, which the caller knows). */
  readonly index: number | undefined;
  /** 0 received unread, 1 received read, 2 stored unsent, 3 stored sent. */
  readonly stat: number;
  /** The TPDU length in octets (without the SMSC field). */
  readonly length: number;
  readonly hex: string;
}

/**
 * The messages in a `+CMGL` (`+CMGL: <index>,<stat>,[<alpha>],<length>` then the PDU line) or `+CMGR`
 * (`+CMGR: <stat>,[<alpha>],<length>` then the PDU line) response. Lines that do not fit are returned
 * in `rejected` so the caller can log them.
 */
export function parseStoredPdus(
  lines: readonly string[],
  prefix: "+CMGL" | "+CMGR",
): { readonly messages: StoredPdu[]; readonly rejected: string[] } {
  const messages: StoredPdu[] = [];
  const rejected: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const rest = afterPrefix(line, prefix);
    if (rest === undefined) {
      rejected.push(line);
      continue;
    }
    const params = splitParams(rest);
    const index = prefix === "+CMGL" ? toInt(params[0]) : undefined;
    const stat = toInt(params[prefix === "+CMGL" ? 1 : 0]);
    const length = toInt(params[params.length - 1]);
    const hex = lines[i + 1];
    const badHeader =
      stat === undefined || length === undefined || (prefix === "+CMGL" && index === undefined);
    if (badHeader || hex === undefined || !/^[0-9A-Fa-f]+$/.test(hex)) {
      rejected.push(line);
      continue;
    }
    i++;
    messages.push({ index, stat, length, hex });
  }
  return { messages, rejected };
}
