/**
 * SMS-DELIVER TPDU codec (3GPP TS 23.040 9.2.2.1, data coding TS 23.038 4 and 6.2). Pure: bytes in,
 * values out, no I/O and no globals beyond constant tables.
 *
 * The input is what `AT+CMGR` / `AT+CMGL` return in PDU mode (TS 27.005 3.1): the SMSC address field
 * first (a length octet, 0 when absent), then the TPDU:
 *
 *   SMSC | FO | OA-len OA-toa OA... | PID | DCS | SCTS(7) | UDL | [UDHL IE...] user data
 *
 * Decoding throws a `GatewayError` with a `Codec_*` code (`Codec_Truncated`, `Codec_InvalidStructure`,
 * `Codec_InvalidEncoding`, `Codec_TrailingData`) for anything truncated or inconsistent; the `try*`
 * variants return the failure as a value. `encodeSmsDeliver` builds PDUs for the simulator and tests.
 */
import { ErrorCode, isCodecError } from "../../src/core/errors.js";
import type { Decoded } from "../../src/syncml/codec.js";
import { codecError } from "./errors.js";

/** WDP destination port of WAP Push (WAP-259 WDP, OMA DM Notification over SMS: 0x0B84). */
export const WAP_PUSH_PORT = 2948;
/** The WSP connectionless source port push initiators usually send from (0x23F0). */
export const WAP_PUSH_SOURCE_PORT = 9200;

/** UDH information element identifiers (TS 23.040 9.2.3.24). */
export const IEI_CONCAT_8 = 0x00;
export const IEI_PORTS_8 = 0x04;
export const IEI_PORTS_16 = 0x05;
export const IEI_CONCAT_16 = 0x08;

/** TP-MTI values of the first octet, as seen by the receiving (MS) side. */
export const MTI_DELIVER = 0;
export const MTI_SUBMIT_REPORT = 1;
export const MTI_STATUS_REPORT = 2;

const FO_MTI_MASK = 0x03;
const FO_MMS = 0x04; // TP-More-Messages-to-Send: 0 = more messages are waiting in the SC
const FO_LP = 0x08; // TP-Loop-Prevention
const FO_SRI = 0x20; // TP-Status-Report-Indication
const FO_UDHI = 0x40; // TP-User-Data-Header-Indicator
const FO_RP = 0x80; // TP-Reply-Path

/** Max user data: 140 octets, which is 160 septets (TS 23.040 9.2.3.16). */
export const MAX_UD_OCTETS = 140;
export const MAX_UD_SEPTETS = 160;
/** TP-OA: at most 20 semi-octets (TS 23.040 9.1.2.5); SMSC field: at most 11 octets after its length. */
const MAX_ADDRESS_SEMI_OCTETS = 20;
const MAX_SMSC_OCTETS = 11;

const TON_INTERNATIONAL = 1;
const TON_ALPHANUMERIC = 5;

export interface SmsAddress {
  /** The type-of-address octet as received (bit 7 set). */
  readonly toa: number;
  /** Type of number, bits 6..4 of `toa` (1 international, 5 alphanumeric). */
  readonly ton: number;
  /** Numbering plan, bits 3..0 of `toa` (1 ISDN/E.164). */
  readonly npi: number;
  /** Digits, with a leading "+" when international; the decoded text when alphanumeric. */
  readonly value: string;
}

export interface SmsTimestamp {
  /** Four-digit year (2000 + the two BCD digits). */
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  /** Offset from UTC in minutes (the PDU carries quarter hours). */
  readonly offsetMinutes: number;
  /**
   * The instant, or `undefined` when a field is not valid BCD or out of range. The timestamp is
   * informational only, so a bad one does not make the message malformed.
   */
  readonly epochMs: number | undefined;
}

export type SmsAlphabet = "gsm7" | "8bit" | "ucs2";

export interface DataCoding {
  readonly alphabet: SmsAlphabet;
  /** TS 23.038 compression flag: the user data is compressed; no text is decoded then. */
  readonly compressed: boolean;
  /** Message class 0..3, when the DCS gives one. */
  readonly messageClass: number | undefined;
}

export interface InformationElement {
  readonly iei: number;
  readonly data: Uint8Array;
}

export interface PortAddressing {
  readonly destination: number;
  readonly source: number;
  /** 16 for IE 0x05, 8 for IE 0x04. */
  readonly bits: 8 | 16;
}

export interface ConcatInfo {
  readonly reference: number;
  /** 8 for IE 0x00, 16 for IE 0x08. */
  readonly referenceBits: 8 | 16;
  /** Number of parts, 1..255. */
  readonly total: number;
  /** This part's number, 1..total. */
  readonly sequence: number;
}

export interface UserDataHeader {
  /** Every information element in order, including unknown ones. */
  readonly elements: readonly InformationElement[];
  /** The last port-addressing IE (TS 23.040: a repeated IE's last occurrence wins). */
  readonly ports: PortAddressing | undefined;
  /** The last valid concatenation IE; an IE with sequence 0 or above total is ignored (9.2.3.24.1). */
  readonly concat: ConcatInfo | undefined;
}

export interface SmsDeliver {
  /** The SMSC address field, `undefined` when its length octet is 0. */
  readonly smsc: SmsAddress | undefined;
  readonly firstOctet: number;
  /** TP-MMS clear: the service centre has more messages waiting. */
  readonly moreMessagesToSend: boolean;
  readonly loopPrevention: boolean;
  readonly statusReportIndication: boolean;
  readonly replyPath: boolean;
  /** TP-UDHI: the user data starts with a header. */
  readonly udhi: boolean;
  readonly originator: SmsAddress;
  readonly pid: number;
  readonly dcs: number;
  readonly coding: DataCoding;
  readonly timestamp: SmsTimestamp;
  /** TP-UDL as received: septets for GSM 7-bit, octets otherwise. */
  readonly udl: number;
  readonly udh: UserDataHeader | undefined;
  /**
   * The user data after the header: the octets as received for 8-bit, UCS2 and compressed data; the
   * unpacked septet values (one per byte) for GSM 7-bit.
   */
  readonly payload: Uint8Array;
  /** The decoded text for GSM 7-bit and UCS2, `undefined` for 8-bit or compressed data. */
  readonly text: string | undefined;
}

export interface DecodeSmsOptions {
  /** The PDU starts with the SMSC address field (as `AT+CMGR` returns it). Default true. */
  readonly smsc?: boolean;
  /** The `<length>` from `+CMGR:`/`+CMGL:`: the TPDU length in octets, checked when given. */
  readonly tpduLength?: number;
}

// GSM 7-bit default alphabet (TS 23.038 6.2.1); index = septet value. 0x1B is the escape.
const GSM7_BASIC =
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
// Default alphabet extension table (TS 23.038 6.2.1.1), reached through 0x1B.
const GSM7_EXTENSION: ReadonlyMap<number, string> = new Map([
  [0x0a, "\f"],
  [0x14, "^"],
  [0x28, "{"],
  [0x29, "}"],
  [0x2f, "\\"],
  [0x3c, "["],
  [0x3d, "~"],
  [0x3e, "]"],
  [0x40, "|"],
  [0x65, "€"],
]);
const GSM7_ESCAPE = 0x1b;
const GSM7_ENCODE: ReadonlyMap<string, readonly number[]> = (() => {
  const m = new Map<string, readonly number[]>();
  // Every character of the table is in the BMP, so code-unit indexing is exact.
  for (let i = 0; i < GSM7_BASIC.length; i++) {
    if (i !== GSM7_ESCAPE) m.set(GSM7_BASIC.charAt(i), [i]);
  }
  for (const [code, ch] of GSM7_EXTENSION) m.set(ch, [GSM7_ESCAPE, code]);
  return m;
})();

const SEMI_OCTET_DIGITS = "0123456789*#abc";

/** Reads a PDU front to back; every shortfall is a `Codec_Truncated` naming the field. */
class Reader {
  offset = 0;
  constructor(readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  take(n: number, field: string): Uint8Array {
    if (n > this.remaining) {
      throw codecError(`SMS PDU truncated in ${field}`, ErrorCode.Codec_Truncated, {
        field,
        offset: this.offset,
        need: n,
        have: this.remaining,
      });
    }
    const out = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u8(field: string): number {
    return this.take(1, field)[0] ?? 0;
  }
}

/** Hex text (as in `+CMGR` responses) to bytes; anything but an even run of hex digits is rejected. */
export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9A-Fa-f]*$/.test(hex)) {
    throw codecError("PDU hex is not an even run of hex digits", ErrorCode.Codec_InvalidEncoding, {
      length: hex.length,
    });
  }
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

/** Bytes to upper-case hex, as modems print PDUs. */
export function bytesToHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex").toUpperCase();
}

/**
 * TP-MTI of a PDU without decoding the rest (0 deliver, 1 submit-report, 2 status-report), or
 * `undefined` when the PDU is too short to have a first octet.
 */
export function tpduMessageType(
  pdu: Uint8Array,
  options: { readonly smsc?: boolean } = {},
): number | undefined {
  const at = options.smsc === false ? 0 : 1 + (pdu[0] ?? 0);
  const fo = pdu[at];
  return fo === undefined ? undefined : fo & FO_MTI_MASK;
}

/**
 * Decodes an SMS-DELIVER. Throws `GatewayError` with `Codec_Truncated` (a field runs past the end),
 * `Codec_InvalidStructure` (not a DELIVER, lengths that contradict each other, a malformed known IE),
 * `Codec_InvalidEncoding` (UCS2 with an odd octet count) or `Codec_TrailingData` (octets after the
 * user data).
 */
export function decodeSmsDeliver(pdu: Uint8Array, options: DecodeSmsOptions = {}): SmsDeliver {
  const r = new Reader(pdu);
  const smsc = options.smsc === false ? undefined : readSmsc(r);
  const tpduStart = r.offset;
  if (options.tpduLength !== undefined && options.tpduLength !== pdu.length - tpduStart) {
    throw codecError("TPDU length differs from the length the modem gave", ErrorCode.Codec_InvalidStructure, {
      declared: options.tpduLength,
      actual: pdu.length - tpduStart,
    });
  }

  const fo = r.u8("first octet");
  const mti = fo & FO_MTI_MASK;
  if (mti !== MTI_DELIVER) {
    throw codecError("not an SMS-DELIVER", ErrorCode.Codec_InvalidStructure, { mti, offset: tpduStart });
  }
  const originator = readOriginator(r);
  const pid = r.u8("TP-PID");
  const dcs = r.u8("TP-DCS");
  const coding = decodeDcs(dcs);
  const timestamp = decodeTimestamp(r.take(7, "TP-SCTS"));
  const udl = r.u8("TP-UDL");
  const udhi = (fo & FO_UDHI) !== 0;

  const septets = coding.alphabet === "gsm7" && !coding.compressed;
  const maxUdl = septets ? MAX_UD_SEPTETS : MAX_UD_OCTETS;
  if (udl > maxUdl) {
    throw codecError("TP-UDL above the maximum", ErrorCode.Codec_InvalidStructure, { udl, max: maxUdl });
  }
  const udOctets = septets ? Math.ceil((udl * 7) / 8) : udl;
  const udOffset = r.offset;
  const ud = r.take(udOctets, "TP-UD");
  if (r.remaining > 0) {
    throw codecError("octets after the user data", ErrorCode.Codec_TrailingData, {
      offset: r.offset,
      extra: r.remaining,
    });
  }

  let udh: UserDataHeader | undefined;
  let bodyStart = 0; // octets (8-bit, UCS2) or septets (GSM 7-bit) into the user data
  if (udhi) {
    if (ud.length < 1) {
      throw codecError("TP-UDHI set but no user data", ErrorCode.Codec_InvalidStructure, {
        offset: udOffset,
      });
    }
    const udhl = ud[0] ?? 0;
    const headerOctets = 1 + udhl;
    const headerUnits = septets ? Math.ceil((headerOctets * 8) / 7) : headerOctets;
    if (headerOctets > ud.length || headerUnits > udl) {
      throw codecError("user data header longer than the user data", ErrorCode.Codec_InvalidStructure, {
        udhl,
        udl,
        offset: udOffset,
      });
    }
    udh = decodeUdh(ud.subarray(1, headerOctets), udOffset + 1);
    bodyStart = headerUnits;
  }

  let payload: Uint8Array;
  let text: string | undefined;
  if (septets) {
    payload = unpackSeptets(ud, udl - bodyStart, bodyStart);
    text = gsm7ToString(payload);
  } else {
    payload = ud.subarray(bodyStart);
    if (coding.alphabet === "ucs2" && !coding.compressed) {
      if (payload.length % 2 !== 0) {
        throw codecError("UCS2 user data with an odd octet count", ErrorCode.Codec_InvalidEncoding, {
          length: payload.length,
        });
      }
      text = ucs2ToString(payload);
    }
  }

  return {
    smsc,
    firstOctet: fo,
    moreMessagesToSend: (fo & FO_MMS) === 0,
    loopPrevention: (fo & FO_LP) !== 0,
    statusReportIndication: (fo & FO_SRI) !== 0,
    replyPath: (fo & FO_RP) !== 0,
    udhi,
    originator,
    pid,
    dcs,
    coding,
    timestamp,
    udl,
    udh,
    payload,
    text,
  };
}

/** `decodeSmsDeliver` on the hex text of a `+CMGR`/`+CMGL` response (also `Codec_InvalidEncoding`). */
export function decodeSmsDeliverHex(hex: string, options: DecodeSmsOptions = {}): SmsDeliver {
  return decodeSmsDeliver(hexToBytes(hex), options);
}

/** `decodeSmsDeliver` with the failure as a value; a non-codec exception is a bug and propagates. */
export function tryDecodeSmsDeliver(pdu: Uint8Array, options: DecodeSmsOptions = {}): Decoded<SmsDeliver> {
  try {
    return { ok: true, value: decodeSmsDeliver(pdu, options) };
  } catch (e) {
    if (isCodecError(e)) return { ok: false, error: e };
    throw e;
  }
}

function readSmsc(r: Reader): SmsAddress | undefined {
  const len = r.u8("SMSC length");
  if (len === 0) return undefined;
  if (len > MAX_SMSC_OCTETS) {
    throw codecError("SMSC address longer than 11 octets", ErrorCode.Codec_InvalidStructure, {
      length: len,
      offset: 0,
    });
  }
  const field = r.take(len, "SMSC address");
  const toa = field[0] ?? 0;
  const digits = field.subarray(1);
  return makeAddress(toa, semiOctetsToString(digits, digits.length * 2));
}

function readOriginator(r: Reader): SmsAddress {
  const offset = r.offset;
  const semiOctets = r.u8("TP-OA length");
  if (semiOctets > MAX_ADDRESS_SEMI_OCTETS) {
    throw codecError("TP-OA longer than 20 semi-octets", ErrorCode.Codec_InvalidStructure, {
      length: semiOctets,
      offset,
    });
  }
  const toa = r.u8("TP-OA type");
  const field = r.take(Math.ceil(semiOctets / 2), "TP-OA");
  if (((toa >> 4) & 0x07) === TON_ALPHANUMERIC) {
    // Alphanumeric: GSM 7-bit packed; the length counts the semi-octets actually used.
    return makeAddress(toa, gsm7ToString(unpackSeptets(field, Math.floor((semiOctets * 4) / 7), 0)));
  }
  return makeAddress(toa, semiOctetsToString(field, semiOctets));
}

function makeAddress(toa: number, raw: string): SmsAddress {
  const ton = (toa >> 4) & 0x07;
  const value = ton === TON_INTERNATIONAL && raw.length > 0 && !raw.startsWith("+") ? `+${raw}` : raw;
  return { toa, ton, npi: toa & 0x0f, value };
}

/** Swapped semi-octets to digits; 0xF is filler and skipped. */
function semiOctetsToString(bytes: Uint8Array, count: number): string {
  let out = "";
  for (let i = 0; i < count; i++) {
    const b = bytes[i >> 1] ?? 0xff;
    const nibble = i % 2 === 0 ? b & 0x0f : b >> 4;
    if (nibble !== 0x0f) out += SEMI_OCTET_DIGITS[nibble] ?? "";
  }
  return out;
}

/** TS 23.038 4: the alphabet, compression and class a DCS octet selects. */
export function decodeDcs(dcs: number): DataCoding {
  const group = dcs >> 4;
  if (group <= 0x7) {
    // 00xx xxxx general data coding, 01xx xxxx the same marked for automatic deletion.
    const cs = (dcs >> 2) & 0x03;
    return {
      alphabet: cs === 1 ? "8bit" : cs === 2 ? "ucs2" : "gsm7", // 3 is reserved: GSM 7-bit
      compressed: (dcs & 0x20) !== 0,
      messageClass: (dcs & 0x10) !== 0 ? dcs & 0x03 : undefined,
    };
  }
  if (group === 0xf) {
    return { alphabet: (dcs & 0x04) !== 0 ? "8bit" : "gsm7", compressed: false, messageClass: dcs & 0x03 };
  }
  // 1100/1101 message waiting (GSM 7-bit), 1110 message waiting (UCS2), 1000..1011 reserved (GSM 7-bit).
  return { alphabet: group === 0xe ? "ucs2" : "gsm7", compressed: false, messageClass: undefined };
}

function bcd(b: number): number {
  const lo = b & 0x0f;
  const hi = b >> 4;
  return lo > 9 || hi > 9 ? Number.NaN : lo * 10 + hi;
}

/** TP-SCTS (TS 23.040 9.2.3.11): swapped BCD; the zone in quarter hours, sign in bit 3. */
export function decodeTimestamp(b: Uint8Array): SmsTimestamp {
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, tz = 0] = b;
  const zoneUnits = tz >> 4;
  const quarters = (tz & 0x07) * 10 + zoneUnits;
  const offsetMinutes = ((tz & 0x08) !== 0 ? -quarters : quarters) * 15;
  const year = 2000 + bcd(y);
  const month = bcd(mo);
  const day = bcd(d);
  const hour = bcd(h);
  const minute = bcd(mi);
  const second = bcd(s);
  const valid =
    !Number.isNaN(year) &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= 31 &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    zoneUnits <= 9;
  const epochMs = valid
    ? Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000
    : undefined;
  return { year, month, day, hour, minute, second, offsetMinutes, epochMs };
}

function decodeUdh(header: Uint8Array, baseOffset: number): UserDataHeader {
  const elements: InformationElement[] = [];
  let ports: PortAddressing | undefined;
  let concat: ConcatInfo | undefined;
  let i = 0;
  while (i < header.length) {
    const iei = header[i] ?? 0;
    const len = header[i + 1];
    if (len === undefined || i + 2 + len > header.length) {
      throw codecError(
        "information element runs past the user data header",
        ErrorCode.Codec_InvalidStructure,
        {
          iei,
          offset: baseOffset + i,
        },
      );
    }
    const data = header.subarray(i + 2, i + 2 + len);
    elements.push({ iei, data });
    const expected = knownIeLength(iei);
    if (expected !== undefined && len !== expected) {
      throw codecError("information element with the wrong length", ErrorCode.Codec_InvalidStructure, {
        iei,
        length: len,
        expected,
        offset: baseOffset + i,
      });
    }
    const at = (k: number): number => data[k] ?? 0;
    switch (iei) {
      case IEI_PORTS_16:
        ports = { destination: (at(0) << 8) | at(1), source: (at(2) << 8) | at(3), bits: 16 };
        break;
      case IEI_PORTS_8:
        ports = { destination: at(0), source: at(1), bits: 8 };
        break;
      case IEI_CONCAT_8:
      case IEI_CONCAT_16: {
        const wide = iei === IEI_CONCAT_16;
        const reference = wide ? (at(0) << 8) | at(1) : at(0);
        const total = wide ? at(2) : at(1);
        const sequence = wide ? at(3) : at(2);
        // 9.2.3.24.1: a sequence of 0 or above the total means the whole IE is ignored.
        if (total >= 1 && sequence >= 1 && sequence <= total) {
          concat = { reference, referenceBits: wide ? 16 : 8, total, sequence };
        }
        break;
      }
      default:
        break;
    }
    i += 2 + len;
  }
  return { elements, ports, concat };
}

function knownIeLength(iei: number): number | undefined {
  switch (iei) {
    case IEI_CONCAT_8:
      return 3;
    case IEI_PORTS_8:
      return 2;
    case IEI_PORTS_16:
      return 4;
    case IEI_CONCAT_16:
      return 4;
    default:
      return undefined;
  }
}

/**
 * Unpacks `count` GSM 7-bit septets from packed octets, starting `startSeptet` septets in (the septets
 * a user data header and its fill bits occupy). One septet value per output byte.
 */
export function unpackSeptets(packed: Uint8Array, count: number, startSeptet = 0): Uint8Array {
  const out = new Uint8Array(Math.max(0, count));
  for (let i = 0; i < out.length; i++) {
    const bit = (startSeptet + i) * 7;
    const byte = bit >> 3;
    const shift = bit & 7;
    out[i] = (((packed[byte] ?? 0) >> shift) | ((packed[byte + 1] ?? 0) << (8 - shift))) & 0x7f;
  }
  return out;
}

/** Packs septet values, leaving `startSeptet` septets of room (zero fill) for a header. */
export function packSeptets(septets: Uint8Array, startSeptet = 0): Uint8Array {
  const totalSeptets = startSeptet + septets.length;
  const out = new Uint8Array(Math.ceil((totalSeptets * 7) / 8));
  septets.forEach((v, i) => {
    const bit = (startSeptet + i) * 7;
    const byte = bit >> 3;
    const shift = bit & 7;
    out[byte] = (out[byte] ?? 0) | ((v << shift) & 0xff);
    if (shift > 1) out[byte + 1] = (out[byte + 1] ?? 0) | (v >> (8 - shift));
  });
  return out;
}

/**
 * Septet values to text through the default alphabet and its extension table. An escape followed by
 * a code the extension table lacks shows the basic character (TS 23.038 6.2.1.1); a trailing escape
 * shows as a space.
 */
export function gsm7ToString(septets: Uint8Array): string {
  let out = "";
  for (let i = 0; i < septets.length; i++) {
    const v = septets[i] ?? 0;
    if (v === GSM7_ESCAPE) {
      const next = septets[i + 1];
      if (next === undefined) {
        out += " ";
        break;
      }
      i++;
      out += GSM7_EXTENSION.get(next) ?? (next === GSM7_ESCAPE ? " " : (GSM7_BASIC[next] ?? ""));
      continue;
    }
    out += GSM7_BASIC[v] ?? "";
  }
  return out;
}

/** Text to septet values; throws `Codec_EncodeFailed` for a character outside the default alphabet. */
export function stringToGsm7(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const code = GSM7_ENCODE.get(ch);
    if (code === undefined) {
      throw codecError("character outside the GSM 7-bit default alphabet", ErrorCode.Codec_EncodeFailed, {
        char: ch,
      });
    }
    out.push(...code);
  }
  return Uint8Array.from(out);
}

function ucs2ToString(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    out += String.fromCharCode(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  }
  return out;
}

function stringToUcs2(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out[2 * i] = c >> 8;
    out[2 * i + 1] = c & 0xff;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Encoding (simulator and tests)

export interface SmsDeliverInit {
  /** SMSC address ("+4917..."); omitted: an empty SMSC field (length octet 0). */
  readonly smsc?: string;
  /**
   * Originating address: digits, "+" for international, or anything else as an alphanumeric sender
   * (GSM 7-bit, up to 11 characters).
   */
  readonly originator: string;
  readonly pid?: number;
  /** Default 0x04 (8-bit data) for `userData`, 0x00 for GSM 7-bit `text`, 0x08 for `ucs2Text`. */
  readonly dcs?: number;
  /** Service centre timestamp; default 2025-01-01T00:00:00Z. */
  readonly timestampMs?: number;
  /** Zone of the timestamp in minutes (a multiple of 15); default 0. */
  readonly offsetMinutes?: number;
  /** Clear TP-MMS (more messages waiting). Default false. */
  readonly moreMessagesToSend?: boolean;
  readonly ports?: { readonly destination: number; readonly source: number; readonly bits?: 8 | 16 };
  readonly concat?: {
    readonly reference: number;
    readonly total: number;
    readonly sequence: number;
    readonly referenceBits?: 8 | 16;
  };
  /** More IEs, after the port and concatenation IEs. */
  readonly extraElements?: readonly InformationElement[];
  /** 8-bit user data (one of `userData`, `text`, `ucs2Text`). */
  readonly userData?: Uint8Array;
  /** Text in the GSM 7-bit default alphabet. */
  readonly text?: string;
  /** Text as UCS2. */
  readonly ucs2Text?: string;
}

const DEFAULT_TIMESTAMP_MS = Date.UTC(2025, 0, 1, 0, 0, 0);

/**
 * Encodes an SMS-DELIVER with its SMSC field, as a modem stores it. Throws `Codec_EncodeFailed` when
 * the user data (with its header) does not fit in one SMS or the input cannot be represented.
 */
export function encodeSmsDeliver(init: SmsDeliverInit): Uint8Array {
  const bodies = [init.userData, init.text, init.ucs2Text].filter((b) => b !== undefined).length;
  if (bodies !== 1) {
    throw codecError("give exactly one of userData, text, ucs2Text", ErrorCode.Codec_EncodeFailed);
  }
  const header = encodeUdh(init);
  const out: number[] = [];
  out.push(...encodeSmsc(init.smsc));
  let fo = MTI_DELIVER;
  if (init.moreMessagesToSend !== true) fo |= FO_MMS;
  if (header !== undefined) fo |= FO_UDHI;
  out.push(fo);
  out.push(...encodeOriginator(init.originator));
  out.push(init.pid ?? 0);

  let dcs: number;
  let udl: number;
  let ud: Uint8Array;
  const headerBytes = header === undefined ? new Uint8Array(0) : Uint8Array.of(header.length, ...header);
  if (init.text !== undefined) {
    dcs = init.dcs ?? 0x00;
    const septets = stringToGsm7(init.text);
    const headerSeptets = Math.ceil((headerBytes.length * 8) / 7);
    udl = headerSeptets + septets.length;
    if (udl > MAX_UD_SEPTETS) {
      throw codecError("text does not fit in one SMS", ErrorCode.Codec_EncodeFailed, { septets: udl });
    }
    ud = packSeptets(septets, headerSeptets);
    ud.set(headerBytes, 0);
  } else {
    const body = init.userData ?? stringToUcs2(init.ucs2Text ?? "");
    dcs = init.dcs ?? (init.userData !== undefined ? 0x04 : 0x08);
    udl = headerBytes.length + body.length;
    if (udl > MAX_UD_OCTETS) {
      throw codecError("user data does not fit in one SMS", ErrorCode.Codec_EncodeFailed, { octets: udl });
    }
    ud = new Uint8Array(udl);
    ud.set(headerBytes, 0);
    ud.set(body, headerBytes.length);
  }
  out.push(dcs);
  out.push(...encodeTimestamp(init.timestampMs ?? DEFAULT_TIMESTAMP_MS, init.offsetMinutes ?? 0));
  out.push(udl, ...ud);
  return Uint8Array.from(out);
}

/** `encodeSmsDeliver` as upper-case hex plus the TPDU length `AT+CMGR` reports. */
export function encodeSmsDeliverHex(init: SmsDeliverInit): {
  readonly hex: string;
  readonly tpduLength: number;
} {
  const pdu = encodeSmsDeliver(init);
  return { hex: bytesToHex(pdu), tpduLength: pdu.length - 1 - (pdu[0] ?? 0) };
}

function encodeUdh(init: SmsDeliverInit): number[] | undefined {
  const ies: number[] = [];
  if (init.concat !== undefined) {
    const { reference, total, sequence } = init.concat;
    if (init.concat.referenceBits === 16)
      ies.push(IEI_CONCAT_16, 4, reference >> 8, reference & 0xff, total, sequence);
    else ies.push(IEI_CONCAT_8, 3, reference & 0xff, total, sequence);
  }
  if (init.ports !== undefined) {
    const { destination, source } = init.ports;
    if (init.ports.bits === 8) ies.push(IEI_PORTS_8, 2, destination & 0xff, source & 0xff);
    else ies.push(IEI_PORTS_16, 4, destination >> 8, destination & 0xff, source >> 8, source & 0xff);
  }
  for (const ie of init.extraElements ?? []) ies.push(ie.iei, ie.data.length, ...ie.data);
  return ies.length === 0 ? undefined : ies;
}

function encodeSmsc(smsc: string | undefined): number[] {
  if (smsc === undefined || smsc === "") return [0];
  const { toa, digits } = numberToa(smsc);
  const octets = digitsToSemiOctets(digits);
  return [1 + octets.length, toa, ...octets];
}

function encodeOriginator(address: string): number[] {
  if (/^\+?[0-9*#]+$/.test(address)) {
    const { toa, digits } = numberToa(address);
    return [digits.length, toa, ...digitsToSemiOctets(digits)];
  }
  const septets = stringToGsm7(address);
  const packed = packSeptets(septets);
  const semiOctets = Math.ceil((septets.length * 7) / 4);
  if (semiOctets > MAX_ADDRESS_SEMI_OCTETS) {
    throw codecError("alphanumeric originator longer than 11 characters", ErrorCode.Codec_EncodeFailed);
  }
  return [semiOctets, 0x80 | (TON_ALPHANUMERIC << 4), ...packed];
}

function numberToa(address: string): { toa: number; digits: string } {
  const international = address.startsWith("+");
  const digits = international ? address.slice(1) : address;
  if (!/^[0-9*#]*$/.test(digits) || digits.length > MAX_ADDRESS_SEMI_OCTETS) {
    throw codecError("not a phone number", ErrorCode.Codec_EncodeFailed, { address });
  }
  return { toa: international ? 0x91 : 0x81, digits };
}

function digitsToSemiOctets(digits: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < digits.length; i += 2) {
    const lo = SEMI_OCTET_DIGITS.indexOf(digits[i] ?? "");
    const hi = i + 1 < digits.length ? SEMI_OCTET_DIGITS.indexOf(digits[i + 1] ?? "") : 0x0f;
    out.push((hi << 4) | lo);
  }
  return out;
}

function encodeTimestamp(epochMs: number, offsetMinutes: number): number[] {
  const local = new Date(epochMs + offsetMinutes * 60_000);
  const swap = (n: number): number => ((n % 10) << 4) | Math.floor(n / 10);
  const quarters = Math.round(Math.abs(offsetMinutes) / 15);
  const zone = ((quarters % 10) << 4) | Math.floor(quarters / 10) | (offsetMinutes < 0 ? 0x08 : 0);
  return [
    swap(local.getUTCFullYear() % 100),
    swap(local.getUTCMonth() + 1),
    swap(local.getUTCDate()),
    swap(local.getUTCHours()),
    swap(local.getUTCMinutes()),
    swap(local.getUTCSeconds()),
    zone,
  ];
}
