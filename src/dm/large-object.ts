/**
 * The pieces of OMA DM large objects (protocol.md 3.6) that both session sides share: cutting an
 * object into chunks, the chunk Items, and joining received chunks back. Pure.
 *
 * Also the small helpers both sessions need to read a peer's message (header lookup, numbers).
 */
import {
  encodeXmlElement,
  type Command,
  type Data,
  type Element,
  type Item,
  type Meta,
  type XmlElement,
} from "../syncml/index.js";

import { concatBytes } from "../core/bytes.js";

const UTF8 = new TextEncoder();

/** Data of a large object being sent: text or bytes (an embedded document is never chunked). */
export type ChunkSource =
  { readonly kind: "text"; readonly text: string } | { readonly kind: "opaque"; readonly bytes: Uint8Array };

/** Where sending a large object stands. */
export interface ChunkCursor {
  readonly data: ChunkSource;
  /** Bytes already sent. */
  readonly sentBytes: number;
  /** UTF-16 units already sent (text). */
  readonly sentChars: number;
}

/** Up to `maxBytes` bytes of the object from where it stands, cut on a character boundary for text. */
export function takePiece(lo: ChunkCursor, maxBytes: number): { data: Data; bytes: number; chars: number } {
  if (lo.data.kind === "opaque") {
    const bytes = lo.data.bytes.subarray(lo.sentBytes, lo.sentBytes + maxBytes);
    return { data: { kind: "opaque", bytes: Uint8Array.from(bytes) }, bytes: bytes.length, chars: 0 };
  }
  const text = lo.data.text;
  let i = lo.sentChars;
  let bytes = 0;
  while (i < text.length) {
    const cp = text.codePointAt(i) ?? 0;
    const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + len > maxBytes) break;
    bytes += len;
    i += cp > 0xffff ? 2 : 1;
  }
  return { data: { kind: "text", text: text.slice(lo.sentChars, i) }, bytes, chars: i - lo.sentChars };
}

/** An empty piece of the object's kind (to measure a chunk message's overhead). */
export function emptyPiece(source: ChunkSource): Data {
  return source.kind === "text" ? { kind: "text", text: "" } : { kind: "opaque", bytes: new Uint8Array(0) };
}

/** Meta without Size: only the first chunk declares the total (protocol.md 3.6). */
export function omitSize(meta: Meta | undefined): Meta | undefined {
  if (meta?.size === undefined) return meta;
  const copy: { -readonly [K in keyof Meta]: Meta[K] } = { ...meta };
  delete copy.size;
  return Object.keys(copy).length === 0 ? undefined : copy;
}

/** An Item's Target, Source and Meta, without its Data and MoreData. */
export function withoutMoreData(item: Item): Item {
  return {
    ...(item.target !== undefined && { target: item.target }),
    ...(item.source !== undefined && { source: item.source }),
    ...(item.meta !== undefined && { meta: item.meta }),
  };
}

/** Chunks joined: text stays text; any binary piece makes the whole binary (text as UTF-8). */
export function joinData(parts: readonly Data[]): Data {
  if (parts.every((p): p is Extract<Data, { kind: "text" }> => p.kind === "text")) {
    return { kind: "text", text: parts.map((p) => p.text).join("") };
  }
  return { kind: "opaque", bytes: concatBytes(parts.map(dataBytes)) };
}

/** The bytes Data stands for: text as UTF-8, an embedded document as its XML. */
export function dataBytes(d: Data): Uint8Array {
  switch (d.kind) {
    case "text":
      return UTF8.encode(d.text);
    case "opaque":
      return d.bytes;
    case "element":
      return UTF8.encode(elementText(d.element));
  }
}

/** Size as transported: UTF-8 bytes of text, bytes of binary (protocol.md 3.10). */
export function dataSize(d: Data): number {
  return d.kind === "opaque" ? d.bytes.length : dataBytes(d).length;
}

/** An embedded document as XML text (no declaration). */
export function elementText(e: XmlElement): string {
  const toElement = (x: XmlElement): Element => ({
    name: x.name,
    namespace: x.namespace,
    children: x.children.map((c) => (typeof c === "string" ? c : toElement(c))),
  });
  return encodeXmlElement(toElement(e), { declaration: false });
}

/** A command that carries data objects: any with Items, and Atomic/Sequence. */
export function carriesItems(c: Command): boolean {
  return c.kind === "Atomic" || c.kind === "Sequence" || ("items" in c && c.items.length > 0);
}

/** A positive decimal (MaxMsgSize, MaxObjSize, Size) or undefined. */
export function positiveInt(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*\d{1,15}\s*$/.test(text)) return undefined;
  const n = Number(text);
  return n > 0 ? n : undefined;
}

/** A header's value by case-insensitive name. */
export function headerValue(
  headers: Readonly<Record<string, string | undefined>>,
  name: string,
): string | undefined {
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === wanted) return v;
  return undefined;
}
