/**
 * Connectionless WSP Push PDU framing (WAP-230-WSP section 8.2.4.1, encodings section 8.4), the
 * envelope a DM server's Pkg#0 arrives in over SMS or UDP (WDP port 2948; protocol.md 5.3). Pure:
 * the UDP listener and the SMS reassembly live elsewhere.
 *
 * ```
 *   TID(1) PDUType(1: 0x06 Push | 0x07 ConfirmedPush) HeadersLen(uintvar) ContentType Headers Data
 *   e.g. 01 06 03 C4 AF 87 <Pkg#0>
 *        C4    = Content-Type short-integer 0x44 application/vnd.syncml.notification
 *        AF 87 = X-Wap-Application-Id (0x2F) = 0x07 x-wap-application:syncml.dm
 * ```
 *
 * HeadersLen counts ContentType and Headers. Decoding accepts the three Content-Type forms
 * (short-integer, text, and the general form with a value length), well-known and textual headers,
 * and integer or text application ids. Code-page shifts in headers are refused
 * (`Codec_UnknownToken`): no push sender we know of uses them.
 */
import { ErrorCode, GatewayError, isCodecError } from "../core/errors.js";
import type { Decoded } from "./codec.js";
import { MIME_DM_NOTIFICATION, MIME_DM_WBXML, MIME_DM_XML } from "./constants.js";

/** WDP destination port of WAP Push (0x0B84). */
export const WAP_PUSH_PORT = 2948;
/** The usual WDP source port of a push sender (0x23F0). */
export const WAP_PUSH_SOURCE_PORT = 9200;

export const WSP_PDU_PUSH = 0x06;
export const WSP_PDU_CONFIRMED_PUSH = 0x07;
export type WspPushPduType = typeof WSP_PDU_PUSH | typeof WSP_PDU_CONFIRMED_PUSH;

/** WSP header field code of X-Wap-Application-Id. */
export const WSP_HEADER_X_WAP_APPLICATION_ID = 0x2f;
/** The OMNA name of the IANA-registered Pkg#0 type, WSP code 0x58 (protocol.md 6.5). */
export const MIME_DM_NOTIFICATION_ALT = "application/vnd.syncml.dm.notification";
export const APP_ID_SYNCML_DM = "x-wap-application:syncml.dm";

/**
 * WDP plus WSP headers must fit in 48 bytes (protocol.md 5.3). The WDP part is 7 bytes over SMS
 * (UDH length, IE 0x05, IE length, two 16-bit ports) and 8 over UDP, so the WSP part before the
 * body (TID through the last header) is held to 48 - 8.
 */
export const MAX_WSP_PUSH_HEADER_BYTES = 40;

/** WSP well-known content types (OMNA wsp_content_type_codes) this gateway may meet. */
const CONTENT_TYPES: ReadonlyMap<number, string> = new Map([
  [0x00, "*/*"],
  [0x2e, "application/vnd.wap.sic"],
  [0x30, "application/vnd.wap.slc"],
  [0x32, "application/vnd.wap.coc"],
  [0x3e, "application/vnd.wap.mms-message"],
  [0x42, MIME_DM_WBXML],
  [0x43, MIME_DM_XML],
  [0x44, MIME_DM_NOTIFICATION],
  [0x4e, "application/vnd.syncml.ds.notification"],
  [0x58, MIME_DM_NOTIFICATION_ALT],
  [0x5a, "application/octet-stream"],
]);

/**
 * Push application ids (OMNA push_application_id; WAP-230 Appendix A). 0x1A is from the LwM2M
 * transport spec's trigger example (OMA-TS-LightweightM2M Transport, Appendix L).
 */
const APP_IDS: ReadonlyMap<number, string> = new Map([
  [0x00, "x-wap-application:*"],
  [0x01, "x-wap-application:push.sia"],
  [0x02, "x-wap-application:wml.ua"],
  [0x03, "x-wap-application:wta.ua"],
  [0x04, "x-wap-application:mms.ua"],
  [0x05, "x-wap-application:push.syncml"],
  [0x06, "x-wap-application:loc.ua"],
  [0x07, APP_ID_SYNCML_DM],
  [0x08, "x-wap-application:drm.ua"],
  [0x09, "x-wap-application:emn.ua"],
  [0x0a, "x-wap-application:wv.ua"],
  [0x1a, "x-wap-application:lwm2m.dm"],
]);

/** WSP well-known header field names (WAP-230 Table 39) a push may carry; 0x50 from OMNA (GwMO). */
const HEADER_NAMES: ReadonlyMap<number, string> = new Map([
  [0x2f, "X-Wap-Application-Id"],
  [0x30, "X-Wap-Content-URI"],
  [0x31, "X-Wap-Initiator-URI"],
  [0x33, "Bearer-Indication"],
  [0x34, "Push-Flag"],
  [0x3f, "X-Wap-Tod"],
  [0x40, "Content-ID"],
  [0x50, "X-Oma-GwMO"],
]);

/** One push header. */
export interface WspHeader {
  /** The well-known name for a field code (`0xNN` for a code not in our table), else the token text. */
  readonly name: string;
  /** The well-known field code, or undefined for a textual (application) header. */
  readonly code: number | undefined;
  /**
   * Text for a text value; a number for a short-integer value (and for an integer application id
   * not in our table); the raw bytes for a value-length-prefixed value. X-Wap-Application-Id codes
   * we know are expanded to their URN text.
   */
  readonly value: string | number | Uint8Array;
}

export interface WspPush {
  /** Transaction id (0..255). */
  readonly tid: number;
  readonly pduType: WspPushPduType;
  /** The media type: the well-known name for a code, the text as sent, or `0xNN` for an unknown code. */
  readonly contentType: string;
  /** The well-known code when the content type was sent as one, else undefined. */
  readonly contentTypeCode: number | undefined;
  /** Parameter bytes of a general-form content type, undecoded (usually empty). */
  readonly contentTypeParameters: Uint8Array;
  readonly headers: readonly WspHeader[];
  /** The X-Wap-Application-Id value (URN text, or a code not in our table), if the header is present. */
  readonly appId: string | number | undefined;
  readonly body: Uint8Array;
}

/**
 * Decodes a connectionless WSP Push or ConfirmedPush PDU. Malformed bytes are a value:
 * `Codec_Truncated` (cut short anywhere, or HeadersLen past the end), `Codec_IntegerOverflow`
 * (a uintvar over 32 bits or 5 octets, an over-long integer), `Codec_UnknownToken` (not a push PDU
 * type, a header code-page shift), `Codec_InvalidStructure` (no content type, a value overrunning
 * the headers), `Codec_InvalidEncoding` (text that is not UTF-8).
 */
export function decodeWspPush(bytes: Uint8Array): Decoded<WspPush> {
  try {
    return { ok: true, value: decodePush(bytes) };
  } catch (e) {
    if (isCodecError(e)) return { ok: false, error: e };
    throw e;
  }
}

export interface WspPushInput {
  readonly tid: number;
  /** Defaults to Push (0x06). */
  readonly pduType?: WspPushPduType;
  /** Written as its well-known code when it has one (0x44 → C4), else as text. */
  readonly contentType: string;
  /** Written as its code when known (syncml.dm → AF 87), else as text; a number is written as is. */
  readonly appId: string | number;
  readonly body: Uint8Array;
}

/**
 * Encodes a connectionless WSP Push PDU with Content-Type and X-Wap-Application-Id.
 * @throws GatewayError(Codec_EncodeFailed) for a TID outside 0..255, text that is not printable
 *   ASCII, an app id code outside 0..0xFFFFFFFF, or headers over `MAX_WSP_PUSH_HEADER_BYTES`.
 */
export function encodeWspPush(input: WspPushInput): Uint8Array {
  if (!Number.isInteger(input.tid) || input.tid < 0 || input.tid > 0xff) {
    throw encodeError(`WSP TID ${String(input.tid)} is outside 0..255`, { tid: input.tid });
  }
  const contentTypeCode = codeOf(CONTENT_TYPES, input.contentType);
  const contentType =
    contentTypeCode !== undefined ? [0x80 | contentTypeCode] : textString(input.contentType);
  const appIdCode = typeof input.appId === "number" ? input.appId : codeOf(APP_IDS, input.appId);
  const appId = appIdCode !== undefined ? integerValue(appIdCode) : textString(String(input.appId));
  const headers = [...contentType, 0x80 | WSP_HEADER_X_WAP_APPLICATION_ID, ...appId];
  const head = [input.tid, input.pduType ?? WSP_PDU_PUSH, ...uintvar(headers.length), ...headers];
  if (head.length > MAX_WSP_PUSH_HEADER_BYTES) {
    throw encodeError(`WSP push headers take ${head.length} bytes, over ${MAX_WSP_PUSH_HEADER_BYTES}`, {
      length: head.length,
    });
  }
  const out = new Uint8Array(head.length + input.body.length);
  out.set(head, 0);
  out.set(input.body, head.length);
  return out;
}

/**
 * True for a push meant for the DM client: content type 0x44 or 0x58 (by code or by name) and
 * X-Wap-Application-Id syncml.dm (by code 0x07 or by text). Check the WDP port (2948) before this.
 */
export function isDmNotificationPush(push: WspPush): boolean {
  const type = push.contentType.toLowerCase();
  const typeOk = type === MIME_DM_NOTIFICATION || type === MIME_DM_NOTIFICATION_ALT;
  return typeOk && typeof push.appId === "string" && push.appId.toLowerCase() === APP_ID_SYNCML_DM;
}

// ---------------------------------------------------------------------------------------------
// Decoding

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** WAP-230 8.4.2.1: octets 0..30 are a Short-length, 31 quotes a uintvar Length. */
const LENGTH_QUOTE = 31;
/** WAP-230 8.4.2.1: a Text-string whose first character is >= 128 starts with Quote (127). */
const QUOTE = 127;
const SHIFT_DELIMITER = 127;
/** A uintvar carries at most 32 bits in at most 5 octets (WAP-230 8.1.2). */
const MAX_UINTVAR_OCTETS = 5;

/** A cursor over `bytes[at..end)`; reads past `end` are truncation errors. */
class Reader {
  at: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
    readonly what: string,
  ) {
    this.at = start;
  }

  get done(): boolean {
    return this.at >= this.end;
  }

  peek(): number {
    const b = this.bytes[this.at];
    if (this.at >= this.end || b === undefined) throw truncated(this.what, this.at);
    return b;
  }

  octet(): number {
    const b = this.peek();
    this.at++;
    return b;
  }

  take(n: number): Uint8Array {
    if (this.at + n > this.end) {
      throw truncated(this.what, this.at, { need: n, available: this.end - this.at });
    }
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }

  uintvar(): number {
    const start = this.at;
    let value = 0;
    for (let i = 0; i < MAX_UINTVAR_OCTETS; i++) {
      const b = this.octet();
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) {
        if (value > 0xffffffff) throw overflow(`uintvar at ${start} exceeds 32 bits`, start);
        return value;
      }
    }
    throw overflow(`uintvar at ${start} runs over ${MAX_UINTVAR_OCTETS} octets`, start);
  }

  /** Text-string / Token-text: octets up to a NUL, without a leading Quote. */
  text(): string {
    const start = this.at;
    let nul = start;
    while (nul < this.end && this.bytes[nul] !== 0) nul++;
    if (nul >= this.end) throw truncated(`${this.what} (unterminated text)`, start);
    const first = this.bytes[start] === QUOTE ? start + 1 : start;
    this.at = nul + 1;
    try {
      return UTF8.decode(this.bytes.subarray(first, nul));
    } catch (e) {
      // fatal TextDecoder throws a TypeError on malformed UTF-8: bad input, not a bug.
      throw new GatewayError(`${this.what}: text at ${start} is not UTF-8`, ErrorCode.Codec_InvalidEncoding, {
        context: { offset: start },
        cause: e,
      });
    }
  }

  /** Value-length (after its first octet was seen to be 0..31): the length of what follows. */
  valueLength(): number {
    const first = this.octet();
    return first === LENGTH_QUOTE ? this.uintvar() : first;
  }

  /** A reader over the next `length` octets, advancing this one past them. */
  sub(length: number, what: string): Reader {
    if (this.at + length > this.end) {
      throw new GatewayError(
        `${what} of ${length} bytes overruns its ${this.what}`,
        ErrorCode.Codec_InvalidStructure,
        { context: { offset: this.at, length, available: this.end - this.at } },
      );
    }
    const r = new Reader(this.bytes, this.at, this.at + length, what);
    this.at += length;
    return r;
  }
}

function decodePush(bytes: Uint8Array): WspPush {
  const r = new Reader(bytes, 0, bytes.length, "WSP push");
  const tid = r.octet();
  const pduType = r.octet();
  if (pduType !== WSP_PDU_PUSH && pduType !== WSP_PDU_CONFIRMED_PUSH) {
    throw new GatewayError(
      `WSP PDU type 0x${hex(pduType)} is not Push or ConfirmedPush`,
      ErrorCode.Codec_UnknownToken,
      { context: { pduType } },
    );
  }
  const headersLen = r.uintvar();
  if (headersLen === 0) {
    throw new GatewayError("WSP push has no Content-Type (HeadersLen 0)", ErrorCode.Codec_InvalidStructure, {
      context: { offset: r.at },
    });
  }
  if (r.at + headersLen > bytes.length) {
    throw truncated("WSP push headers", r.at, { headersLen, available: bytes.length - r.at });
  }
  const h = new Reader(bytes, r.at, r.at + headersLen, "WSP push headers");
  const contentType = decodeContentType(h);
  const headers: WspHeader[] = [];
  while (!h.done) headers.push(decodeHeader(h));
  const appId = headers.find(
    (x) => x.code === WSP_HEADER_X_WAP_APPLICATION_ID || x.name.toLowerCase() === "x-wap-application-id",
  )?.value;
  return {
    tid,
    pduType,
    ...contentType,
    headers,
    appId: typeof appId === "string" || typeof appId === "number" ? appId : undefined,
    body: bytes.slice(r.at + headersLen),
  };
}

type ContentTypeFields = Pick<WspPush, "contentType" | "contentTypeCode" | "contentTypeParameters">;

/** Content-type-value: Short-integer | Extension-media (text) | Value-length Media-type Parameters. */
function decodeContentType(h: Reader): ContentTypeFields {
  const first = h.peek();
  if (first >= 0x80) return known(h.octet() & 0x7f, new Uint8Array(0));
  if (first >= 0x20) {
    return { contentType: h.text(), contentTypeCode: undefined, contentTypeParameters: new Uint8Array(0) };
  }
  const g = h.sub(h.valueLength(), "general-form Content-Type");
  const media = g.peek();
  if (media >= 0x80) {
    const code = g.octet() & 0x7f;
    return known(code, g.take(g.end - g.at));
  }
  if (media <= 30) {
    const code = longInteger(g);
    return known(code, g.take(g.end - g.at));
  }
  const name = g.text();
  return { contentType: name, contentTypeCode: undefined, contentTypeParameters: g.take(g.end - g.at) };
}

function known(code: number, parameters: Uint8Array): ContentTypeFields {
  return {
    contentType: CONTENT_TYPES.get(code) ?? `0x${hex(code)}`,
    contentTypeCode: code,
    contentTypeParameters: parameters,
  };
}

/** Well-known-header (Short-integer field name) or Application-header (Token-text name). */
function decodeHeader(h: Reader): WspHeader {
  const first = h.peek();
  if (first < 0x20 || first === SHIFT_DELIMITER) {
    throw new GatewayError(
      `WSP header code-page shift 0x${hex(first)} at ${h.at} is not supported`,
      ErrorCode.Codec_UnknownToken,
      { context: { offset: h.at, octet: first } },
    );
  }
  if (first >= 0x80) {
    const code = h.octet() & 0x7f;
    const name = HEADER_NAMES.get(code) ?? `0x${hex(code)}`;
    if (code === WSP_HEADER_X_WAP_APPLICATION_ID) return { name, code, value: applicationId(h) };
    return { name, code, value: fieldValue(h) };
  }
  // Application-header: Token-text then Application-specific-value, a Text-string (may be empty).
  const name = h.text();
  return { name, code: undefined, value: h.text() };
}

/** Generic field value: Short-integer, Text-string, or Value-length-prefixed bytes. */
function fieldValue(h: Reader): string | number | Uint8Array {
  const first = h.peek();
  if (first >= 0x80) return h.octet() & 0x7f;
  if (first >= 0x20) return h.text();
  const length = h.valueLength();
  return h.sub(length, "header value").take(length);
}

/** Application-id-value: Uri-value (text) | App-assigned-code (Short- or Long-integer). */
function applicationId(h: Reader): string | number {
  const first = h.peek();
  if (first >= 0x20 && first < 0x80) return h.text();
  const code = first >= 0x80 ? h.octet() & 0x7f : longInteger(h);
  return APP_IDS.get(code) ?? code;
}

/** Long-integer: Short-length (1..30) then that many big-endian octets; we accept up to 32 bits. */
function longInteger(r: Reader): number {
  const start = r.at;
  const length = r.octet();
  if (length === 0 || length > 30) {
    throw new GatewayError(`Long-integer length ${length} at ${start}`, ErrorCode.Codec_InvalidStructure, {
      context: { offset: start, length },
    });
  }
  if (length > 4) throw overflow(`Long-integer of ${length} octets at ${start} exceeds 32 bits`, start);
  let value = 0;
  for (const b of r.take(length)) value = value * 256 + b;
  return value;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function uintvar(value: number): number[] {
  const out = [value & 0x7f];
  let v = Math.floor(value / 128);
  while (v > 0) {
    out.unshift((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  return out;
}

/** Short-integer for 0..127, else Long-integer (minimal octets). */
function integerValue(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw encodeError(`WSP integer ${String(value)} is outside 0..0xFFFFFFFF`, { value });
  }
  if (value < 0x80) return [0x80 | value];
  const octets: number[] = [];
  for (let v = value; v > 0; v = Math.floor(v / 256)) octets.unshift(v & 0xff);
  return [octets.length, ...octets];
}

/** Text-string of printable ASCII (so never needing Quote), NUL-terminated. */
function textString(text: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      throw encodeError("WSP text must be printable ASCII", { offset: i });
    }
    out.push(c);
  }
  if (out.length === 0) throw encodeError("WSP text must not be empty", {});
  out.push(0);
  return out;
}

function codeOf(table: ReadonlyMap<number, string>, name: string): number | undefined {
  const lower = name.toLowerCase();
  for (const [code, known] of table) if (known.toLowerCase() === lower) return code;
  return undefined;
}

// ---------------------------------------------------------------------------------------------

function hex(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, "0");
}

function truncated(what: string, offset: number, extra: Record<string, unknown> = {}): GatewayError {
  return new GatewayError(`${what} cut short at ${offset}`, ErrorCode.Codec_Truncated, {
    context: { offset, ...extra },
  });
}

function overflow(message: string, offset: number): GatewayError {
  return new GatewayError(message, ErrorCode.Codec_IntegerOverflow, { context: { offset } });
}

function encodeError(message: string, context: Record<string, unknown>): GatewayError {
  return new GatewayError(message, ErrorCode.Codec_EncodeFailed, { context });
}
