/**
 * The BLE "DM transport" binding, pure (style.md 2.3): the GATT service that carries OMA DM
 * messages between the gateway (GATT central) and a DM-client device (peripheral), its
 * segmentation, and the message envelope. No D-Bus, no timers, no logs.
 *
 *   gateway --WriteValue(segment)--> DM_TRANSPORT_WRITE_UUID   (gateway -> device: Pkg#0, replies)
 *   gateway <--notification(segment)-- DM_TRANSPORT_NOTIFY_UUID (device -> gateway: DM messages)
 *
 *   message  = envelope (below), cut into segments of at most `segmentPayloadBytes(mtu)` bytes
 *   segment  = header (1 byte) | payload
 *   header   = bit 7 FIRST | bit 6 LAST | bits 0-5 sequence (0 on the first segment, +1 mod 64)
 *
 * An ATT write or notification carries at most ATT_MTU - 3 bytes (Bluetooth Core 5.3, Vol 3 Part F
 * 3.4.5.1 / 3.4.7.1: opcode 1 byte + handle 2 bytes), so a segment's payload is ATT_MTU - 3 - 1.
 * With the default ATT_MTU of 23 that is 19 bytes per segment.
 *
 * Envelope (one reassembled message; project-specific, like the UUIDs below):
 *   kind (1 byte) | headers length (2 bytes, big-endian) | headers | body
 *   kind:    0 = Package #0 (application/vnd.syncml.notification), 1 = DM WBXML, 2 = DM XML
 *   headers: UTF-8 `name:value` lines joined by "\n", lower-case names (x-syncml-hmac), may be empty
 * BLE has no content type or header field of its own, so the envelope carries what the HTTP and MQTT
 * bindings carry in theirs (protocol.md 6.5): the device must tell a Pkg#0 from a DM package, and
 * HMAC authentication needs its header.
 *
 * The UUIDs are **project-specific** 128-bit UUIDs (random, version 4), not assigned by the
 * Bluetooth SIG or OMA: OMA DM defines no BLE binding. A device speaking this binding must use them.
 */

/** The DM transport GATT service (project-specific, not an SIG or OMA assignment). */
export const DM_TRANSPORT_SERVICE_UUID = "6b1f0001-3c2e-4d8a-9f57-2d0a1d6d6d47";
/** Gateway -> device: write (with response) of segments. */
export const DM_TRANSPORT_WRITE_UUID = "6b1f0002-3c2e-4d8a-9f57-2d0a1d6d6d47";
/** Device -> gateway: notification of segments. */
export const DM_TRANSPORT_NOTIFY_UUID = "6b1f0003-3c2e-4d8a-9f57-2d0a1d6d6d47";

/** SIG-assigned 16-bit UUIDs (Assigned Numbers 3.4, 3.8), as BlueZ spells them in 128 bits. */
export const DEVICE_INFORMATION_SERVICE_UUID = sigUuid(0x180a);
export const BATTERY_SERVICE_UUID = sigUuid(0x180f);
export const MANUFACTURER_NAME_UUID = sigUuid(0x2a29);
export const MODEL_NUMBER_UUID = sigUuid(0x2a24);
export const SERIAL_NUMBER_UUID = sigUuid(0x2a25);
export const FIRMWARE_REVISION_UUID = sigUuid(0x2a26);
export const HARDWARE_REVISION_UUID = sigUuid(0x2a27);
export const SOFTWARE_REVISION_UUID = sigUuid(0x2a28);
export const BATTERY_LEVEL_UUID = sigUuid(0x2a19);

/** `0000xxxx-0000-1000-8000-00805f9b34fb`, lower case (BlueZ's form). */
export function sigUuid(short: number): string {
  return `0000${short.toString(16).padStart(4, "0")}-0000-1000-8000-00805f9b34fb`;
}

export const SEGMENT_FIRST = 0x80;
export const SEGMENT_LAST = 0x40;
export const SEQUENCE_MASK = 0x3f;
/** ATT opcode + attribute handle in a write or notification. */
export const ATT_HEADER_BYTES = 3;
export const SEGMENT_HEADER_BYTES = 1;
/** The smallest ATT_MTU LE allows (Core 5.3 Vol 3 Part F 3.2.8). */
export const MIN_ATT_MTU = 23;
/** The largest ATT_MTU (an attribute value is at most 512 bytes). */
export const MAX_ATT_MTU = 517;
/** Default bound of one reassembled message. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/** Payload bytes per segment at ATT_MTU `mtu` (clamped to 23..517). */
export function segmentPayloadBytes(mtu: number): number {
  const m = Math.min(MAX_ATT_MTU, Math.max(MIN_ATT_MTU, Math.floor(mtu)));
  return m - ATT_HEADER_BYTES - SEGMENT_HEADER_BYTES;
}

/** Cuts `message` into segments for ATT_MTU `mtu`; an empty message is one FIRST|LAST segment. */
export function segment(message: Uint8Array, mtu: number): Uint8Array[] {
  const size = segmentPayloadBytes(mtu);
  const count = Math.max(1, Math.ceil(message.length / size));
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const payload = message.subarray(i * size, (i + 1) * size);
    const s = new Uint8Array(SEGMENT_HEADER_BYTES + payload.length);
    s[0] = (i === 0 ? SEGMENT_FIRST : 0) | (i === count - 1 ? SEGMENT_LAST : 0) | (i & SEQUENCE_MASK);
    s.set(payload, SEGMENT_HEADER_BYTES);
    out.push(s);
  }
  return out;
}

/** Why segments were thrown away (the caller logs at warn and counts). */
export type DiscardReason =
  /** A zero-length write or notification: no header. */
  | "empty"
  /** A continuation without a FIRST before it (or after a discard). */
  | "no-first"
  /** A FIRST whose sequence is not 0. */
  | "bad-first-sequence"
  /** A continuation whose sequence is not the previous + 1 (mod 64): a lost or repeated segment. */
  | "sequence-gap"
  /** A FIRST while a message was still open: the open one is dropped. */
  | "interrupted"
  /** The message grew past `maxMessageBytes`. */
  | "too-large";

export interface Discard {
  readonly reason: DiscardReason;
  /** Bytes thrown away (headers included). */
  readonly bytes: number;
}

export interface PushResult {
  readonly messages: readonly Uint8Array[];
  readonly discarded: readonly Discard[];
}

/**
 * Incremental reassembler: `push(segment)` -> whole messages and discards. After a discard the
 * rest of that message is dropped (each continuation counted as `no-first`) until the next FIRST.
 */
export class Reassembler {
  readonly #max: number;
  #parts: Uint8Array[] = [];
  #length = 0;
  #segments = 0;
  #open = false;
  #nextSequence = 0;

  constructor(options: { readonly maxMessageBytes?: number } = {}) {
    this.#max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** True while a message is partly received. */
  get open(): boolean {
    return this.#open;
  }

  push(seg: Uint8Array): PushResult {
    const discarded: Discard[] = [];
    const messages: Uint8Array[] = [];
    const header = seg[0];
    if (header === undefined) return { messages, discarded: [{ reason: "empty", bytes: 0 }] };
    const first = (header & SEGMENT_FIRST) !== 0;
    const last = (header & SEGMENT_LAST) !== 0;
    const sequence = header & SEQUENCE_MASK;
    if (first) {
      if (this.#open) discarded.push({ reason: "interrupted", bytes: this.#dropOpen() });
      if (sequence !== 0) {
        discarded.push({ reason: "bad-first-sequence", bytes: seg.length });
        return { messages, discarded };
      }
      this.#open = true;
    } else if (!this.#open) {
      discarded.push({ reason: "no-first", bytes: seg.length });
      return { messages, discarded };
    } else if (sequence !== this.#nextSequence) {
      discarded.push({ reason: "sequence-gap", bytes: this.#dropOpen() + seg.length });
      return { messages, discarded };
    }
    const payload = seg.subarray(SEGMENT_HEADER_BYTES);
    if (this.#length + payload.length > this.#max) {
      discarded.push({ reason: "too-large", bytes: this.#dropOpen() + seg.length });
      return { messages, discarded };
    }
    this.#parts.push(Uint8Array.from(payload));
    this.#length += payload.length;
    this.#segments++;
    this.#nextSequence = (sequence + 1) & SEQUENCE_MASK;
    if (last) {
      const message = new Uint8Array(this.#length);
      let at = 0;
      for (const p of this.#parts) {
        message.set(p, at);
        at += p.length;
      }
      this.#reset();
      messages.push(message);
    }
    return { messages, discarded };
  }

  /** Drops a partly received message (link lost); returns the bytes dropped. */
  reset(): number {
    return this.#dropOpen();
  }

  #dropOpen(): number {
    const bytes = this.#length + this.#segments * SEGMENT_HEADER_BYTES;
    this.#reset();
    return bytes;
  }

  #reset(): void {
    this.#parts = [];
    this.#length = 0;
    this.#segments = 0;
    this.#open = false;
    this.#nextSequence = 0;
  }
}

export type EnvelopeKind = "package0" | "wbxml" | "xml";

export const CONTENT_TYPE_NOTIFICATION = "application/vnd.syncml.notification";
export const CONTENT_TYPE_DM_WBXML = "application/vnd.syncml.dm+wbxml";
export const CONTENT_TYPE_DM_XML = "application/vnd.syncml.dm+xml";

const KIND_BYTE: Readonly<Record<EnvelopeKind, number>> = { package0: 0, wbxml: 1, xml: 2 };
const KIND_OF_BYTE: readonly EnvelopeKind[] = ["package0", "wbxml", "xml"];

export interface Envelope {
  readonly kind: EnvelopeKind;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/** The envelope kind of a DM content type (`+wbxml` unless it says `+xml`). */
export function kindOfContentType(contentType: string): EnvelopeKind {
  const ct = contentType.toLowerCase();
  if (ct.startsWith(CONTENT_TYPE_NOTIFICATION)) return "package0";
  return ct.includes("+xml") ? "xml" : "wbxml";
}

export function contentTypeOfKind(kind: EnvelopeKind): string {
  switch (kind) {
    case "package0":
      return CONTENT_TYPE_NOTIFICATION;
    case "wbxml":
      return CONTENT_TYPE_DM_WBXML;
    case "xml":
      return CONTENT_TYPE_DM_XML;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeEnvelope(e: Envelope): Uint8Array {
  const lines = Object.entries(e.headers).map(([k, v]) => `${k.toLowerCase()}:${v}`);
  const headers = encoder.encode(lines.join("\n"));
  if (headers.length > 0xffff) throw new RangeError("envelope headers over 65535 bytes");
  const out = new Uint8Array(3 + headers.length + e.body.length);
  out[0] = KIND_BYTE[e.kind];
  out[1] = headers.length >> 8;
  out[2] = headers.length & 0xff;
  out.set(headers, 3);
  out.set(e.body, 3 + headers.length);
  return out;
}

export type DecodedEnvelope =
  | { readonly ok: true; readonly value: Envelope }
  | { readonly ok: false; readonly reason: "short" | "unknown-kind" | "bad-headers" };

export function decodeEnvelope(bytes: Uint8Array): DecodedEnvelope {
  if (bytes.length < 3) return { ok: false, reason: "short" };
  const kind = KIND_OF_BYTE[bytes[0] ?? 0xff];
  if (kind === undefined) return { ok: false, reason: "unknown-kind" };
  const headerLength = ((bytes[1] ?? 0) << 8) | (bytes[2] ?? 0);
  if (3 + headerLength > bytes.length) return { ok: false, reason: "short" };
  const headers: Record<string, string> = {};
  if (headerLength > 0) {
    let text: string;
    try {
      text = decoder.decode(bytes.subarray(3, 3 + headerLength));
    } catch {
      return { ok: false, reason: "bad-headers" };
    }
    for (const line of text.split("\n")) {
      const colon = line.indexOf(":");
      if (colon <= 0) return { ok: false, reason: "bad-headers" };
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1);
    }
  }
  return { ok: true, value: { kind, headers, body: bytes.slice(3 + headerLength) } };
}
