/**
 * WBXML (WAP-192, versions 1.1 to 1.3) -> element tree. Pure; every length is checked against the
 * input before it is used, so hostile input fails with a typed GatewayError in time and memory
 * linear in its size.
 *
 *   header: version | publicid (mb_u_int32; 0 = literal, index into the string table follows)
 *           | charset (mb_u_int32 MIBenum) | strtbl length (mb_u_int32) | string table
 *   body:   tokens; SWITCH_PAGE changes the code page of the tag tokens that follow
 *
 * Attributes, processing instructions and extension tokens are never used by SyncML DM and are
 * refused as unknown tokens.
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import { DEFAULT_LIMITS, type DecodeLimits, type Element } from "./element.js";
import { languageByFpi, languageByPublicId, type WbxmlLanguage } from "./wbxml-languages.js";

/** Global tokens (WAP-192 section 7.1). */
export const WbxmlToken = {
  SWITCH_PAGE: 0x00,
  END: 0x01,
  ENTITY: 0x02,
  STR_I: 0x03,
  LITERAL: 0x04,
  EXT_I_0: 0x40,
  EXT_I_1: 0x41,
  EXT_I_2: 0x42,
  PI: 0x43,
  LITERAL_C: 0x44,
  EXT_T_0: 0x80,
  EXT_T_1: 0x81,
  EXT_T_2: 0x82,
  STR_T: 0x83,
  LITERAL_A: 0x84,
  EXT_0: 0xc0,
  EXT_1: 0xc1,
  EXT_2: 0xc2,
  OPAQUE: 0xc3,
  LITERAL_AC: 0xc4,
} as const;

/** IANA MIBenum values of the charsets we accept. */
export const Charset = { UsAscii: 3, Latin1: 4, Utf8: 106 } as const;

export interface WbxmlDocument {
  /** The WBXML version byte (0x01..0x03). */
  readonly version: number;
  /** The numeric public id, or the FPI string when the document names itself literally. */
  readonly publicId: number | string;
  readonly charset: number;
  readonly language: WbxmlLanguage;
  readonly root: Element;
  /** Elements in the document, for limits that span nested documents. */
  readonly elementCount: number;
}

export interface WbxmlDecodeOptions {
  readonly limits?: DecodeLimits;
  /** Language to assume for public id 1 ("unknown"): the caller knows what it expects. */
  readonly defaultLanguage?: WbxmlLanguage;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LATIN1 = new TextDecoder("latin1");

interface Header {
  readonly reader: Reader;
  readonly version: number;
  readonly publicId: number | string;
  readonly charset: number;
  readonly table: Uint8Array;
  readonly text: (b: Uint8Array) => string;
  readonly language: WbxmlLanguage;
}

function readHeader(bytes: Uint8Array, limits: DecodeLimits, options: WbxmlDecodeOptions): Header {
  if (bytes.byteLength > limits.maxBytes) {
    throw new GatewayError(
      `WBXML document of ${bytes.byteLength} bytes exceeds the limit of ${limits.maxBytes}`,
      ErrorCode.Codec_TooLarge,
      { context: { size: bytes.byteLength, limit: limits.maxBytes } },
    );
  }
  const reader = new Reader(bytes);
  const version = reader.byte("version");
  if (version < 0x01 || version > 0x03) {
    throw new GatewayError(
      `WBXML version 0x${hex(version)} is not supported (1.1 to 1.3 are)`,
      ErrorCode.Codec_UnsupportedVersion,
      {
        context: { version },
      },
    );
  }
  const numericId = reader.mbUint32("public id");
  const literalIndex = numericId === 0 ? reader.mbUint32("public id index") : undefined;
  const charset = reader.mbUint32("charset");
  if (charset !== Charset.Utf8 && charset !== Charset.UsAscii && charset !== Charset.Latin1) {
    throw new GatewayError(
      `WBXML charset ${charset} is not supported (UTF-8 is)`,
      ErrorCode.Codec_UnsupportedCharset,
      {
        context: { charset },
      },
    );
  }
  const tableLength = reader.mbUint32("string table length");
  const table = reader.take(tableLength, "string table");
  const text = charset === Charset.Latin1 ? decodeLatin1 : decodeUtf8;

  let publicId: number | string = numericId;
  let language: WbxmlLanguage | undefined;
  if (literalIndex !== undefined) {
    const fpi = tableString(table, literalIndex, text).trim();
    publicId = fpi;
    language = languageByFpi(fpi);
  } else if (numericId === 1) {
    language = options.defaultLanguage;
  } else {
    language = languageByPublicId(numericId);
  }
  if (language === undefined) {
    throw new GatewayError(
      `WBXML document type ${String(publicId)} is not a SyncML DM document`,
      ErrorCode.Codec_UnknownDocument,
      {
        context: { publicId },
      },
    );
  }
  return { reader, version, publicId, charset, table, text, language };
}

/**
 * The language a WBXML document names in its header, or undefined when the bytes do not start a
 * document we know. Lets a decoder recognise an embedded TNDS or DevInf document whose Item carries
 * no type to say so (the DM DDF FPI in a string table is not something binary data has by chance).
 */
export function sniffWbxmlLanguage(bytes: Uint8Array): WbxmlLanguage | undefined {
  try {
    return readHeader(bytes, DEFAULT_LIMITS, {}).language;
  } catch {
    return undefined; // not a WBXML header we know: it is just bytes
  }
}

export function decodeWbxmlDocument(bytes: Uint8Array, options: WbxmlDecodeOptions = {}): WbxmlDocument {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const { reader, version, publicId, charset, table, text, language } = readHeader(bytes, limits, options);

  const counter = { elements: 0 };
  const root = decodeBody(reader, table, language, limits, text, counter);
  return { version, publicId, charset, language, root, elementCount: counter.elements };
}

function decodeBody(
  reader: Reader,
  table: Uint8Array,
  language: WbxmlLanguage,
  limits: DecodeLimits,
  text: (b: Uint8Array) => string,
  counter: { elements: number },
): Element {
  const stack: Element[] = [];
  let root: Element | undefined;
  let page = 0;
  let count = 0;
  const bytes = reader.bytes;
  const end = bytes.length;

  // Content of the innermost open element is gathered here and attached when that element gets a
  // child element or ends: adjacent STR_I/STR_T/ENTITY pieces become one string and adjacent OPAQUE
  // pieces one copy of their bytes, so a stream of tiny tokens costs no more than its own size.
  let textParts: string[] = [];
  let opaqueRanges: number[] = []; // start, end pairs into `bytes`
  let opaqueLength = 0;
  // Text expanded from the string table may exceed the input; bound what a document can expand to.
  let textBudget = Math.min(limits.maxBytes, 16 * end + 4096);

  const addText = (value: string, at: number): void => {
    if (stack.length === 0) throw structure("content outside the root element", at);
    if (value.length === 0) return;
    textBudget -= value.length;
    if (textBudget < 0) {
      throw new GatewayError(
        `WBXML document expands to more text than its size allows`,
        ErrorCode.Codec_TooLarge,
        {
          context: { offset: at },
        },
      );
    }
    if (opaqueRanges.length > 0) flushOpaque();
    textParts.push(value);
  };
  const flushText = (): void => {
    const parent = stack[stack.length - 1];
    if (parent !== undefined)
      parent.children.push(textParts.length === 1 ? (textParts[0] ?? "") : textParts.join(""));
    textParts = [];
  };
  const flushOpaque = (): void => {
    // A fresh copy: the model must not share memory with the caller's (reusable) input buffer.
    const out = new Uint8Array(opaqueLength);
    let o = 0;
    for (let i = 0; i < opaqueRanges.length; i += 2) {
      const from = opaqueRanges[i] ?? 0;
      const to = opaqueRanges[i + 1] ?? 0;
      out.set(bytes.subarray(from, to), o);
      o += to - from;
    }
    stack[stack.length - 1]?.children.push(out);
    opaqueRanges = [];
    opaqueLength = 0;
  };
  const flush = (): void => {
    if (textParts.length > 0) flushText();
    else if (opaqueRanges.length > 0) flushOpaque();
  };

  while (reader.pos < end) {
    const at = reader.pos;
    const token = bytes[reader.pos++] ?? 0;
    switch (token) {
      case WbxmlToken.SWITCH_PAGE:
        page = reader.byte("code page");
        continue;
      case WbxmlToken.END:
        flush();
        if (stack.pop() === undefined) throw structure("END without an open element", at);
        if (stack.length === 0) return finish(reader, root, at);
        continue;
      case WbxmlToken.ENTITY: {
        const cp = reader.mbUint32("entity");
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          throw new GatewayError(`WBXML entity ${cp} is not a character`, ErrorCode.Codec_InvalidEncoding, {
            context: { offset: at },
          });
        }
        addText(String.fromCodePoint(cp), at);
        continue;
      }
      case WbxmlToken.STR_I: {
        const start = reader.pos;
        const nul = bytes.indexOf(0, start);
        if (nul < 0) throw truncated("inline string", at);
        reader.pos = nul + 1;
        addText(text(bytes.subarray(start, nul)), at);
        continue;
      }
      case WbxmlToken.STR_T: {
        const offset = reader.mbUint32("string table reference");
        addText(tableString(table, offset, text), at);
        continue;
      }
      case WbxmlToken.OPAQUE: {
        const length = reader.mbUint32("opaque length");
        const from = reader.pos;
        reader.take(length, "opaque data");
        if (stack.length === 0) throw structure("content outside the root element", at);
        if (textParts.length > 0) flushText();
        if (length > 0) {
          opaqueRanges.push(from, from + length);
          opaqueLength += length;
        } else if (opaqueRanges.length === 0) {
          // An empty OPAQUE still says "binary content": keep it as zero bytes (at most one).
          opaqueRanges.push(from, from);
        }
        continue;
      }
      case WbxmlToken.EXT_I_0:
      case WbxmlToken.EXT_I_1:
      case WbxmlToken.EXT_I_2:
      case WbxmlToken.PI:
      case WbxmlToken.EXT_T_0:
      case WbxmlToken.EXT_T_1:
      case WbxmlToken.EXT_T_2:
      case WbxmlToken.EXT_0:
      case WbxmlToken.EXT_1:
      case WbxmlToken.EXT_2:
      case WbxmlToken.LITERAL_A:
      case WbxmlToken.LITERAL_AC:
        throw unknownToken(token, page, at);
      default:
        break;
    }
    // A tag: literal (name in the string table) or a code-page token.
    if ((token & 0x80) !== 0) throw unknownToken(token, page, at); // attributes: never used in SyncML
    let name: string;
    let namespace: string;
    if (token === WbxmlToken.LITERAL || token === WbxmlToken.LITERAL_C) {
      name = tableString(table, reader.mbUint32("literal tag"), text);
      namespace = language.pages[page]?.namespace ?? "";
      if (!/^[A-Za-z_][\w.-]*$/.test(name))
        throw structure(`literal tag name "${name.slice(0, 40)}" is not an XML name`, at);
    } else {
      const entry = language.byToken[page]?.[token & 0x3f];
      if (entry === undefined) throw unknownToken(token, page, at);
      name = entry;
      namespace = language.pages[page]?.namespace ?? "";
    }
    counter.elements = ++count;
    if (count > limits.maxElements) {
      throw new GatewayError(
        `WBXML document has more than ${limits.maxElements} elements`,
        ErrorCode.Codec_TooManyElements,
        {
          context: { offset: at, limit: limits.maxElements },
        },
      );
    }
    flush();
    const el: Element = { name, namespace, children: [] };
    const parent = stack[stack.length - 1];
    if (parent !== undefined) parent.children.push(el);
    else if (root === undefined) root = el;
    else throw structure("a second root element", at);
    if ((token & 0x40) !== 0) {
      if (stack.length >= limits.maxDepth) {
        throw new GatewayError(
          `WBXML document nests deeper than ${limits.maxDepth} elements`,
          ErrorCode.Codec_TooDeep,
          {
            context: { offset: at, limit: limits.maxDepth },
          },
        );
      }
      stack.push(el);
    } else if (stack.length === 0) {
      return finish(reader, root, at);
    }
  }
  throw truncated(
    root === undefined ? "body" : `element <${stack[stack.length - 1]?.name ?? "?"}>`,
    reader.pos,
  );
}

function finish(reader: Reader, root: Element | undefined, at: number): Element {
  if (root === undefined) throw structure("END before any element", at);
  if (reader.pos !== reader.bytes.length) {
    throw new GatewayError(
      `${reader.bytes.length - reader.pos} bytes follow the end of the WBXML document`,
      ErrorCode.Codec_TrailingData,
      { context: { offset: reader.pos } },
    );
  }
  return root;
}

/** A string of the string table: from `offset` to the next NUL, or to the table's end. */
function tableString(table: Uint8Array, offset: number, text: (b: Uint8Array) => string): string {
  if (offset >= table.length) {
    throw new GatewayError(
      `string table reference ${offset} is past the table (${table.length} bytes)`,
      ErrorCode.Codec_Truncated,
      {
        context: { offset, tableLength: table.length },
      },
    );
  }
  const nul = table.indexOf(0, offset);
  return text(table.subarray(offset, nul < 0 ? table.length : nul));
}

function decodeUtf8(b: Uint8Array): string {
  // Short ASCII strings (LocURIs, CmdIDs, codes) are most of a DM message: skip TextDecoder for them.
  if (b.length <= 32) {
    let s = "";
    for (let i = 0; i < b.length; i++) {
      const c = b[i] ?? 0;
      if (c >= 0x80) return decodeUtf8Slow(b);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decodeUtf8Slow(b);
}

function decodeUtf8Slow(b: Uint8Array): string {
  try {
    return UTF8.decode(b);
  } catch (cause) {
    throw new GatewayError("WBXML string is not valid UTF-8", ErrorCode.Codec_InvalidEncoding, { cause });
  }
}

function decodeLatin1(b: Uint8Array): string {
  return LATIN1.decode(b);
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function unknownToken(token: number, page: number, offset: number): GatewayError {
  return new GatewayError(
    `unknown WBXML token 0x${hex(token)} on code page ${page} at offset ${offset}`,
    ErrorCode.Codec_UnknownToken,
    {
      context: { token, page, offset },
    },
  );
}

function truncated(what: string, offset: number): GatewayError {
  return new GatewayError(`WBXML ends inside ${what} (offset ${offset})`, ErrorCode.Codec_Truncated, {
    context: { offset },
  });
}

function structure(message: string, offset: number): GatewayError {
  return new GatewayError(`WBXML ${message} at offset ${offset}`, ErrorCode.Codec_InvalidStructure, {
    context: { offset },
  });
}

/** A bounds-checked cursor over the input. */
class Reader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  byte(what: string): number {
    const b = this.bytes[this.pos];
    if (b === undefined) throw truncated(what, this.pos);
    this.pos++;
    return b;
  }

  /** mb_u_int32 (WAP-192 section 5.1): 7 bits a byte, high bit = more; at most 5 bytes, <= 2^32-1. */
  mbUint32(what: string): number {
    const start = this.pos;
    let value = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.bytes[this.pos];
      if (b === undefined) throw truncated(what, start);
      this.pos++;
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) {
        if (value > 0xffffffff) break;
        return value;
      }
    }
    throw new GatewayError(
      `WBXML ${what} at offset ${start} overflows 32 bits`,
      ErrorCode.Codec_IntegerOverflow,
      {
        context: { offset: start },
      },
    );
  }

  take(length: number, what: string): Uint8Array {
    if (length > this.bytes.length - this.pos) throw truncated(what, this.pos);
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
}
