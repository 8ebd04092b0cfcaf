/**
 * TNDS, the OMA DM Tree and Description Serialization (MIME `application/vnd.syncml.dmtnds+xml` and
 * `+wbxml`): a management subtree as a `MgmtTree` document in the DM DDF 1.2 vocabulary (namespace
 * `syncml:dmddf1.2`), and back. Pure: no I/O, no clock, no globals beyond constant tables.
 *
 *   tndsFromXml / tndsFromWbxml           tndsToNodes
 *   bytes ------------------------> XmlElement ------------> TndsNode[]  (depth-first, parents first)
 *   bytes <------------------------ XmlElement <------------ TndsNode[]
 *   tndsToXml / tndsToWbxml               nodesToTnds
 *
 * **Confirmed** (DM TND 1.2 section 8.5.4 and TNDS 1.2 sections 9.1-9.2, read in the English/Chinese
 * transcription github.com/MarcoRosso/OMA-DM.Documents, files `85_device_description_framework_*.md`,
 * `91_tnd_serialization_definition_*.md`, `92_tnds_syntax_*.md`; protocol.md 3.10):
 * - `MgmtTree` = (VerDTD, Man?, Mod?, Node+); VerDTD MUST be `1.2` for this revision; a major revision is
 *   incompatible, a minor one is not.
 * - `Node` = (NodeName, Path?, RTProperties?, DFProperties?, (Node* | Value?)); DFProperties belongs to
 *   DDF descriptions and is not among the TNDS elements (TNDS 9.2.3). A Node with a Value ends the
 *   recursion; a Node may have neither Value nor Node ("the hierarchy continues elsewhere", and the
 *   continuation's Path then holds a full URI).
 * - `NodeName` MAY be empty: the node then takes the last segment of the command's Target URI.
 * - `Path` is "the URI up to, but not including, the described Node"; without it the URI is the
 *   concatenation of the ancestors' NodeName and Path; it SHOULD appear only on MgmtTree's own Nodes.
 * - `RTProperties` = (ACL?, Format?, Name?, Size?, Title?, TStamp?, Type, VerNo?); `Format` holds one of
 *   b64 | bin | bool | chr | int | node | null | xml | date | time | float; Size MUST NOT be used for
 *   interior nodes. TNDS 9.2.1 lists the properties valid in a TNDS file (ACL, Format, Title, TStamp,
 *   Type, VerNo; Name and Size are not listed) and which an encoder MUST write (Type, Value, NodeName,
 *   Path, RTProperties).
 * - The TNDS 9.1.3 example: interior nodes carry `<Type><DDFName>`, leaves `<Type><MIME>`; a Node may
 *   have no RTProperties at all.
 * - Binary data over XML is Base64 only in transport; the node's Format stays `bin` (TND 7.7.2).
 * - WBXML (checked by running libwbxml 0.11.8 `xml2wbxml`): DM DDF has no public id, so the FPI
 *   `-//OMA//DTD-DM-DDF 1.2//EN` travels in the string table (`02 00 00 6A 1B ...\0`) and the tags sit
 *   on code page 2.
 *
 * **Inferred** (not found in what could be read; marked where they apply below):
 * - The default property set of a bare `?list=TNDS` ({@link DEFAULT_TNDS_PROPERTIES}).
 * - A Value of a `bin` node is Base64 text in both XML and WBXML TNDS (never OPAQUE from us).
 * - Decoding accepts RTProperties without Type (the DTD requires it, but `?list=TNDS-Type` removes it)
 *   and any order of the children; it refuses duplicates, unknown elements and text where elements go.
 * - The Format of a node whose RTProperties has none (see `inferFormat`).
 * - Status codes beyond "malformed = 400": a VerDTD of another major version 505, nesting beyond the
 *   depth limit 413.
 */
import assert from "node:assert/strict";
import { ErrorCode, GatewayError } from "../core/errors.js";
import {
  DEFAULT_LIMITS,
  DMDDF_12,
  NS_DMDDF_12,
  StatusCode,
  decodeWbxmlDocument,
  decodeXmlElement,
  encodeWbxmlDocument,
  encodeXmlElement,
  type DecodeLimits,
  type Element,
  type XmlElement,
  type XmlEncodeOptions,
  type XmlNode,
} from "../syncml/index.js";
import { NODE_FORMATS, type NodeFormat, type NodeValue } from "./types.js";
import {
  ROOT_PATH,
  TNDS_SELECTABLE,
  childPath,
  isAncestorOrSelf,
  nameOf,
  parentOf,
  parseUri,
  type TndsSelectable,
} from "./uri.js";

/** One node of a serialized subtree. */
export interface TndsNode {
  /** The node's canonical URI (`./A/B`, segments escaped as `uri.ts` does). */
  readonly path: string;
  readonly format: NodeFormat;
  /** MIME type of a leaf, or the MOID (DDFName) of an interior node rooting an MO. */
  readonly type?: string;
  /** ACL text as it travelled (`""` = empty ACL, inherits); the ACL grammar is `acl.ts`'s business. */
  readonly acl?: string;
  readonly title?: string;
  /** ISO 8601 basic UTC (`20010711T163817Z`), kept as text. */
  readonly tstamp?: string;
  /** uint16. */
  readonly verNo?: number;
  /** uint32, bytes of the unencoded value; leaves only. */
  readonly size?: number;
  /** `bin`: bytes; every other format: text (`b64` keeps its Base64 text). Interior nodes: none. */
  readonly value?: NodeValue;
}

/** A `?list=TNDS+A+B` (exactly these) or `?list=TNDS-A-B` (all of {@link TNDS_SELECTABLE} but these) selection. */
export interface TndsSelection {
  readonly mode: "+" | "-";
  readonly names: readonly string[];
}

export interface NodesToTndsOptions {
  /** The canonical URI the subtree was asked for (the Get target): its node gets the Path element. */
  readonly rootPath: string;
  /** The property selection; {@link DEFAULT_TNDS_PROPERTIES} when absent. */
  readonly props?: TndsSelection;
  /** Device manufacturer and model for `Man` / `Mod` (both optional in the DTD). */
  readonly man?: string;
  readonly mod?: string;
}

export type TndsDecodeResult =
  | { readonly ok: true; readonly nodes: TndsNode[] }
  | { readonly ok: false; readonly status: number; readonly reason: string };

/**
 * What a bare `?list=TNDS` returns [inferred]: the properties TNDS 9.2.1 says an encoder MUST write
 * (Type, Value; NodeName and Path are structure) plus Format, which a decoder MUST read and without
 * which a `bin` Value or an empty interior node cannot be told apart.
 */
export const DEFAULT_TNDS_PROPERTIES: readonly TndsSelectable[] = ["Format", "Type", "Value"];

/** The Node nesting `tndsToNodes` accepts by default. */
export const DEFAULT_TNDS_MAX_DEPTH = 64;

/** The DTD version written, and the major version read. */
const VER_DTD = "1.2";
const FORMATS: ReadonlySet<string> = new Set(NODE_FORMATS);
const RT_PROPERTIES = ["ACL", "Format", "Name", "Size", "Title", "TStamp", "Type", "VerNo"] as const;
type RtProperty = (typeof RT_PROPERTIES)[number];
const NO_LIMITS = { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 } as const;
const UINT16_MAX = 0xffff;
const UINT32_MAX = 0xffff_ffff;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BLANK = /^[ \t\r\n]*$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------------
// TNDS -> nodes

/** A malformed document: carries the status out of the recursion; caught in `tndsToNodes`, never escapes. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(reason);
    this.name = "Refusal";
  }
}

function bad(reason: string): Refusal {
  return new Refusal(StatusCode.BadRequest, reason);
}

interface Collected {
  readonly node: TndsNode;
  readonly parent: string | undefined;
}

/**
 * Reads a TNDS document into nodes, depth-first with every parent before its children (a node whose
 * Path names a parent given later in the document is moved after it).
 *
 * Paths: a Node with Path is `Path/NodeName`; a nested Node without Path is its parent's path plus
 * NodeName; a top-level Node without Path is `basePath/NodeName`, or `basePath` itself when its
 * NodeName is empty (TND 8.5.4.1.6: an empty name is the last segment of the Target). A trailing `/`
 * on Path is tolerated (DDFs in the wild write `./Vendor/MSFT/`).
 *
 * Values: Format `bin` -> the Value is Base64 (XML whitespace ignored, the standard alphabet, padding
 * required) decoded to bytes; Format `b64` -> must be Base64 too, kept as its text; any other format ->
 * the text exactly. Format absent -> see `inferFormat`.
 *
 * Refusals (as values, never exceptions): 400 for a wrong root or namespace, a missing or malformed
 * VerDTD, no Node, an unknown or repeated element, text where elements belong, a missing or bad
 * NodeName, a bad Path or basePath, a Node with both Value and child Nodes, a Value or Size on an
 * interior node, child Nodes under a leaf Format, an unknown Format, a Type without exactly one MIME or
 * DDFName, a VerNo that is not a uint16, a Size that is not a uint32, a bad Base64 value, two Nodes
 * with one URI; 505 for a VerDTD of another major version; 413 for Node nesting deeper than `maxDepth`.
 *
 * @param basePath the URI top-level Nodes without Path are relative to (the command's Target).
 * @param maxDepth deepest Node nesting accepted (a top-level Node is depth 1).
 */
export function tndsToNodes(
  doc: XmlElement,
  basePath: string,
  maxDepth: number = DEFAULT_TNDS_MAX_DEPTH,
): TndsDecodeResult {
  try {
    return { ok: true, nodes: readTree(doc, basePath, maxDepth) };
  } catch (e) {
    if (e instanceof Refusal) return { ok: false, status: e.status, reason: e.reason };
    throw e;
  }
}

function readTree(doc: XmlElement, basePath: string, maxDepth: number): TndsNode[] {
  if (doc.name !== "MgmtTree" || doc.namespace !== NS_DMDDF_12) {
    throw bad(`root is <${doc.name}> in "${doc.namespace}", not <MgmtTree> in "${NS_DMDDF_12}"`);
  }
  const base = parseUri(basePath, NO_LIMITS);
  if (!base.ok) throw new Refusal(base.status, `base path: ${base.reason}`);
  if (base.uri.query !== undefined) throw bad(`base path "${basePath}" has a query`);

  const out: Collected[] = [];
  let verDtd: string | undefined;
  let man = false;
  let mod = false;
  let nodes = 0;
  for (const child of elementsOf(doc)) {
    switch (child.name) {
      case "VerDTD":
        if (verDtd !== undefined) throw repeated(child, doc);
        verDtd = textOf(child).trim();
        checkVerDtd(verDtd);
        break;
      case "Man":
      case "Mod":
        // Identify the device the subtree came from; nothing in a node depends on them.
        if ((child.name === "Man" ? man : mod) || verDtd === undefined) {
          throw bad(`<${child.name}> repeated or before <VerDTD>`);
        }
        textOf(child);
        if (child.name === "Man") man = true;
        else mod = true;
        break;
      case "Node":
        if (verDtd === undefined) throw bad("<Node> before <VerDTD>");
        nodes++;
        readNode(child, { path: base.uri.path, topLevel: true }, 1, maxDepth, out);
        break;
      default:
        throw unknown(child, doc);
    }
  }
  if (verDtd === undefined) throw bad("<MgmtTree> has no <VerDTD>");
  if (nodes === 0) throw bad("<MgmtTree> has no <Node>");
  return parentsFirst(out);
}

function checkVerDtd(verDtd: string): void {
  const m = /^(\d+)\.(\d+)$/.exec(verDtd);
  if (m === null) throw bad(`VerDTD "${verDtd}" is not a version number`);
  if (m[1] !== "1") {
    throw new Refusal(StatusCode.DtdVersionNotSupported, `VerDTD ${verDtd}: only DM DDF 1.x is understood`);
  }
}

interface NodeContext {
  /** The parent's path (for a top-level Node: the base path). */
  readonly path: string;
  readonly topLevel: boolean;
}

interface NodeParts {
  name?: string;
  path?: string;
  props?: XmlElement;
  value?: string;
  children: XmlElement[];
}

function readNode(el: XmlElement, ctx: NodeContext, depth: number, maxDepth: number, out: Collected[]): void {
  if (depth > maxDepth) {
    throw new Refusal(StatusCode.RequestEntityTooLarge, `<Node> elements nest deeper than ${maxDepth}`);
  }
  const parts: NodeParts = { children: [] };
  for (const c of elementsOf(el)) {
    switch (c.name) {
      case "NodeName":
        if (parts.name !== undefined) throw repeated(c, el);
        parts.name = textOf(c).trim();
        break;
      case "Path":
        if (parts.path !== undefined) throw repeated(c, el);
        parts.path = textOf(c).trim();
        break;
      case "RTProperties":
        if (parts.props !== undefined) throw repeated(c, el);
        parts.props = c;
        break;
      case "Value":
        if (parts.value !== undefined) throw repeated(c, el);
        parts.value = textOf(c);
        break;
      case "Node":
        parts.children.push(c);
        break;
      default:
        throw unknown(c, el);
    }
  }
  const path = nodePath(parts, ctx);
  if (parts.value !== undefined && parts.children.length > 0) {
    throw bad(`node ${path} has both a <Value> and child <Node>s`);
  }
  const props = parts.props === undefined ? new Map<RtProperty, XmlElement>() : readProps(parts.props);
  const format = inferFormat(props, parts);
  if (format === "node" && parts.value !== undefined) throw bad(`interior node ${path} has a <Value>`);
  if (format !== "node" && parts.children.length > 0) {
    throw bad(`node ${path} of Format ${format} has child <Node>s`);
  }
  const node = buildNode(path, format, props, parts.value);
  out.push({ node, parent: parentOf(path) });
  for (const c of parts.children) readNode(c, { path, topLevel: false }, depth + 1, maxDepth, out);
}

function nodePath(parts: NodeParts, ctx: NodeContext): string {
  if (parts.name === undefined) throw bad(`<Node> under ${ctx.path} has no <NodeName>`);
  const name = parts.name;
  let parent = ctx.path;
  if (parts.path !== undefined) {
    const text = parts.path.length > 1 && parts.path.endsWith("/") ? parts.path.slice(0, -1) : parts.path;
    const parsed = parseUri(text, NO_LIMITS);
    if (!parsed.ok) throw bad(`<Path>${parts.path}</Path>: ${parsed.reason}`);
    if (parsed.uri.query !== undefined) throw bad(`<Path>${parts.path}</Path> has a query`);
    parent = parsed.uri.path;
  }
  if (name === "") {
    // TND 8.5.4.1.6: the name comes from the Target URI, which only a top-level Node without Path has.
    if (!ctx.topLevel || parts.path !== undefined || ctx.path === ROOT_PATH) {
      throw bad(`<Node> under ${parent} has an empty <NodeName> and no Target to take its name from`);
    }
    return ctx.path;
  }
  if (name.includes("/") || name === "." || name === "..") {
    throw bad(`<NodeName>${name}</NodeName> is not a node name`);
  }
  return childPath(parent, name);
}

function readProps(el: XmlElement): Map<RtProperty, XmlElement> {
  const props = new Map<RtProperty, XmlElement>();
  for (const c of elementsOf(el)) {
    const name = RT_PROPERTIES.find((p) => p === c.name);
    if (name === undefined) throw unknown(c, el);
    if (props.has(name)) throw repeated(c, el);
    props.set(name, c);
  }
  return props;
}

/**
 * The node's Format: the Format property when present. Without it [inferred]: child Nodes -> `node`; a
 * Value -> `chr` (the default Meta Format); a MIME Type -> `chr`; otherwise `node` (a continuation
 * point, or an interior node serialized without properties).
 */
function inferFormat(props: ReadonlyMap<RtProperty, XmlElement>, parts: NodeParts): NodeFormat {
  const formatEl = props.get("Format");
  if (formatEl !== undefined) {
    const [choice, ...rest] = elementsOf(formatEl);
    if (choice === undefined || rest.length > 0) throw bad("<Format> must hold exactly one format element");
    if (!FORMATS.has(choice.name)) throw bad(`<Format><${choice.name}/></Format> is not a DM format`);
    if (elementsOf(choice).length > 0 || textOf(choice).trim() !== "") {
      throw bad(`<${choice.name}> in <Format> must be empty`);
    }
    return choice.name as NodeFormat;
  }
  if (parts.children.length > 0) return "node";
  if (parts.value !== undefined) return "chr";
  const typeEl = props.get("Type");
  if (typeEl !== undefined && elementsOf(typeEl).some((c) => c.name === "MIME")) return "chr";
  return "node";
}

function buildNode(
  path: string,
  format: NodeFormat,
  props: ReadonlyMap<RtProperty, XmlElement>,
  valueText: string | undefined,
): TndsNode {
  const node: {
    -readonly [K in keyof TndsNode]: TndsNode[K];
  } = { path, format };
  const typeEl = props.get("Type");
  if (typeEl !== undefined) node.type = readType(typeEl);
  const acl = props.get("ACL");
  if (acl !== undefined) node.acl = textOf(acl).trim();
  const name = props.get("Name");
  if (name !== undefined) textOf(name); // the Name property repeats NodeName (TND 8.5.4.2.3)
  const size = props.get("Size");
  if (size !== undefined) {
    if (format === "node") throw bad(`interior node ${path} has a <Size> (TND 8.5.4.2.4)`);
    node.size = readUint(size, UINT32_MAX);
  }
  const title = props.get("Title");
  if (title !== undefined) node.title = textOf(title);
  const tstamp = props.get("TStamp");
  if (tstamp !== undefined) node.tstamp = textOf(tstamp).trim();
  const verNo = props.get("VerNo");
  if (verNo !== undefined) node.verNo = readUint(verNo, UINT16_MAX);
  if (valueText !== undefined) node.value = readValue(path, format, valueText);
  return node;
}

function readType(el: XmlElement): string {
  const [choice, ...rest] = elementsOf(el);
  if (choice === undefined || rest.length > 0 || (choice.name !== "MIME" && choice.name !== "DDFName")) {
    throw bad("<Type> must hold exactly one <MIME> or <DDFName>");
  }
  return textOf(choice).trim();
}

function readUint(el: XmlElement, max: number): number {
  const text = textOf(el).trim();
  if (!/^\d{1,10}$/.test(text) || Number(text) > max) {
    throw bad(`<${el.name}>${text}</${el.name}> is not an integer from 0 to ${max}`);
  }
  return Number(text);
}

function readValue(path: string, format: NodeFormat, text: string): NodeValue {
  if (format !== "bin" && format !== "b64") return text;
  const bytes = decodeBase64(text);
  if (bytes === undefined) throw bad(`the ${format} value of ${path} is not Base64`);
  return format === "bin" ? bytes : text;
}

function decodeBase64(text: string): Uint8Array | undefined {
  const compact = text.replace(/[ \t\r\n]+/g, "");
  if (!BASE64.test(compact)) return undefined;
  return Uint8Array.from(Buffer.from(compact, "base64"));
}

/** Reorders so that every node follows its parent when both are present; otherwise document order. */
function parentsFirst(collected: readonly Collected[]): TndsNode[] {
  const byPath = new Map<string, Collected>();
  const children = new Map<string, Collected[]>();
  for (const c of collected) {
    if (byPath.has(c.node.path)) throw bad(`two <Node>s describe ${c.node.path}`);
    byPath.set(c.node.path, c);
  }
  const roots: Collected[] = [];
  for (const c of collected) {
    if (c.parent !== undefined && byPath.has(c.parent)) {
      const list = children.get(c.parent);
      if (list === undefined) children.set(c.parent, [c]);
      else list.push(c);
    } else roots.push(c);
  }
  const out: TndsNode[] = [];
  const stack = roots.reverse();
  for (let c = stack.pop(); c !== undefined; c = stack.pop()) {
    out.push(c.node);
    const kids = children.get(c.node.path);
    if (kids !== undefined) for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i] as Collected);
  }
  return out;
}

/** The element children; whitespace between them is layout, any other text is an error. */
function elementsOf(el: XmlElement): XmlElement[] {
  const out: XmlElement[] = [];
  for (const c of el.children) {
    if (typeof c !== "string") {
      if (c.namespace !== NS_DMDDF_12) throw unknown(c, el);
      out.push(c);
    } else if (!BLANK.test(c)) throw bad(`<${el.name}> holds text where only elements belong`);
  }
  return out;
}

/** The text of a leaf element; an element inside it is an error. */
function textOf(el: XmlElement): string {
  let s = "";
  for (const c of el.children) {
    if (typeof c !== "string") throw bad(`<${el.name}> holds an element <${c.name}> where text belongs`);
    s += c;
  }
  return s;
}

function unknown(el: XmlElement, parent: XmlElement): Refusal {
  const ns = el.namespace === NS_DMDDF_12 ? "" : ` of namespace "${el.namespace}"`;
  return bad(`unknown element <${el.name}>${ns} in <${parent.name}>`);
}

function repeated(el: XmlElement, parent: XmlElement): Refusal {
  return bad(`<${el.name}> repeated in <${parent.name}>`);
}

// ---------------------------------------------------------------------------------------------------
// nodes -> TNDS

/**
 * The properties a selection asks for: `+` exactly the names, `-` all of {@link TNDS_SELECTABLE} but
 * them, none given -> {@link DEFAULT_TNDS_PROPERTIES}. Names must be selectable ones (`uri.ts`
 * `parseUri` answers 406 for others before this is reached); an unknown name is a programmer error.
 */
export function selectedTndsProperties(props?: TndsSelection): ReadonlySet<TndsSelectable> {
  if (props === undefined) return new Set(DEFAULT_TNDS_PROPERTIES);
  const names = new Set<TndsSelectable>();
  for (const n of props.names) {
    const known = TNDS_SELECTABLE.find((s) => s === n);
    assert.ok(known !== undefined, `"${n}" is not a TNDS property`);
    names.add(known);
  }
  return props.mode === "+" ? names : new Set(TNDS_SELECTABLE.filter((s) => !names.has(s)));
}

/**
 * Serializes the subtree at `options.rootPath`: the node at rootPath (and any node whose parent is
 * missing from `nodes`, as one the server may not read would be) becomes a top-level Node with a Path;
 * the rest nest under their parents, in the order given. Element order follows the DTD: MgmtTree
 * (VerDTD, Man?, Mod?, Node+), Node (NodeName, Path?, RTProperties?, (Node* | Value?)), RTProperties
 * (ACL?, Format?, Name?, Size?, Title?, TStamp?, Type?, VerNo?). RTProperties is left out when no
 * selected property has a value. Type goes as DDFName on interior nodes and MIME on leaves (TNDS 9.1.3).
 * A `bin` value is written as Base64 text; `b64` bytes likewise. The root `.` itself has no NodeName
 * and is not written (its children are, with Path `.`).
 *
 * Programmer errors (asserted): no node to write, a path that is not canonical or not under rootPath,
 * a value on an interior node, bytes under a text format, a VerNo or Size out of range.
 */
export function nodesToTnds(nodes: readonly TndsNode[], options: NodesToTndsOptions): XmlElement {
  const root = parseUri(options.rootPath, NO_LIMITS);
  assert.ok(root.ok && root.uri.path === options.rootPath, `rootPath "${options.rootPath}" is not canonical`);
  const selected = selectedTndsProperties(options.props);

  const byPath = new Map<string, TndsNode>();
  for (const n of nodes) {
    const parsed = parseUri(n.path, NO_LIMITS);
    assert.ok(parsed.ok && parsed.uri.path === n.path, `node path "${n.path}" is not canonical`);
    assert.ok(isAncestorOrSelf(options.rootPath, n.path), `${n.path} is not under ${options.rootPath}`);
    assert.ok(!byPath.has(n.path), `${n.path} is given twice`);
    if (n.path !== ROOT_PATH) byPath.set(n.path, n);
  }
  const children = new Map<string, TndsNode[]>();
  const tops: TndsNode[] = [];
  for (const n of byPath.values()) {
    const parent = parentOf(n.path) ?? ROOT_PATH;
    if (byPath.has(parent)) {
      const list = children.get(parent);
      if (list === undefined) children.set(parent, [n]);
      else list.push(n);
    } else tops.push(n);
  }
  assert.ok(
    tops.length > 0,
    "a TNDS document needs at least one node (MgmtTree = VerDTD, Man?, Mod?, Node+)",
  );

  const out: XmlElement[] = [leaf("VerDTD", VER_DTD)];
  if (options.man !== undefined) out.push(leaf("Man", options.man));
  if (options.mod !== undefined) out.push(leaf("Mod", options.mod));
  for (const n of tops) out.push(writeNode(n, parentOf(n.path) ?? ROOT_PATH, children, selected));
  return el("MgmtTree", out);
}

function writeNode(
  node: TndsNode,
  path: string | undefined,
  children: ReadonlyMap<string, readonly TndsNode[]>,
  selected: ReadonlySet<TndsSelectable>,
): XmlElement {
  const interior = node.format === "node";
  const kids = children.get(node.path) ?? [];
  assert.ok(interior || kids.length === 0, `leaf ${node.path} has child nodes`);
  assert.ok(!interior || node.value === undefined, `interior node ${node.path} has a value`);

  const out: XmlElement[] = [leaf("NodeName", nameOf(node.path))];
  if (path !== undefined) out.push(leaf("Path", path));
  const props = writeProps(node, selected);
  if (props.length > 0) out.push(el("RTProperties", props));
  for (const k of kids) out.push(writeNode(k, undefined, children, selected));
  if (selected.has("Value") && node.value !== undefined) out.push(leaf("Value", valueText(node)));
  return el("Node", out);
}

function writeProps(node: TndsNode, selected: ReadonlySet<TndsSelectable>): XmlElement[] {
  const out: XmlElement[] = [];
  if (selected.has("ACL") && node.acl !== undefined) out.push(leaf("ACL", node.acl));
  if (selected.has("Format")) out.push(el("Format", [el(node.format, [])]));
  if (selected.has("Name")) out.push(leaf("Name", nameOf(node.path)));
  if (selected.has("Size") && node.size !== undefined && node.format !== "node") {
    assert.ok(Number.isInteger(node.size) && node.size >= 0 && node.size <= UINT32_MAX, "Size is a uint32");
    out.push(leaf("Size", String(node.size)));
  }
  if (selected.has("Title") && node.title !== undefined) out.push(leaf("Title", node.title));
  if (selected.has("TStamp") && node.tstamp !== undefined) out.push(leaf("TStamp", node.tstamp));
  if (selected.has("Type") && node.type !== undefined) {
    out.push(el("Type", [leaf(node.format === "node" ? "DDFName" : "MIME", node.type)]));
  }
  if (selected.has("VerNo") && node.verNo !== undefined) {
    assert.ok(
      Number.isInteger(node.verNo) && node.verNo >= 0 && node.verNo <= UINT16_MAX,
      "VerNo is a uint16",
    );
    out.push(leaf("VerNo", String(node.verNo)));
  }
  return out;
}

function valueText(node: TndsNode): string {
  const value = node.value;
  if (typeof value === "string") {
    assert.ok(node.format !== "bin", `bin node ${node.path} holds text, not bytes`);
    return value;
  }
  assert.ok(value !== undefined);
  assert.ok(node.format === "bin" || node.format === "b64", `${node.format} node ${node.path} holds bytes`);
  return base64(value);
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function el(name: string, children: readonly XmlNode[]): XmlElement {
  return { name, namespace: NS_DMDDF_12, children };
}

function leaf(name: string, text: string): XmlElement {
  return el(name, text === "" ? [] : [text]);
}

// ---------------------------------------------------------------------------------------------------
// Wire formats: thin wrappers over the SyncML codec (src/syncml).

/** TNDS as XML bytes (`application/vnd.syncml.dmtnds+xml`), UTF-8 with an XML declaration by default. */
export function tndsToXml(doc: XmlElement, options: XmlEncodeOptions = {}): Uint8Array {
  return new TextEncoder().encode(encodeXmlElement(toElement(doc), options));
}

/**
 * XML bytes -> the TNDS element tree, whitespace between elements dropped (the DTD has no mixed
 * content) and leaf text kept exactly. Judging the content is `tndsToNodes`'s job.
 *
 * @throws GatewayError with a `Codec_*` code for input that is not well-formed XML or is over `limits`.
 */
export function tndsFromXml(bytes: Uint8Array | string, limits: DecodeLimits = DEFAULT_LIMITS): XmlElement {
  return fromElement(decodeXmlElement(bytes, limits), false);
}

/**
 * TNDS as WBXML bytes (`application/vnd.syncml.dmtnds+wbxml`), the form libwbxml 0.11.8 writes with
 * `xml2wbxml -n -v 1.2`: WBXML 1.2, the DM DDF FPI in the string table, UTF-8, text as STR_I.
 *
 * @throws GatewayError(Codec_EncodeFailed) for an element that is not in the DM DDF 1.2 vocabulary.
 */
export function tndsToWbxml(doc: XmlElement): Uint8Array {
  return encodeWbxmlDocument(toElement(doc), DMDDF_12);
}

/**
 * WBXML bytes -> the TNDS element tree. A document with public id 1 ("unknown") is read as DM DDF; any
 * other language is refused. OPAQUE content (libwbxml and devices may send a `bin` Value raw) becomes
 * Base64 text in the Value of a node whose Format is `bin`, and UTF-8 text anywhere else.
 *
 * @throws GatewayError with a `Codec_*` code for malformed WBXML, another document type
 *   (Codec_UnknownDocument) or OPAQUE text that is not UTF-8 (Codec_InvalidEncoding).
 */
export function tndsFromWbxml(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): XmlElement {
  const doc = decodeWbxmlDocument(bytes, { limits, defaultLanguage: DMDDF_12 });
  if (doc.language !== DMDDF_12) {
    throw new GatewayError(
      `WBXML document is ${doc.language.name}, not a DM DDF 1.2 (TNDS) document`,
      ErrorCode.Codec_UnknownDocument,
      { context: { publicId: doc.publicId } },
    );
  }
  return fromElement(doc.root, false);
}

function toElement(doc: XmlElement): Element {
  return {
    name: doc.name,
    namespace: doc.namespace,
    children: doc.children.map((c) => (typeof c === "string" ? c : toElement(c))),
  };
}

function fromElement(e: Element, binValue: boolean): XmlElement {
  const structured = e.children.some((c) => typeof c === "object" && !(c instanceof Uint8Array));
  if (binValue && e.children.some((c) => c instanceof Uint8Array)) {
    // A raw `bin` Value: the bytes become the Base64 text a TNDS Value of Format bin holds.
    const pieces = e.children.filter((c) => c instanceof Uint8Array);
    if (pieces.length !== e.children.length) {
      throw new GatewayError("a bin <Value> mixes OPAQUE bytes and text", ErrorCode.Codec_InvalidStructure, {
        context: { element: e.name },
      });
    }
    return { name: e.name, namespace: e.namespace, children: [base64(Buffer.concat(pieces))] };
  }
  const bin = e.name === "Node" && e.namespace === NS_DMDDF_12 && formatOf(e) === "bin";
  if (!structured) {
    // A leaf: its STR_I and OPAQUE pieces become one text child (none for empty text).
    let text = "";
    for (const c of e.children) text += typeof c === "string" ? c : utf8(c as Uint8Array, e);
    return { name: e.name, namespace: e.namespace, children: text === "" ? [] : [text] };
  }
  const children: XmlNode[] = [];
  for (const c of e.children) {
    if (typeof c === "string") {
      if (!BLANK.test(c)) children.push(c);
    } else if (c instanceof Uint8Array) {
      children.push(utf8(c, e));
    } else {
      children.push(fromElement(c, bin && c.name === "Value"));
    }
  }
  return { name: e.name, namespace: e.namespace, children };
}

/** The format element named in `Node/RTProperties/Format`, if any. */
function formatOf(node: Element): string | undefined {
  for (const p of node.children) {
    if (typeof p !== "object" || p instanceof Uint8Array || p.name !== "RTProperties") continue;
    for (const f of p.children) {
      if (typeof f !== "object" || f instanceof Uint8Array || f.name !== "Format") continue;
      for (const x of f.children) if (typeof x === "object" && !(x instanceof Uint8Array)) return x.name;
    }
  }
  return undefined;
}

function utf8(bytes: Uint8Array, e: Element): string {
  try {
    return UTF8.decode(bytes);
  } catch (cause) {
    throw new GatewayError(
      `<${e.name}> holds OPAQUE bytes that are not UTF-8 text`,
      ErrorCode.Codec_InvalidEncoding,
      {
        cause,
        context: { element: e.name },
      },
    );
  }
}
