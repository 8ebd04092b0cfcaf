/**
 * Element tree -> XML text. Pure. A child whose namespace differs from its parent's declares it with
 * `xmlns` (so MetInf elements read `<Type xmlns="syncml:metinf">`, as DM devices and libwbxml write
 * them). Text is escaped so that it decodes back exactly: `\r` becomes `&#13;` because XML parsers
 * turn a raw CR into LF.
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import { isElement, type Element, type Node } from "./element.js";

export interface XmlEncodeOptions {
  /** Write `<?xml version="1.0" encoding="UTF-8"?>` first. Default true. */
  readonly declaration?: boolean;
  /** Indent elements that hold only elements (text is never touched). Default: no indentation. */
  readonly indent?: string;
  /**
   * What to do with OPAQUE bytes that are not UTF-8 text, which XML cannot carry: `error` (default)
   * throws Codec_EncodeFailed; `base64` writes them base64-encoded (for display, as the CLI does).
   */
  readonly binary?: "error" | "base64";
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function encodeXmlElement(root: Element, options: XmlEncodeOptions = {}): string {
  const parts: string[] = [];
  if (options.declaration !== false) parts.push('<?xml version="1.0" encoding="UTF-8"?>');
  if (options.indent !== undefined && parts.length > 0) parts.push("\n");
  writeElement(root, "", 0, parts, options);
  return parts.join("");
}

function writeElement(
  el: Element,
  parentNs: string,
  depth: number,
  out: string[],
  options: XmlEncodeOptions,
): void {
  const indent = options.indent;
  const xmlns = el.namespace !== parentNs ? ` xmlns="${escapeText(el.namespace)}"` : "";
  if (el.children.length === 0) {
    out.push(`<${el.name}${xmlns}/>`);
    return;
  }
  out.push(`<${el.name}${xmlns}>`);
  const structured = indent !== undefined && el.children.every(isElement);
  for (const child of el.children) {
    if (structured) out.push("\n", indent.repeat(depth + 1));
    writeNode(child, el.namespace, depth + 1, out, options);
  }
  if (structured) out.push("\n", indent.repeat(depth));
  out.push(`</${el.name}>`);
}

function writeNode(
  node: Node,
  parentNs: string,
  depth: number,
  out: string[],
  options: XmlEncodeOptions,
): void {
  if (typeof node === "string") out.push(escapeText(node));
  else if (node instanceof Uint8Array) out.push(opaqueAsText(node, options));
  else writeElement(node, parentNs, depth, out, options);
}

function opaqueAsText(bytes: Uint8Array, options: XmlEncodeOptions): string {
  let text: string | undefined;
  try {
    text = UTF8.decode(bytes);
  } catch {
    text = undefined; // not UTF-8: binary, handled below
  }
  if (text !== undefined && !INVALID_XML_CHAR.test(text)) return escapeText(text);
  if (options.binary === "base64") return Buffer.from(bytes).toString("base64");
  throw new GatewayError(
    `${bytes.length} bytes of binary data cannot be carried in XML (send them with Format b64)`,
    ErrorCode.Codec_EncodeFailed,
    { context: { bytes: bytes.length } },
  );
}

// XML 1.0 Char production: no C0 controls except TAB/LF/CR, no lone surrogates, no U+FFFE/U+FFFF.
const INVALID_XML_CHAR =
  // eslint-disable-next-line no-control-regex -- the control characters are exactly what we look for
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const NEEDS_ESCAPE = /[&<>\r"]/;

export function escapeText(text: string): string {
  if (INVALID_XML_CHAR.test(text)) {
    throw new GatewayError("text holds a character XML cannot carry", ErrorCode.Codec_EncodeFailed, {
      context: { offset: text.search(INVALID_XML_CHAR) },
    });
  }
  if (!NEEDS_ESCAPE.test(text)) return text;
  return text.replace(/[&<>\r"]/g, (c) => ESCAPES[c] ?? c);
}

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  "\r": "&#13;",
  '"': "&quot;",
};
