/**
 * Element tree -> WBXML 1.2, the form DM devices send: numeric public id, UTF-8, no string table
 * (`02 A4 01 6A 00` for SyncML 1.2), text as STR_I, binary as OPAQUE, an element without content as
 * its bare token, and SWITCH_PAGE emitted only when the next tag lives on another code page
 * (END is global and needs none). Pure.
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import type { Element, Node } from "./element.js";
import { Charset, WbxmlToken } from "./wbxml-decode.js";
import type { WbxmlLanguage } from "./wbxml-languages.js";

const WBXML_VERSION_1_2 = 0x02;
const ENCODER = new TextEncoder();

export function encodeWbxmlDocument(root: Element, language: WbxmlLanguage): Uint8Array {
  const w = new Writer(256);
  w.byte(WBXML_VERSION_1_2);
  if (language.publicId !== undefined) {
    w.mbUint32(language.publicId);
    w.mbUint32(Charset.Utf8);
    w.byte(0); // empty string table
  } else {
    // No registered numeric id (DM DDF): name the document by its FPI in the string table, NUL
    // terminated, as libwbxml does for embedded TNDS.
    const fpi = ENCODER.encode(language.fpi);
    w.byte(0);
    w.byte(0); // literal public id at string table index 0
    w.mbUint32(Charset.Utf8);
    w.mbUint32(fpi.length + 1);
    w.bytes(fpi);
    w.byte(0);
  }
  const state = { page: 0 };
  writeElement(w, root, language, state);
  return w.result();
}

function writeElement(w: Writer, el: Element, language: WbxmlLanguage, state: { page: number }): void {
  const tag = language.tagFor(el.namespace, el.name);
  if (tag === undefined) {
    throw new GatewayError(
      `element <${el.name}> of namespace "${el.namespace}" has no WBXML token in ${language.name}`,
      ErrorCode.Codec_EncodeFailed,
      { context: { element: el.name, namespace: el.namespace } },
    );
  }
  if (tag.page !== state.page) {
    w.byte(WbxmlToken.SWITCH_PAGE);
    w.byte(tag.page);
    state.page = tag.page;
  }
  if (!hasContent(el.children)) {
    w.byte(tag.token);
    return;
  }
  w.byte(tag.token | 0x40);
  for (const child of el.children) writeNode(w, child, language, state);
  w.byte(WbxmlToken.END);
}

function hasContent(children: readonly Node[]): boolean {
  for (const c of children) if (typeof c !== "string" || c.length > 0) return true;
  return false;
}

function writeNode(w: Writer, node: Node, language: WbxmlLanguage, state: { page: number }): void {
  if (typeof node === "string") {
    if (node.length === 0) return;
    if (node.includes("\u0000")) {
      // STR_I is NUL-terminated; a NUL inside text can only travel as OPAQUE.
      writeOpaque(w, ENCODER.encode(node));
      return;
    }
    w.byte(WbxmlToken.STR_I);
    w.utf8(node);
    w.byte(0);
  } else if (node instanceof Uint8Array) {
    writeOpaque(w, node);
  } else {
    writeElement(w, node, language, state);
  }
}

function writeOpaque(w: Writer, bytes: Uint8Array): void {
  w.byte(WbxmlToken.OPAQUE);
  w.mbUint32(bytes.length);
  w.bytes(bytes);
}

/** A growable byte buffer. */
class Writer {
  #buf: Uint8Array;
  #len = 0;

  constructor(initial: number) {
    this.#buf = new Uint8Array(initial);
  }

  #ensure(extra: number): void {
    if (this.#len + extra <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  byte(b: number): void {
    this.#ensure(1);
    this.#buf[this.#len++] = b;
  }

  bytes(b: Uint8Array): void {
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  utf8(s: string): void {
    // Fast path for ASCII, which is nearly all of a DM message.
    const n = s.length;
    this.#ensure(n);
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      this.#buf[this.#len++] = c;
    }
    if (i === n) return;
    const rest = s.slice(i);
    this.#ensure(rest.length * 3);
    const { written } = ENCODER.encodeInto(rest, this.#buf.subarray(this.#len));
    this.#len += written;
  }

  mbUint32(value: number): void {
    // Big-endian base-128 with the high bit set on all but the last byte.
    let tmp = value >>> 0;
    const out = [tmp & 0x7f];
    tmp = Math.floor(tmp / 128);
    while (tmp > 0) {
      out.unshift((tmp & 0x7f) | 0x80);
      tmp = Math.floor(tmp / 128);
    }
    for (const b of out) this.byte(b);
  }

  result(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}
