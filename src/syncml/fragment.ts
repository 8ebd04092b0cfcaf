/**
 * SyncML DM command fragments: a sequence of SyncBody children without SyncML or SyncHdr, as the
 * Fanout MO stores them (design.md section 4): `<job>/FanOut/FanOutCommands` holds the commands to
 * fan out, `<job>/Results/<n>/DevResultXML` and `DevResultWBXML` the device's Status and Results.
 *
 * Commands are never parsed or written here: a fragment is mapped by the message codec's own element
 * mapping (`message-from-element.ts`, `message-to-element.ts`), by placing its SyncBody in a
 * synthetic message (decode) or taking the SyncBody out of one (encode). What this module adds is
 * the framing and the fragment rules: which commands a fragment may hold, at least one of them, and
 * CmdIDs present and unique across the fragment, nested Atomic/Sequence included.
 *
 *   decode: text | bytes --(detect)--> xml-decode (wrapped in SyncBody) | wbxml-decode
 *           --> SyncBody --> synthetic SyncML --> messageFromElement --> commands --> fragment rules
 *   encode: commands --> fragment rules --> messageToElement --> its SyncBody --> xml | wbxml
 */
import { ErrorCode, GatewayError, isCodecError } from "../core/errors.js";
import { detectEncoding, type Decoded } from "./codec.js";
import { NS_SYNCML_11, NS_SYNCML_12 } from "./constants.js";
import { DEFAULT_LIMITS, isElement, type DecodeLimits, type Element, type Node } from "./element.js";
import { messageFromElement } from "./message-from-element.js";
import { messageToElement } from "./message-to-element.js";
import type { Command, CommandKind, Encoding, SyncHdr } from "./model.js";
import { decodeWbxmlDocument } from "./wbxml-decode.js";
import { encodeWbxmlDocument } from "./wbxml-encode.js";
import { SYNCML_11, SYNCML_12 } from "./wbxml-languages.js";
import { decodeXmlElement } from "./xml-decode.js";
import { encodeXmlElement } from "./xml-encode.js";

/**
 * What a fragment may hold:
 * - `commands`: what a server sends a device (FanOutCommands): Add, Replace, Get, Delete, Exec,
 *   Copy, Atomic, Sequence, Alert; Atomic and Sequence hold only these too.
 * - `replies`: what a device answers (DevResultXML / DevResultWBXML): Status and Results.
 */
export type FragmentContent = "commands" | "replies";

export interface FragmentDecodeOptions {
  /** Default `commands`. */
  readonly allow?: FragmentContent;
  /**
   * Default DEFAULT_LIMITS, applied as the message codec applies them. Depth counts from the
   * outermost element written: with no enclosing SyncBody, each top-level command is at depth 1.
   */
  readonly limits?: DecodeLimits;
}

/** The command kinds each fragment content allows, at any depth. */
export const FRAGMENT_KINDS: Readonly<Record<FragmentContent, ReadonlySet<CommandKind>>> = {
  commands: new Set<CommandKind>([
    "Add",
    "Replace",
    "Get",
    "Delete",
    "Exec",
    "Copy",
    "Atomic",
    "Sequence",
    "Alert",
  ]),
  replies: new Set<CommandKind>(["Status", "Results"]),
};

/**
 * Elements the message codec knows in a SyncBody (or around it) that a fragment nonetheless refuses
 * when its content kind does not allow them: refused with Codec_InvalidStructure. Any other name is
 * unknown to SyncML DM and refused with Codec_UnknownElement, as the message codec does.
 */
const KNOWN_BODY_ELEMENTS: ReadonlySet<string> = new Set([
  ...FRAGMENT_KINDS.commands,
  ...FRAGMENT_KINDS.replies,
  "Final",
  "SyncHdr",
  "SyncBody",
  "SyncML",
]);

/**
 * Decodes a command fragment, with any failure as a value (a `Codec_*` GatewayError).
 *
 * Input: XML text or bytes holding one or more commands, either bare (`<Add>..</Add><Get>..</Get>`,
 * white space between them allowed) or enclosed in `<SyncBody>` (or in `<SyncML>` holding only a
 * SyncBody); an XML declaration, BOM, comments and a DOCTYPE may precede them. With no namespace
 * declared, elements are in `SYNCML:SYNCML1.2`. Bytes starting 0x01..0x03 are WBXML (as for
 * messages): a SyncML 1.2 or 1.1 document whose root is SyncBody (or SyncML holding only a
 * SyncBody). A string is always XML.
 *
 * Refused: a kind `options.allow` excludes, at any depth, Final, SyncHdr (Codec_InvalidStructure,
 * naming the element); an element unknown to SyncML DM (Codec_UnknownElement); no command at all, a
 * CmdID that is missing, empty, or used twice in the fragment (Codec_InvalidStructure); and every
 * malformation and limit (size, depth, element count) the message codec refuses, with its codes.
 */
export function decodeCommandFragment(
  input: string | Uint8Array,
  options: FragmentDecodeOptions = {},
): Decoded<Command[]> {
  try {
    return { ok: true, value: decodeOrThrow(input, options) };
  } catch (e) {
    if (isCodecError(e)) return { ok: false, error: e };
    throw e;
  }
}

/**
 * Encodes commands as a fragment that decodeCommandFragment reads back to the same commands.
 *
 * - `xml`: UTF-8, no XML declaration: the commands' elements as encodeMessage writes them in a
 *   SyncBody, concatenated and wrapped in `<SyncBody xmlns="SYNCML:SYNCML1.2">...</SyncBody>` (the
 *   wrapper carries the namespace and makes the fragment one well-formed XML document).
 * - `wbxml`: a WBXML 1.2 document, SyncML 1.2 public id (`02 A4 01 6A 00`), whose root is SyncBody;
 *   its bytes after the header are those of the SyncBody in encodeMessage's output.
 *
 * The commands are all `commands` kinds or all `replies` kinds (Status/Results, for DevResultXML and
 * DevResultWBXML), at least one, with non-empty CmdIDs unique across the fragment; anything else
 * throws GatewayError(Codec_EncodeFailed), as does what the format cannot carry (binary data in XML).
 */
export function encodeCommandFragment(commands: readonly Command[], encoding: Encoding): Uint8Array {
  const first = commands[0];
  const allow: FragmentContent =
    first !== undefined && FRAGMENT_KINDS.replies.has(first.kind) ? "replies" : "commands";
  checkFragment(commands, allow, ErrorCode.Codec_EncodeFailed);
  const root = messageToElement(
    { version: "1.2", hdr: PLACEHOLDER_HDR, body: { commands, final: false } },
    encoding,
  );
  const body = root.children.find((c): c is Element => isElement(c) && c.name === "SyncBody");
  if (body === undefined) throw new Error("messageToElement wrote no SyncBody"); // a bug, not input
  if (encoding === "xml") return UTF8_ENCODER.encode(encodeXmlElement(body, { declaration: false }));
  return encodeWbxmlDocument(body, SYNCML_12);
}

// ---- decode ----

const UTF8_ENCODER = new TextEncoder();
const WRAPPER_OPEN = `<SyncBody xmlns="${NS_SYNCML_12}">`;
const WRAPPER_CLOSE = "</SyncBody>";

/** A SyncHdr the message mapping accepts; it only frames the fragment and is never read back. */
const PLACEHOLDER_HDR: SyncHdr = {
  verDTD: "1.2",
  verProto: "DM/1.2",
  sessionId: "0",
  msgId: "0",
  target: { locUri: "fragment" },
  source: { locUri: "fragment" },
};

function decodeOrThrow(input: string | Uint8Array, options: FragmentDecodeOptions): Command[] {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const allow = options.allow ?? "commands";
  const encoding: Encoding = typeof input === "string" ? "xml" : detectEncoding(input);
  if (typeof input === "string" && input.length === 0) {
    throw new GatewayError("empty fragment", ErrorCode.Codec_Truncated, { context: { offset: 0 } });
  }
  let body: Element;
  let elementCount = 0;
  if (encoding === "xml") {
    body = xmlBody(input, limits);
  } else {
    const doc = decodeWbxmlDocument(input as Uint8Array, { limits, defaultLanguage: SYNCML_12 });
    if (doc.language !== SYNCML_12 && doc.language !== SYNCML_11) {
      throw new GatewayError(
        `WBXML document of ${doc.language.name} is not a SyncML command fragment`,
        ErrorCode.Codec_UnknownDocument,
        { context: { publicId: doc.publicId } },
      );
    }
    body = unwrapRoot(doc.root);
    elementCount = doc.elementCount;
  }
  checkTopLevel(body, allow);
  const message = messageFromElement(
    { name: "SyncML", namespace: NS_SYNCML_12, children: [placeholderHdrElement(), body] },
    limits,
    encoding,
    elementCount,
  );
  const commands = [...message.body.commands];
  checkFragment(commands, allow, ErrorCode.Codec_InvalidStructure);
  return commands;
}

/**
 * Parses XML inside a synthetic `<SyncBody xmlns="SYNCML:SYNCML1.2">`, so that bare commands make
 * one document and get the default namespace, and returns the fragment's SyncBody: the written one
 * when the input encloses its commands, else the wrapper. The wrapper goes after the prolog (BOM,
 * XML declaration, comments, PIs, DOCTYPE), where the root element would start; the declaration
 * stays first, so the XML decoder still honours its encoding. Limits apply to the input as written:
 * the size check comes first and the wrapper's byte, depth and element are allowed for.
 */
function xmlBody(input: string | Uint8Array, limits: DecodeLimits): Element {
  const size = typeof input === "string" ? input.length : input.byteLength;
  if (size > limits.maxBytes) {
    throw new GatewayError(
      `XML fragment of ${size} bytes exceeds the limit of ${limits.maxBytes}`,
      ErrorCode.Codec_TooLarge,
      { context: { size, limit: limits.maxBytes } },
    );
  }
  const wrapperLimits: DecodeLimits = {
    maxBytes: limits.maxBytes + WRAPPER_OPEN.length + WRAPPER_CLOSE.length,
    maxDepth: limits.maxDepth + 1,
    maxElements: limits.maxElements + 1,
  };
  let wrapper: Element;
  if (typeof input === "string") {
    const at = rootStart((i) => input.charCodeAt(i), input.length, input.startsWith("\ufeff") ? 1 : 0);
    wrapper = decodeXmlElement(
      input.slice(0, at) + WRAPPER_OPEN + input.slice(at) + WRAPPER_CLOSE,
      wrapperLimits,
    );
  } else {
    const bom = input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf ? 3 : 0;
    const at = rootStart((i) => input[i] ?? -1, input.length, bom);
    const open = UTF8_ENCODER.encode(WRAPPER_OPEN);
    const close = UTF8_ENCODER.encode(WRAPPER_CLOSE);
    const bytes = new Uint8Array(input.length + open.length + close.length);
    bytes.set(input.subarray(0, at), 0);
    bytes.set(open, at);
    bytes.set(input.subarray(at), at + open.length);
    bytes.set(close, input.length + open.length);
    wrapper = decodeXmlElement(bytes, wrapperLimits);
  }
  const inner = wrapper.children.filter((c) => !isBlank(c));
  const only = inner[0];
  if (inner.length === 1 && only !== undefined && isElement(only) && isSyncML(only)) {
    if (only.name === "SyncBody" || only.name === "SyncML") return unwrapRoot(only);
  }
  return wrapper;
}

/**
 * Where the root element starts: after the BOM (`from`), white space, `<?...?>`, `<!--...-->` and
 * `<!DOCTYPE ...>` (quoted strings and an internal subset skipped). Anything unexpected stops the
 * scan there, and the XML decoder reports it. `at` returns a UTF-16 unit or a byte: the prolog's
 * syntax is ASCII in every charset the decoder accepts.
 */
function rootStart(at: (i: number) => number, length: number, from: number): number {
  const LT = 0x3c;
  const GT = 0x3e;
  let i = from;
  const startsWith = (s: string): boolean => {
    for (let k = 0; k < s.length; k++) if (at(i + k) !== s.charCodeAt(k)) return false;
    return true;
  };
  const skipPast = (end: string): boolean => {
    for (let j = i; j + end.length <= length; j++) {
      let match = true;
      for (let k = 0; k < end.length && match; k++) match = at(j + k) === end.charCodeAt(k);
      if (match) {
        i = j + end.length;
        return true;
      }
    }
    return false;
  };
  for (;;) {
    const c = at(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      i++;
    } else if (c === LT && startsWith("<?")) {
      const start = i;
      if (!skipPast("?>")) return start;
    } else if (c === LT && startsWith("<!--")) {
      const start = i;
      if (!skipPast("-->")) return start;
    } else if (c === LT && startsWith("<!DOCTYPE")) {
      const start = i;
      let quote = -1;
      let subset = 0;
      for (i += 9; i < length; i++) {
        const d = at(i);
        if (quote >= 0) {
          if (d === quote) quote = -1;
        } else if (d === 0x22 || d === 0x27) quote = d;
        else if (d === 0x5b) subset++;
        else if (d === 0x5d) subset--;
        else if (d === GT && subset <= 0) break;
      }
      if (i >= length) return start;
      i++;
    } else {
      return i;
    }
  }
}

/** The SyncBody a fragment's root element stands for: itself, or the one SyncBody of a SyncML. */
function unwrapRoot(root: Element): Element {
  if (isSyncML(root) && root.name === "SyncBody") return root;
  if (isSyncML(root) && root.name === "SyncML") {
    const children = elementChildren(root);
    const body = children[0];
    for (const c of children) {
      if (c.name !== "SyncBody" || !isSyncML(c)) throw notAllowed(c, "a SyncML command fragment");
    }
    if (body === undefined || children.length > 1) {
      throw new GatewayError(
        "a command fragment's <SyncML> must hold exactly one <SyncBody>",
        ErrorCode.Codec_InvalidStructure,
        { context: { element: "SyncML" } },
      );
    }
    return body;
  }
  throw new GatewayError(
    `root element <${root.name}>${root.namespace === "" ? "" : ` (${root.namespace})`} is not a SyncBody: not a SyncML command fragment`,
    ErrorCode.Codec_InvalidStructure,
    { context: { element: root.name, namespace: root.namespace } },
  );
}

/** The fragment's own top-level rules, before the message mapping reads the commands. */
function checkTopLevel(body: Element, allow: FragmentContent): void {
  for (const c of elementChildren(body)) {
    if (!isSyncML(c) || !KNOWN_BODY_ELEMENTS.has(c.name)) {
      throw new GatewayError(
        `<${c.name}>${c.namespace === "" ? "" : ` (${c.namespace})`} is not a SyncML DM command`,
        ErrorCode.Codec_UnknownElement,
        { context: { element: c.name, namespace: c.namespace } },
      );
    }
    if (!FRAGMENT_KINDS[allow].has(c.name as CommandKind)) throw notAllowed(c, describe(allow));
  }
}

function placeholderHdrElement(): Element {
  const leaf = (name: string, text: string): Element => ({ name, namespace: NS_SYNCML_12, children: [text] });
  const loc = (name: string): Element => ({
    name,
    namespace: NS_SYNCML_12,
    children: [leaf("LocURI", "fragment")],
  });
  return {
    name: "SyncHdr",
    namespace: NS_SYNCML_12,
    children: [
      leaf("VerDTD", "1.2"),
      leaf("VerProto", "DM/1.2"),
      leaf("SessionID", "0"),
      leaf("MsgID", "0"),
      loc("Target"),
      loc("Source"),
    ],
  };
}

// ---- fragment rules (decode and encode) ----

/** At least one command, every kind allowed at every depth, CmdIDs non-empty and unique. */
function checkFragment(commands: readonly Command[], allow: FragmentContent, code: ErrorCode): void {
  if (commands.length === 0) {
    throw new GatewayError(`a command fragment holds no command`, code, { context: { commands: 0 } });
  }
  const seen = new Set<string>();
  const visit = (list: readonly Command[], parent: string): void => {
    for (const c of list) {
      if (!FRAGMENT_KINDS[allow].has(c.kind)) {
        throw new GatewayError(`<${c.kind}> is not allowed in ${describe(allow)} (in ${parent})`, code, {
          context: { element: c.kind, cmdId: c.cmdId, allow },
        });
      }
      const id = c.cmdId.trim();
      if (id === "") {
        throw new GatewayError(`<${c.kind}> has an empty CmdID`, code, { context: { element: c.kind } });
      }
      if (seen.has(id)) {
        throw new GatewayError(`CmdID ${JSON.stringify(id)} is used twice in the fragment`, code, {
          context: { element: c.kind, cmdId: id },
        });
      }
      seen.add(id);
      if (c.kind === "Atomic" || c.kind === "Sequence") visit(c.commands, `<${c.kind}>`);
    }
  };
  visit(commands, "the fragment");
}

function describe(allow: FragmentContent): string {
  return allow === "commands"
    ? "a fan-out command fragment (Add, Replace, Get, Delete, Exec, Copy, Atomic, Sequence, Alert)"
    : "a reply fragment (Status, Results)";
}

function notAllowed(el: Element, where: string): GatewayError {
  return new GatewayError(`<${el.name}> is not allowed in ${where}`, ErrorCode.Codec_InvalidStructure, {
    context: { element: el.name },
  });
}

// ---- helpers (the message mapping's own rules for namespaces and layout) ----

function isSyncML(el: Element): boolean {
  return el.namespace === NS_SYNCML_12 || el.namespace === NS_SYNCML_11 || el.namespace === "";
}

function isBlank(n: Node): boolean {
  return typeof n === "string" && /^[ \t\r\n]*$/.test(n);
}

/** Element children; white space between them is layout, other text or OPAQUE is refused. */
function elementChildren(el: Element): Element[] {
  const out: Element[] = [];
  for (const c of el.children) {
    if (isElement(c)) out.push(c);
    else if (!isBlank(c)) {
      throw new GatewayError(
        `<${el.name}> holds text where only commands belong`,
        ErrorCode.Codec_InvalidStructure,
        { context: { element: el.name } },
      );
    }
  }
  return out;
}
