/**
 * LwM2M TLV (OMA-TS-LightweightM2M_Core-V1_1_1 section 7.4.3), content format 11542: pure encode and
 * decode (style.md 2.3). A TLV entry is a type byte, an identifier (8 or 16 bits), a length (in the
 * type byte, or 8/16/24 bits after the identifier) and the value:
 *
 *   type byte: bits 7-6 identifier kind (00 object instance, 01 resource instance,
 *              10 multiple resource, 11 resource with value); bit 5 identifier length (0: 8, 1: 16 bits);
 *              bits 4-3 length type (00: bits 2-0 hold it, 01/10/11: 8/16/24-bit length follows)
 *
 * Values are bytes here; `tlvValue*` helpers read and write them as the data types of 7.4.3 say
 * (integers 1/2/4/8 bytes signed big-endian, floats 4/8 bytes, booleans 1 byte, object links 4 bytes).
 * Malformed input throws GatewayError(Codec_Truncated | Codec_InvalidStructure | Codec_TooDeep).
 */
import { ErrorCode, GatewayError } from "../../src/core/errors.js";

export type TlvKind = "objectInstance" | "resourceInstance" | "multipleResource" | "resource";

/** One TLV entry: leaves (`resource`, `resourceInstance`) hold bytes, the others hold entries. */
export type Tlv =
  | { readonly kind: "resource" | "resourceInstance"; readonly id: number; readonly value: Uint8Array }
  | {
      readonly kind: "objectInstance" | "multipleResource";
      readonly id: number;
      readonly children: readonly Tlv[];
    };

const KIND_BITS: Record<TlvKind, number> = {
  objectInstance: 0b00,
  resourceInstance: 0b01,
  multipleResource: 0b10,
  resource: 0b11,
};
const KINDS: readonly TlvKind[] = ["objectInstance", "resourceInstance", "multipleResource", "resource"];
/** Containers nest at most object instance > multiple resource > resource instance. */
const MAX_DEPTH = 3;

/** Encodes entries one after the other. @throws GatewayError(Codec_EncodeFailed) for an id or length out of range. */
export function encodeTlv(entries: readonly Tlv[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) parts.push(encodeOne(e));
  return concat(parts);
}

function encodeOne(e: Tlv): Uint8Array {
  const value = "value" in e ? e.value : encodeTlv(e.children);
  if (!Number.isInteger(e.id) || e.id < 0 || e.id > 0xffff) {
    throw new GatewayError(`TLV identifier ${e.id} out of range`, ErrorCode.Codec_EncodeFailed);
  }
  const len = value.length;
  if (len > 0xffffff) throw new GatewayError(`TLV value of ${len} bytes`, ErrorCode.Codec_EncodeFailed);
  const wideId = e.id > 0xff;
  const lenBytes = len < 8 ? 0 : len <= 0xff ? 1 : len <= 0xffff ? 2 : 3;
  const head = [
    (KIND_BITS[e.kind] << 6) | (wideId ? 0x20 : 0) | (lenBytes << 3) | (lenBytes === 0 ? len : 0),
  ];
  if (wideId) head.push(e.id >> 8, e.id & 0xff);
  else head.push(e.id);
  for (let i = lenBytes - 1; i >= 0; i--) head.push((len >> (8 * i)) & 0xff);
  return concat([Uint8Array.from(head), value]);
}

/** Decodes a TLV payload. @throws GatewayError(Codec_*) for truncated or ill-nested input. */
export function decodeTlv(bytes: Uint8Array): Tlv[] {
  return decodeLevel(bytes, 0, bytes.length, 0, undefined);
}

function decodeLevel(
  b: Uint8Array,
  start: number,
  end: number,
  depth: number,
  parent: TlvKind | undefined,
): Tlv[] {
  if (depth >= MAX_DEPTH)
    throw new GatewayError("TLV nested too deep", ErrorCode.Codec_TooDeep, { context: { offset: start } });
  const out: Tlv[] = [];
  let i = start;
  while (i < end) {
    const type = b[i] ?? 0;
    const kind = KINDS[type >> 6] ?? "resource";
    const idLen = type & 0x20 ? 2 : 1;
    const lenType = (type >> 3) & 0x03;
    const headLen = 1 + idLen + lenType;
    if (i + headLen > end) {
      throw new GatewayError("TLV header truncated", ErrorCode.Codec_Truncated, { context: { offset: i } });
    }
    let id = b[i + 1] ?? 0;
    if (idLen === 2) id = (id << 8) | (b[i + 2] ?? 0);
    let len = type & 0x07;
    if (lenType > 0) {
      if ((type & 0x07) !== 0) {
        throw new GatewayError("TLV length bits set with a length field", ErrorCode.Codec_InvalidStructure, {
          context: { offset: i },
        });
      }
      len = 0;
      for (let k = 0; k < lenType; k++) len = (len << 8) | (b[i + 1 + idLen + k] ?? 0);
    }
    const vStart = i + headLen;
    const vEnd = vStart + len;
    if (vEnd > end) {
      throw new GatewayError(
        `TLV value truncated: ${len} bytes announced, ${end - vStart} left`,
        ErrorCode.Codec_Truncated,
        {
          context: { offset: i },
        },
      );
    }
    if (!allowedIn(kind, parent)) {
      throw new GatewayError(
        `TLV ${kind} inside ${parent ?? "the top level"}`,
        ErrorCode.Codec_InvalidStructure,
        {
          context: { offset: i },
        },
      );
    }
    if (kind === "objectInstance" || kind === "multipleResource") {
      out.push({ kind, id, children: decodeLevel(b, vStart, vEnd, depth + 1, kind) });
    } else {
      out.push({ kind, id, value: b.slice(vStart, vEnd) });
    }
    i = vEnd;
  }
  return out;
}

function allowedIn(kind: TlvKind, parent: TlvKind | undefined): boolean {
  switch (parent) {
    case undefined:
      return true;
    case "objectInstance":
      return kind === "resource" || kind === "multipleResource";
    case "multipleResource":
      return kind === "resourceInstance";
    case "resource":
    case "resourceInstance":
      return false;
  }
}

// ---- values (7.4.3 data types) --------------------------------------------------------------------

/** An integer as the shortest of 1, 2, 4 or 8 signed big-endian bytes. */
export function tlvInteger(n: number | bigint): Uint8Array {
  const v = BigInt(n);
  for (const size of [1, 2, 4, 8]) {
    const bits = BigInt(size * 8 - 1);
    if (v >= -(1n << bits) && v < 1n << bits) {
      const out = new Uint8Array(size);
      let x = BigInt.asUintN(size * 8, v);
      for (let k = size - 1; k >= 0; k--) {
        out[k] = Number(x & 0xffn);
        x >>= 8n;
      }
      return out;
    }
  }
  throw new GatewayError(`integer ${v} does not fit 64 bits`, ErrorCode.Codec_EncodeFailed);
}

/** Reads a 1/2/4/8-byte signed integer. @throws GatewayError(Codec_InvalidStructure) for another length. */
export function readTlvInteger(value: Uint8Array): bigint {
  if (![1, 2, 4, 8].includes(value.length)) {
    throw new GatewayError(`a TLV integer of ${value.length} bytes`, ErrorCode.Codec_InvalidStructure);
  }
  let x = 0n;
  for (const byte of value) x = (x << 8n) | BigInt(byte);
  return BigInt.asIntN(value.length * 8, x);
}

export function tlvFloat(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, n);
  return out;
}

export function readTlvFloat(value: Uint8Array): number {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length === 4) return view.getFloat32(0);
  if (value.length === 8) return view.getFloat64(0);
  throw new GatewayError(`a TLV float of ${value.length} bytes`, ErrorCode.Codec_InvalidStructure);
}

export function tlvBoolean(b: boolean): Uint8Array {
  return Uint8Array.of(b ? 1 : 0);
}

export function readTlvBoolean(value: Uint8Array): boolean {
  if (value.length !== 1 || (value[0] ?? 2) > 1) {
    throw new GatewayError("a TLV boolean is one byte, 0 or 1", ErrorCode.Codec_InvalidStructure);
  }
  return value[0] === 1;
}

export function tlvString(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** UTF-8 text. @throws GatewayError(Codec_InvalidEncoding) for bytes that are not UTF-8. */
export function readTlvString(value: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(value);
  } catch (e) {
    throw new GatewayError("a TLV string is not UTF-8", ErrorCode.Codec_InvalidEncoding, { cause: e });
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
