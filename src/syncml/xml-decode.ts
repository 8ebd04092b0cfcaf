/**
 * XML -> element tree, on saxes (namespaces resolved, entities decoded, CDATA unwrapped). Pure.
 *
 *   bytes --charset--> string --bare '&' repair--> saxes events --> Element tree
 *
 * Text is kept exactly as XML defines it (entities resolved, CDATA unwrapped, line ends normalised
 * by the XML rules); nothing is trimmed. Whitespace between elements is dropped by the model
 * mapping, not here, because only the mapping knows which elements hold text.
 */
import { SaxesParser, type SaxesTagPlain } from "saxes";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { NS_DEVINF, NS_DMDDF_12, NS_METINF, NS_SYNCML_11, NS_SYNCML_12 } from "./constants.js";
import { DEFAULT_LIMITS, type DecodeLimits, type Element } from "./element.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LATIN1 = new TextDecoder("latin1");

/** Decodes XML bytes (or an already decoded string) into an element tree. Throws GatewayError. */
export function decodeXmlElement(input: Uint8Array | string, limits: DecodeLimits = DEFAULT_LIMITS): Element {
  const size = typeof input === "string" ? input.length : input.byteLength;
  if (size > limits.maxBytes) {
    throw new GatewayError(
      `XML document of ${size} bytes exceeds the limit of ${limits.maxBytes}`,
      ErrorCode.Codec_TooLarge,
      {
        context: { size, limit: limits.maxBytes },
      },
    );
  }
  const { text, sentinel } = protectBareAmpersands(typeof input === "string" ? input : bytesToXmlText(input));
  // saxes runs about 1.7x faster without position tracking. Well-formed input (the common case)
  // needs no positions; malformed input is parsed a second time with them, so that the error names
  // its line and column. Both passes are linear, so bad input still costs bounded time.
  try {
    return parse(text, limits, false, sentinel);
  } catch (e) {
    if (!(e instanceof GatewayError)) throw e;
    parse(text, limits, true, sentinel);
    throw e; // unreachable in practice: the second pass fails where the first did
  }
}

/** Decodes bytes by the BOM or the XML declaration's encoding (UTF-8 when neither says). */
function bytesToXmlText(bytes: Uint8Array): string {
  let start = 0;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  else if ((bytes[0] === 0xfe && bytes[1] === 0xff) || (bytes[0] === 0xff && bytes[1] === 0xfe)) {
    throw new GatewayError("UTF-16 XML is not accepted for SyncML DM", ErrorCode.Codec_UnsupportedCharset, {
      context: { charset: "UTF-16" },
    });
  }
  const declared = declaredEncoding(bytes, start);
  const body = bytes.subarray(start);
  switch (declared) {
    case undefined:
    case "utf-8":
    case "utf8":
    case "us-ascii":
    case "ascii":
      try {
        return UTF8.decode(body);
      } catch (cause) {
        throw new GatewayError("XML is not valid UTF-8", ErrorCode.Codec_InvalidEncoding, { cause });
      }
    case "iso-8859-1":
    case "latin1":
      return LATIN1.decode(body);
    default:
      throw new GatewayError(`unsupported XML encoding "${declared}"`, ErrorCode.Codec_UnsupportedCharset, {
        context: { charset: declared },
      });
  }
}

function declaredEncoding(bytes: Uint8Array, start: number): string | undefined {
  // The XML declaration is ASCII and must come first; look at most at its first 200 bytes.
  if (bytes[start] !== 0x3c || bytes[start + 1] !== 0x3f) return undefined;
  const head = LATIN1.decode(bytes.subarray(start, Math.min(bytes.length, start + 200)));
  const end = head.indexOf("?>");
  const decl = end < 0 ? head : head.slice(0, end);
  const m = /\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(decl);
  return m?.[1]?.toLowerCase();
}

/**
 * Real DM servers put unescaped `&` in text (Alert option strings such as `MAXDT=15&DR=1`). XML
 * forbids it; we read an `&` that does not start a well-formed reference as a literal `&`.
 * CDATA sections, comments and processing instructions are left alone: `&` is literal there.
 *
 * Each bare `&` becomes one private-use character that does not occur in the document, which the
 * text handler turns back into `&`: the document keeps its length (so error columns stay exact and
 * a message of `&`s costs no more than its size), where `&amp;` would make it up to 5x longer.
 */
export function protectBareAmpersands(text: string): {
  readonly text: string;
  readonly sentinel: string | undefined;
} {
  if (!text.includes("&")) return { text, sentinel: undefined };
  let code = 0xe000;
  while (code <= 0xf8ff && text.includes(String.fromCharCode(code))) code++;
  if (code > 0xf8ff) return { text, sentinel: undefined }; // every private-use char is taken: leave it to saxes
  const sentinel = String.fromCharCode(code);
  const replaced = { count: 0 };
  const out = text.replace(BARE_AMPERSAND_OR_SECTION, (match) => {
    if (match !== "&") return match;
    replaced.count++;
    return sentinel;
  });
  return replaced.count > 0 ? { text: out, sentinel } : { text, sentinel: undefined };
}

/** `repairBareAmpersands` as text with `&amp;` (kept for tools and tests that want XML back). */
export function repairBareAmpersands(text: string): string {
  const { text: out, sentinel } = protectBareAmpersands(text);
  return sentinel === undefined ? out : out.split(sentinel).join("&amp;");
}

// A CDATA section, comment or PI (kept whole, `&` is literal inside), or an `&` that starts no
// well-formed entity or character reference.
const BARE_AMPERSAND_OR_SECTION =
  /<!\[CDATA\[[\s\S]*?\]\]>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>|&(?!(?:[A-Za-z_:][A-Za-z0-9._:-]*|#[0-9]+|#x[0-9A-Fa-f]+);)/g;

/** The namespace bindings in force at an element: its default namespace and its prefixes. */
interface Scope {
  readonly defaultNs: string;
  readonly prefixes: Readonly<Record<string, string>> | undefined;
}

const ROOT_SCOPE: Scope = { defaultNs: "", prefixes: undefined };
const XML_NS = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS = "http://www.w3.org/2000/xmlns/";

/** The namespaces the model compares against, so that comparisons meet the same string objects. */
const KNOWN_NAMESPACES: ReadonlyMap<string, string> = new Map(
  [NS_SYNCML_12, NS_SYNCML_11, NS_METINF, NS_DMDDF_12, NS_DEVINF].map((ns) => [ns, ns]),
);

function parse(text: string, limits: DecodeLimits, position: boolean, sentinel: string | undefined): Element {
  // Namespaces are resolved here rather than by saxes (xmlns: true): SyncML messages declare at
  // most a default namespace and the odd MetInf prefix, and saxes' general resolver was the single
  // largest cost of decoding (profiled on a DM Package 1). saxes still checks well-formedness.
  const parser = new SaxesParser({ xmlns: false, position });
  const stack: Element[] = [];
  const scopes: Scope[] = [];
  let root: Element | undefined;
  let count = 0;

  const fail = (message: string, code: ErrorCode = ErrorCode.Codec_MalformedXml): never => {
    if (!position) throw new GatewayError(`XML ${message}`, code);
    throw new GatewayError(`XML ${message} at line ${parser.line}, column ${parser.column}`, code, {
      context: { line: parser.line, column: parser.column },
    });
  };

  parser.on("error", (err: Error) => {
    // saxes prefixes its messages with "line:column: "; we add our own position.
    fail(err.message.replace(/^\d+:\d+: /, ""));
  });
  parser.on("opentag", (tag: SaxesTagPlain) => {
    if (++count > limits.maxElements) {
      fail(`has more than ${limits.maxElements} elements`, ErrorCode.Codec_TooManyElements);
    }
    if (stack.length >= limits.maxDepth) {
      fail(`nests deeper than ${limits.maxDepth} elements`, ErrorCode.Codec_TooDeep);
    }
    const outer = scopes[scopes.length - 1] ?? ROOT_SCOPE;
    let defaultNs = outer.defaultNs;
    let prefixes = outer.prefixes;
    const attributes = tag.attributes;
    for (const key in attributes) {
      const value = attributes[key] ?? "";
      if (key === "xmlns") {
        if (value === XML_NS || value === XMLNS_NS) fail(`the default namespace cannot be ${value}`);
        defaultNs = KNOWN_NAMESPACES.get(value) ?? value;
      } else if (key.startsWith("xmlns:")) {
        // Namespaces in XML 1.0 section 3: `xml` is bound only to its own namespace, `xmlns` is
        // never declared, and no other prefix may take either namespace.
        const prefix = key.slice(6);
        if (prefix === "xmlns" || (prefix === "xml") !== (value === XML_NS) || value === XMLNS_NS) {
          fail(`namespace declaration ${key}="${value}" is not allowed`);
        }
        if (prefix === "" || prefix.includes(":")) fail(`"${key}" is not a namespace declaration`);
        if (value === "") fail(`prefix "${prefix}" is bound to an empty namespace`);
        prefixes = { ...prefixes, [key.slice(6)]: KNOWN_NAMESPACES.get(value) ?? value };
      } else fail(`attribute "${key}" is not used in SyncML`);
    }
    const name = tag.name;
    const colon = name.indexOf(":");
    let local = name;
    let namespace = defaultNs;
    if (colon >= 0) {
      const prefix = name.slice(0, colon);
      local = name.slice(colon + 1);
      if (prefix === "" || local === "" || local.includes(":")) fail(`"${name}" is not a qualified name`);
      const bound = prefix === "xml" ? XML_NS : prefixes?.[prefix];
      if (bound === undefined) fail(`prefix "${prefix}" is not bound to a namespace`);
      namespace = bound ?? "";
    }
    const el: Element = { name: local, namespace, children: [] };
    const parent = stack[stack.length - 1];
    if (parent === undefined) root = el;
    else parent.children.push(el);
    stack.push(el);
    scopes.push(
      defaultNs === outer.defaultNs && prefixes === outer.prefixes ? outer : { defaultNs, prefixes },
    );
  });
  parser.on("closetag", () => {
    stack.pop();
    scopes.pop();
  });
  const onText = (raw: string): void => {
    const parent = stack[stack.length - 1];
    if (parent === undefined || raw.length === 0) return;
    const t = sentinel !== undefined && raw.includes(sentinel) ? raw.split(sentinel).join("&") : raw;
    const last = parent.children.length - 1;
    const prev = parent.children[last];
    if (typeof prev === "string") parent.children[last] = prev + t;
    else parent.children.push(t);
  };
  parser.on("text", onText);
  parser.on("cdata", onText);

  parser.write(text).close();
  if (root === undefined) fail("document has no root element");
  return root as Element;
}
