/**
 * OBEX (IrDA Object Exchange 1.2/1.3) as the OMA DM OBEX binding uses it, sans-I/O (style.md 2.3):
 * the packet codec, an incremental framer for a byte stream (a serial line), and the splitter that
 * cuts a DM message into Put (or Get response) packets within the peer's max packet length and puts
 * it back together. No timers, no I/O.
 *
 * Packet layout (OBEX 1.3 section 3), big-endian:
 *
 * ```
 *   opcode/response code (1) | packet length (2, the whole packet) | [Connect: version (1) flags (1)
 *   max packet length (2)] | headers...
 *   header: id (1); the id's high 2 bits say what follows:
 *     00 unicode text   length (2, whole header) | UTF-16BE, NUL-terminated (empty: no NUL)
 *     01 byte sequence  length (2, whole header) | bytes
 *     10 one byte       value (1)
 *     11 four bytes     value (4)
 * ```
 *
 * The Connect fields travel in the Connect request and in the response to it; the response alone does
 * not say it answers a Connect, so `decodePacket` takes `connectResponse` from the caller.
 *
 * The SYNCML-DM target: the OMA DM OBEX binding (after the SyncML OBEX binding, which names
 * "SYNCML-SYNC" for data sync) identifies the DM service with a Target header holding the 9 ASCII
 * bytes "SYNCML-DM", without a NUL and not a 16-byte UUID. Implementations agree on this, e.g.
 * Symbian's nsmlobexdsplugin constants (`KTargetSyncDM, "SYNCML-DM"`), the CSR Synergy SyncML
 * client and server profiles (`CSR_BT_SMLC_SYNC_DM_TARGET "SYNCML-DM"`, length 0x09) and kdepim's
 * qobex (`initUuidSyncMLDM`: "SYNCML-DM", 9 bytes), found with the code search of this project.
 *
 * Decoding failures are typed values (`tryDecodePacket`) or `GatewayError`s with `Codec_*` codes
 * (`decodePacket`): Codec_Truncated, Codec_InvalidStructure, Codec_TrailingData, Codec_TooLarge;
 * encoding failures are Codec_EncodeFailed.
 */
import { ErrorCode, GatewayError } from "../../src/core/errors.js";

// ---- constants -----------------------------------------------------------------------------------

/** The final bit of an opcode or response code. */
export const FINAL = 0x80;

export const Opcode = {
  Connect: 0x80,
  Disconnect: 0x81,
  /** Put, more packets follow. */
  Put: 0x02,
  PutFinal: 0x82,
  /** Get, the request headers continue in the next packet. */
  Get: 0x03,
  GetFinal: 0x83,
  SetPath: 0x85,
  Session: 0x87,
  Abort: 0xff,
} as const;

export const ResponseCode = {
  Continue: 0x90,
  Success: 0xa0,
  Created: 0xa1,
  Accepted: 0xa2,
  BadRequest: 0xc0,
  Unauthorized: 0xc1,
  Forbidden: 0xc3,
  NotFound: 0xc4,
  MethodNotAllowed: 0xc5,
  NotAcceptable: 0xc6,
  RequestTimeout: 0xc8,
  Conflict: 0xc9,
  LengthRequired: 0xcb,
  PreconditionFailed: 0xcc,
  RequestEntityTooLarge: 0xcd,
  UnsupportedMediaType: 0xcf,
  InternalServerError: 0xd0,
  NotImplemented: 0xd1,
  ServiceUnavailable: 0xd3,
} as const;

export const HeaderId = {
  Count: 0xc0,
  Name: 0x01,
  Description: 0x05,
  Type: 0x42,
  Length: 0xc3,
  Target: 0x46,
  Http: 0x47,
  Body: 0x48,
  EndOfBody: 0x49,
  Who: 0x4a,
  ConnectionId: 0xcb,
} as const;

/** OBEX 1.0 (major 1, minor 0), what Connect carries. */
export const OBEX_VERSION = 0x10;
/** The smallest max packet length a peer may announce (OBEX 1.3 section 3.3.1.4). */
export const MIN_MAX_PACKET_LENGTH = 255;
/** The largest the 16-bit field allows. */
export const MAX_MAX_PACKET_LENGTH = 0xffff;

/** The Target (and Who) value of the DM service: ASCII "SYNCML-DM" (see the file comment). */
export const SYNCML_DM_TARGET: Uint8Array = Uint8Array.from([
  0x53, 0x59, 0x4e, 0x43, 0x4d, 0x4c, 0x2d, 0x44, 0x4d,
]);

/** The OBEX Type of a Package #0 put to a device (DM Notification, protocol.md 5.1). */
export const NOTIFICATION_TYPE = "application/vnd.syncml.notification";

// ---- model ---------------------------------------------------------------------------------------

export type ObexHeader =
  | { readonly id: number; readonly kind: "text"; readonly value: string }
  | { readonly id: number; readonly kind: "bytes"; readonly value: Uint8Array }
  | { readonly id: number; readonly kind: "byte"; readonly value: number }
  | { readonly id: number; readonly kind: "u32"; readonly value: number };

export type HeaderKind = ObexHeader["kind"];

/** The Connect fields (request, and the response to a Connect). */
export interface ConnectFields {
  readonly version: number;
  readonly flags: number;
  readonly maxPacketLength: number;
}

export interface ObexPacket {
  /** Opcode (request) or response code, final bit included. */
  readonly code: number;
  readonly connect?: ConnectFields;
  readonly headers: readonly ObexHeader[];
}

/** The kind of value a header id carries (its high 2 bits). */
export function headerKind(id: number): HeaderKind {
  switch (id & 0xc0) {
    case 0x00:
      return "text";
    case 0x40:
      return "bytes";
    case 0x80:
      return "byte";
    default:
      return "u32";
  }
}

export const textHeader = (id: number, value: string): ObexHeader => ({ id, kind: "text", value });
export const bytesHeader = (id: number, value: Uint8Array): ObexHeader => ({ id, kind: "bytes", value });
export const u32Header = (id: number, value: number): ObexHeader => ({ id, kind: "u32", value });
export const byteHeader = (id: number, value: number): ObexHeader => ({ id, kind: "byte", value });

/** A Type header: ASCII, NUL-terminated (OBEX 1.3 section 2.2.3). */
export function typeHeader(type: string): ObexHeader {
  return bytesHeader(HeaderId.Type, asciiZ(type));
}

/** The value of a Type header as text (its trailing NUL dropped); undefined when absent. */
export function typeOf(packet: ObexPacket): string | undefined {
  const h = findHeader(packet, HeaderId.Type);
  if (h?.kind !== "bytes") return undefined;
  const end = h.value.length > 0 && h.value[h.value.length - 1] === 0 ? h.value.length - 1 : h.value.length;
  return LATIN1.decode(h.value.subarray(0, end));
}

export function findHeader(packet: ObexPacket, id: number): ObexHeader | undefined {
  return packet.headers.find((h) => h.id === id);
}

/** The value of a 4-byte header (Connection ID, Length); undefined when absent. */
export function u32Of(packet: ObexPacket, id: number): number | undefined {
  const h = findHeader(packet, id);
  return h?.kind === "u32" ? h.value : undefined;
}

/** The value of a byte-sequence header; undefined when absent. */
export function bytesOf(packet: ObexPacket, id: number): Uint8Array | undefined {
  const h = findHeader(packet, id);
  return h?.kind === "bytes" ? h.value : undefined;
}

/** True for opcodes of requests (Connect, Disconnect, Put, Get, SetPath, Session, Abort). */
export function isRequestCode(code: number): boolean {
  return REQUEST_CODES.has(code);
}

/** True for response codes (Continue 0x90 .. 0xDF with the final bit, as OBEX always sends them). */
export function isResponseCode(code: number): boolean {
  return code >= 0x90 && code <= 0xdf;
}

const REQUEST_CODES = new Set<number>([0x80, 0x81, 0x02, 0x82, 0x03, 0x83, 0x85, 0x87, 0xff]);

// ---- encode --------------------------------------------------------------------------------------

const LATIN1 = new TextDecoder("latin1");

function asciiZ(text: string): Uint8Array {
  const out = new Uint8Array(text.length + 1);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7e || c < 0x20) throw encodeError(`Type ${JSON.stringify(text)} is not printable ASCII`);
    out[i] = c;
  }
  return out;
}

function encodeError(message: string, context?: Readonly<Record<string, unknown>>): GatewayError {
  return new GatewayError(message, ErrorCode.Codec_EncodeFailed, context === undefined ? {} : { context });
}

/** The encoded size of one header. */
export function headerSize(h: ObexHeader): number {
  switch (h.kind) {
    case "text":
      return 3 + (h.value.length === 0 ? 0 : (h.value.length + 1) * 2);
    case "bytes":
      return 3 + h.value.length;
    case "byte":
      return 2;
    case "u32":
      return 5;
  }
}

/** The encoded size of a packet. */
export function packetSize(p: ObexPacket): number {
  return 3 + (p.connect === undefined ? 0 : 4) + p.headers.reduce((n, h) => n + headerSize(h), 0);
}

/**
 * Encodes one packet. @throws GatewayError(Codec_EncodeFailed) for a header whose kind does not match
 * its id, a value out of range, or a packet longer than `maxPacketLength` (default 0xFFFF).
 */
export function encodePacket(p: ObexPacket, maxPacketLength = MAX_MAX_PACKET_LENGTH): Uint8Array {
  const size = packetSize(p);
  if (size > maxPacketLength) {
    throw encodeError(`OBEX packet of ${size} bytes exceeds the max packet length ${maxPacketLength}`, {
      size,
      maxPacketLength,
    });
  }
  if (!Number.isInteger(p.code) || p.code < 0 || p.code > 0xff) throw encodeError("bad OBEX code");
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = p.code;
  view.setUint16(1, size);
  let at = 3;
  if (p.connect !== undefined) {
    const c = p.connect;
    if (!inRange(c.version, 0xff) || !inRange(c.flags, 0xff) || !inRange(c.maxPacketLength, 0xffff)) {
      throw encodeError("bad OBEX Connect fields", { ...c });
    }
    out[3] = c.version;
    out[4] = c.flags;
    view.setUint16(5, c.maxPacketLength);
    at = 7;
  }
  for (const h of p.headers) {
    if (!inRange(h.id, 0xff) || headerKind(h.id) !== h.kind) {
      throw encodeError(`OBEX header 0x${h.id.toString(16)} cannot carry ${h.kind}`, { id: h.id });
    }
    out[at] = h.id;
    switch (h.kind) {
      case "text": {
        const n = headerSize(h);
        view.setUint16(at + 1, n);
        for (let i = 0; i < h.value.length; i++) view.setUint16(at + 3 + 2 * i, h.value.charCodeAt(i));
        // The NUL terminator is already zero.
        at += n;
        break;
      }
      case "bytes":
        view.setUint16(at + 1, 3 + h.value.length);
        out.set(h.value, at + 3);
        at += 3 + h.value.length;
        break;
      case "byte":
        if (!inRange(h.value, 0xff)) throw encodeError("OBEX 1-byte header out of range", { id: h.id });
        out[at + 1] = h.value;
        at += 2;
        break;
      case "u32":
        if (!inRange(h.value, 0xffffffff)) throw encodeError("OBEX 4-byte header out of range", { id: h.id });
        view.setUint32(at + 1, h.value);
        at += 5;
        break;
    }
  }
  return out;
}

function inRange(n: number, max: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= max;
}

// ---- decode --------------------------------------------------------------------------------------

export type DecodeResult =
  { readonly ok: true; readonly packet: ObexPacket } | { readonly ok: false; readonly error: GatewayError };

export interface DecodeOptions {
  /** The packet answers a Connect: it carries the Connect fields. Ignored for requests. */
  readonly connectResponse?: boolean;
}

/** Decodes one whole packet; malformed bytes are a value. */
export function tryDecodePacket(bytes: Uint8Array, options: DecodeOptions = {}): DecodeResult {
  try {
    return { ok: true, packet: decodePacket(bytes, options) };
  } catch (e) {
    if (e instanceof GatewayError) return { ok: false, error: e };
    throw e;
  }
}

/**
 * Decodes one whole packet. @throws GatewayError: Codec_Truncated (shorter than its length field
 * says, or a header past the end), Codec_TrailingData (bytes after the packet length),
 * Codec_InvalidStructure (a length field below the minimum, a text header of odd length or without
 * its NUL).
 */
export function decodePacket(bytes: Uint8Array, options: DecodeOptions = {}): ObexPacket {
  if (bytes.length < 3) throw decodeError("OBEX packet shorter than 3 bytes", ErrorCode.Codec_Truncated, 0);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const code = bytes[0] ?? 0;
  const length = view.getUint16(1);
  const withConnect = code === Opcode.Connect || (options.connectResponse === true && isResponseCode(code));
  const minimum = withConnect ? 7 : 3;
  if (length < minimum) {
    throw decodeError(`OBEX packet length ${length} below ${minimum}`, ErrorCode.Codec_InvalidStructure, 1);
  }
  if (bytes.length < length) {
    throw decodeError(
      `OBEX packet of ${length} bytes truncated at ${bytes.length}`,
      ErrorCode.Codec_Truncated,
      bytes.length,
    );
  }
  if (bytes.length > length) {
    throw decodeError(
      `${bytes.length - length} bytes after the OBEX packet`,
      ErrorCode.Codec_TrailingData,
      length,
    );
  }
  let connect: ConnectFields | undefined;
  if (withConnect) {
    connect = { version: bytes[3] ?? 0, flags: bytes[4] ?? 0, maxPacketLength: view.getUint16(5) };
  }
  const headers: ObexHeader[] = [];
  let at = minimum;
  while (at < length) {
    const id = bytes[at] ?? 0;
    const kind = headerKind(id);
    switch (kind) {
      case "byte":
        if (at + 2 > length) throw decodeError("1-byte header past the end", ErrorCode.Codec_Truncated, at);
        headers.push({ id, kind, value: bytes[at + 1] ?? 0 });
        at += 2;
        break;
      case "u32":
        if (at + 5 > length) throw decodeError("4-byte header past the end", ErrorCode.Codec_Truncated, at);
        headers.push({ id, kind, value: view.getUint32(at + 1) });
        at += 5;
        break;
      case "text":
      case "bytes": {
        if (at + 3 > length) throw decodeError("header length past the end", ErrorCode.Codec_Truncated, at);
        const n = view.getUint16(at + 1);
        if (n < 3) throw decodeError(`header length ${n} below 3`, ErrorCode.Codec_InvalidStructure, at);
        if (at + n > length)
          throw decodeError("header past the end of the packet", ErrorCode.Codec_Truncated, at);
        const value = bytes.slice(at + 3, at + n);
        if (kind === "bytes") headers.push({ id, kind, value });
        else headers.push({ id, kind, value: decodeText(value, at) });
        at += n;
        break;
      }
    }
  }
  return connect === undefined ? { code, headers } : { code, connect, headers };
}

function decodeText(value: Uint8Array, at: number): string {
  if (value.length === 0) return "";
  if (value.length % 2 !== 0 || value[value.length - 1] !== 0 || value[value.length - 2] !== 0) {
    throw decodeError("unicode header not NUL-terminated UTF-16", ErrorCode.Codec_InvalidStructure, at);
  }
  let s = "";
  for (let i = 0; i + 2 < value.length; i += 2)
    s += String.fromCharCode(((value[i] ?? 0) << 8) | (value[i + 1] ?? 0));
  return s;
}

function decodeError(message: string, code: ErrorCode, offset: number): GatewayError {
  return new GatewayError(message, code, { context: { offset } });
}

/**
 * Checks the structure of (the first `available` bytes of) a packet of `length` bytes whose headers
 * start at `start`: "bad" when a header cannot be right (shorter than 3, crossing the packet end, a
 * text header of odd length), "ok" when the whole packet is there and well-formed, "partial" when
 * it is well-formed as far as it goes.
 */
function checkStructure(buf: Uint8Array, length: number, start: number): "ok" | "partial" | "bad" {
  const available = Math.min(buf.length, length);
  let at = start;
  while (at < length) {
    const id = buf[at];
    if (id === undefined || at >= available) return "partial";
    const kind = headerKind(id);
    if (kind === "byte" || kind === "u32") {
      at += kind === "byte" ? 2 : 5;
      if (at > length) return "bad";
      continue;
    }
    if (at + 3 > available) return at + 3 > length ? "bad" : "partial";
    const n = ((buf[at + 1] ?? 0) << 8) | (buf[at + 2] ?? 0);
    if (n < 3 || at + n > length || (kind === "text" && n !== 3 && (n - 3) % 2 !== 0)) return "bad";
    at += n;
  }
  return available >= length ? "ok" : "partial";
}

// ---- framer --------------------------------------------------------------------------------------

/** Bytes the framer threw away, and why. */
export interface Discarded {
  readonly bytes: Uint8Array;
  /**
   * `garbage`: not the start of a plausible packet; `oversize`: a packet announcing more than the max
   * packet length; `reset`: a partial packet dropped by `reset()`.
   */
  readonly reason: "garbage" | "oversize" | "reset";
}

export interface FramerOutput {
  /** Whole packets, in order (not decoded: the caller knows which answer a Connect). */
  readonly packets: readonly Uint8Array[];
  readonly discarded: readonly Discarded[];
}

/**
 * Cuts a byte stream into OBEX packets. A packet must start with a known opcode or response code,
 * announce a length between the minimum and `maxPacketLength`, and have well-formed headers;
 * anything else is dropped one byte at a time until a plausible packet starts (resync). The buffer
 * never holds more than one packet of at most `maxPacketLength` bytes. A partial packet waits for
 * more bytes; the caller drops it with `reset()` after a silence (the framer keeps no timers).
 */
export class ObexFramer {
  readonly maxPacketLength: number;
  #buf: Uint8Array = new Uint8Array(0);

  constructor(maxPacketLength = MAX_MAX_PACKET_LENGTH) {
    if (!inRange(maxPacketLength, MAX_MAX_PACKET_LENGTH) || maxPacketLength < 7) {
      throw new GatewayError("bad OBEX max packet length", ErrorCode.Codec_InvalidStructure, {
        context: { maxPacketLength },
      });
    }
    this.maxPacketLength = maxPacketLength;
  }

  /** Bytes of a partial packet held. */
  get pending(): number {
    return this.#buf.length;
  }

  push(chunk: Uint8Array): FramerOutput {
    const packets: Uint8Array[] = [];
    const discarded: Discarded[] = [];
    let buf = this.#buf.length === 0 ? chunk : concat(this.#buf, chunk);
    let junkStart = -1;
    let junkReason: Discarded["reason"] = "garbage";
    let at = 0;
    const flushJunk = (end: number): void => {
      if (junkStart < 0) return;
      discarded.push({ bytes: buf.slice(junkStart, end), reason: junkReason });
      junkStart = -1;
    };
    const skip = (reason: Discarded["reason"]): void => {
      if (junkStart >= 0 && junkReason !== reason) flushJunk(at);
      if (junkStart < 0) {
        junkStart = at;
        junkReason = reason;
      }
      at++;
    };
    while (at < buf.length) {
      const verdict = this.#candidate(buf, at);
      if (verdict === "partial") break;
      if (verdict === "garbage" || verdict === "oversize") {
        skip(verdict);
        continue;
      }
      flushJunk(at);
      packets.push(buf.slice(at, at + verdict));
      at += verdict;
    }
    flushJunk(at);
    buf = buf.subarray(at);
    this.#buf = buf.slice();
    return { packets, discarded };
  }

  /** Drops a partial packet (after a silence on the line); returns what was dropped. */
  reset(): Discarded | undefined {
    if (this.#buf.length === 0) return undefined;
    const bytes = this.#buf;
    this.#buf = new Uint8Array(0);
    return { bytes, reason: "reset" };
  }

  /** The packet length at `at`, or why no packet starts there. */
  #candidate(buf: Uint8Array, at: number): number | "partial" | "garbage" | "oversize" {
    const code = buf[at] ?? 0;
    const request = isRequestCode(code);
    const response = isResponseCode(code);
    if (!request && !response) return "garbage";
    if (buf.length - at < 3) return "partial";
    const length = ((buf[at + 1] ?? 0) << 8) | (buf[at + 2] ?? 0);
    const connect = code === Opcode.Connect;
    if (length < (connect ? 7 : 3)) return "garbage";
    if (length > this.maxPacketLength) return "oversize";
    const view = buf.subarray(at);
    let s: "ok" | "partial" | "bad";
    if (connect) s = checkStructure(view, length, 7);
    else if (request) s = checkStructure(view, length, 3);
    else {
      // A response may answer a Connect (4 more bytes before the headers): either reading will do.
      const plain = checkStructure(view, length, 3);
      const withConnect = length >= 7 ? checkStructure(view, length, 7) : "bad";
      s =
        plain === "ok" || withConnect === "ok"
          ? "ok"
          : plain === "bad" && withConnect === "bad"
            ? "bad"
            : "partial";
    }
    if (s === "bad") return "garbage";
    if (s === "partial") return "partial";
    return length;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

// ---- splitter and reassembly ----------------------------------------------------------------------

export interface SplitOptions {
  /** Headers of the first packet, before the Body (Connection ID first, then Type, Length...). */
  readonly headers: readonly ObexHeader[];
  readonly body: Uint8Array;
  /** The peer's max packet length (what it announced in Connect). */
  readonly maxPacketLength: number;
  /** Code of every packet but the last (Put 0x02, Continue 0x90). */
  readonly moreCode: number;
  /** Code of the last packet (Put final 0x82, Success 0xA0). */
  readonly lastCode: number;
}

/**
 * Cuts a body into packets: the first carries `headers`, each carries as much Body as fits, the last
 * End-of-Body (possibly empty). @throws GatewayError(Codec_EncodeFailed) when the headers leave no
 * room for a byte of body within `maxPacketLength`.
 */
export function splitBody(options: SplitOptions): ObexPacket[] {
  const { headers, body, maxPacketLength } = options;
  const firstOverhead = 3 + headers.reduce((n, h) => n + headerSize(h), 0) + 3;
  if (firstOverhead + (body.length === 0 ? 0 : 1) > maxPacketLength) {
    throw encodeError(`OBEX headers of ${firstOverhead} bytes leave no room within ${maxPacketLength}`, {
      maxPacketLength,
    });
  }
  const packets: ObexPacket[] = [];
  let at = 0;
  let first = true;
  for (;;) {
    const room = maxPacketLength - (first ? firstOverhead : 6);
    const take = Math.min(room, body.length - at);
    const last = at + take >= body.length;
    const chunk = body.slice(at, at + take);
    packets.push({
      code: last ? options.lastCode : options.moreCode,
      headers: [...(first ? headers : []), bytesHeader(last ? HeaderId.EndOfBody : HeaderId.Body, chunk)],
    });
    at += take;
    first = false;
    if (last) return packets;
  }
}

/** What a finished object is. */
export interface AssembledObject {
  readonly type: string | undefined;
  readonly body: Uint8Array;
  /** Every header of the object except Body, End-of-Body and Connection ID, in arrival order. */
  readonly headers: readonly ObexHeader[];
}

export type AssembleStep =
  | { readonly kind: "more" }
  | { readonly kind: "done"; readonly object: AssembledObject }
  | { readonly kind: "error"; readonly error: GatewayError };

/**
 * Puts a multi-packet object back together (a Put's packets, or a Get's responses): Body chunks
 * until End-of-Body. Bounded by `maxObjectLength` (Codec_TooLarge); a Length header that the body
 * does not match is Codec_InvalidStructure. After `done` or `error` it starts over.
 */
export class BodyAssembler {
  readonly maxObjectLength: number;
  #parts: Uint8Array[] = [];
  #bytes = 0;
  #headers: ObexHeader[] = [];

  constructor(maxObjectLength: number) {
    this.maxObjectLength = maxObjectLength;
  }

  get started(): boolean {
    return this.#parts.length > 0 || this.#headers.length > 0;
  }

  add(packet: ObexPacket): AssembleStep {
    let end = false;
    for (const h of packet.headers) {
      if (h.id === HeaderId.Body || h.id === HeaderId.EndOfBody) {
        if (h.kind !== "bytes") continue;
        this.#bytes += h.value.length;
        if (this.#bytes > this.maxObjectLength) {
          this.clear();
          return {
            kind: "error",
            error: new GatewayError(
              `OBEX object larger than ${this.maxObjectLength} bytes`,
              ErrorCode.Codec_TooLarge,
              { context: { maxObjectLength: this.maxObjectLength } },
            ),
          };
        }
        this.#parts.push(h.value);
        if (h.id === HeaderId.EndOfBody) end = true;
      } else if (h.id !== HeaderId.ConnectionId) this.#headers.push(h);
    }
    if (!end) return { kind: "more" };
    const body = new Uint8Array(this.#bytes);
    let at = 0;
    for (const p of this.#parts) {
      body.set(p, at);
      at += p.length;
    }
    const headers = this.#headers;
    this.clear();
    const declared = headers.find((h) => h.id === HeaderId.Length);
    if (declared?.kind === "u32" && declared.value !== body.length) {
      return {
        kind: "error",
        error: new GatewayError(
          `OBEX Length ${declared.value} but ${body.length} body bytes`,
          ErrorCode.Codec_InvalidStructure,
          { context: { declared: declared.value, received: body.length } },
        ),
      };
    }
    const pseudo: ObexPacket = { code: 0, headers };
    return { kind: "done", object: { type: typeOf(pseudo), body, headers } };
  }

  clear(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#headers = [];
  }
}

// ---- transport headers ------------------------------------------------------------------------------

const UTF8 = new TextEncoder();
const UTF8_DECODER = new TextDecoder();

/**
 * The DM transport headers (`x-syncml-hmac`) as an OBEX HTTP header (0x47): HTTP-style
 * "name: value\r\n" lines. Undefined when there are none.
 */
export function httpHeader(headers: Readonly<Record<string, string>>): ObexHeader | undefined {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  if (lines.length === 0) return undefined;
  return bytesHeader(HeaderId.Http, UTF8.encode(lines.join("")));
}

/** The transport headers of an HTTP header (0x47), names lower-cased; {} when absent. */
export function headersFromHttp(headers: readonly ObexHeader[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers) {
    if (h.id !== HeaderId.Http || h.kind !== "bytes") continue;
    for (const line of UTF8_DECODER.decode(h.value).split(/\r?\n/)) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
  }
  return out;
}
