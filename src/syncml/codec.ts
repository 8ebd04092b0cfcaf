/**
 * The public face of the SyncML DM codec: bytes <-> typed message, XML or WBXML. Pure: no I/O, no
 * globals beyond constant tables.
 *
 *   decode: bytes --(detect)--> xml-decode | wbxml-decode --> Element --> message-from-element
 *   encode: message --> message-to-element --> Element --> xml-encode | wbxml-encode --> bytes
 */
import { ErrorCode, GatewayError, isCodecError } from "../core/errors.js";
import { MIME_DM_WBXML, MIME_DM_XML, MIME_SYNCML_WBXML_LEGACY, MIME_SYNCML_XML_LEGACY } from "./constants.js";
import { DEFAULT_LIMITS, type DecodeLimits, type Element } from "./element.js";
import { messageFromElement } from "./message-from-element.js";
import { messageToElement } from "./message-to-element.js";
import type { Encoding, SyncMLMessage } from "./model.js";
import { decodeWbxmlDocument } from "./wbxml-decode.js";
import { encodeWbxmlDocument } from "./wbxml-encode.js";
import { SYNCML_11, SYNCML_12 } from "./wbxml-languages.js";
import { decodeXmlElement } from "./xml-decode.js";
import { encodeXmlElement, type XmlEncodeOptions } from "./xml-encode.js";

export interface DecodedMessage {
  readonly message: SyncMLMessage;
  readonly encoding: Encoding;
  /** The exact bytes received: HMAC (x-syncml-hmac) is computed over these, never a re-encoding. */
  readonly raw: Uint8Array;
}

/** A decode outcome as a value (style.md 2.3): bad input from outside is not an exception here. */
export type Decoded<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: GatewayError };

export interface DecodeOptions {
  /** Skip detection when the transport already said (Content-Type). */
  readonly encoding?: Encoding;
  readonly limits?: DecodeLimits;
}

/** Decodes a DM message. Throws GatewayError (a `Codec_*` code) for anything malformed. */
export function decodeMessage(bytes: Uint8Array, options: DecodeOptions = {}): DecodedMessage {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const encoding = options.encoding ?? detectEncoding(bytes);
  if (encoding === "xml") {
    return {
      message: messageFromElement(decodeXmlElement(bytes, limits), limits, "xml"),
      encoding,
      raw: bytes,
    };
  }
  const doc = decodeWbxmlDocument(bytes, { limits, defaultLanguage: SYNCML_12 });
  return { message: messageFromElement(doc.root, limits, "wbxml", doc.elementCount), encoding, raw: bytes };
}

/** `decodeMessage` with the failure as a value; any non-codec exception is a bug and propagates. */
export function tryDecodeMessage(bytes: Uint8Array, options: DecodeOptions = {}): Decoded<DecodedMessage> {
  try {
    return { ok: true, value: decodeMessage(bytes, options) };
  } catch (e) {
    if (isCodecError(e)) return { ok: false, error: e };
    throw e;
  }
}

/** Decodes either wire format into the generic element tree (used by tests and tools). */
export function decodeElement(
  bytes: Uint8Array,
  encoding: Encoding,
  limits: DecodeLimits = DEFAULT_LIMITS,
): Element {
  if (encoding === "xml") return decodeXmlElement(bytes, limits);
  return decodeWbxmlDocument(bytes, { limits, defaultLanguage: SYNCML_12 }).root;
}

export interface EncodeOptions {
  /** XML only: see XmlEncodeOptions. */
  readonly xml?: XmlEncodeOptions;
}

/** Encodes a DM message. Throws GatewayError(Codec_EncodeFailed) for what the format cannot carry. */
export function encodeMessage(
  message: SyncMLMessage,
  encoding: Encoding,
  options: EncodeOptions = {},
): Uint8Array {
  const root = messageToElement(message, encoding);
  if (encoding === "xml") return new TextEncoder().encode(encodeXmlElement(root, options.xml));
  return encodeWbxmlDocument(root, message.version === "1.1" ? SYNCML_11 : SYNCML_12);
}

/**
 * WBXML starts with its version byte (0x01..0x03); XML with `<`, a BOM or whitespace. Anything else
 * is neither.
 */
export function detectEncoding(bytes: Uint8Array): Encoding {
  const first = bytes[0];
  if (first === undefined)
    throw new GatewayError("empty message", ErrorCode.Codec_Truncated, { context: { offset: 0 } });
  if (first >= 0x01 && first <= 0x03) return "wbxml";
  if (
    first === 0x3c ||
    first === 0xef ||
    first === 0x20 ||
    first === 0x09 ||
    first === 0x0a ||
    first === 0x0d
  )
    return "xml";
  throw new GatewayError(
    `message starts with 0x${first.toString(16).padStart(2, "0")}: neither WBXML nor XML`,
    ErrorCode.Codec_UnknownDocument,
    { context: { firstByte: first } },
  );
}

/** The encoding a Content-Type names; undefined for a type that is not a SyncML DM message. */
export function encodingForContentType(contentType: string): Encoding | undefined {
  const mime = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  if (mime === MIME_DM_WBXML || mime === MIME_SYNCML_WBXML_LEGACY) return "wbxml";
  if (mime === MIME_DM_XML || mime === MIME_SYNCML_XML_LEGACY) return "xml";
  return undefined;
}

export function contentTypeFor(encoding: Encoding): string {
  return encoding === "wbxml" ? MIME_DM_WBXML : MIME_DM_XML;
}
