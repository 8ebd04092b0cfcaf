/**
 * Element tree -> typed SyncML DM message, validating the structure of SyncML RepPro 1.2 (DTD
 * element names and occurrences) as far as DM uses it. Elements are matched by local name: the
 * namespace of SyncML elements may be 1.1, 1.2 or missing (some devices omit xmlns), and MetInf
 * elements may or may not carry `syncml:metinf`. The version is what VerDTD says (the body decides,
 * not the WBXML public id or the xmlns).
 */
import { concatBytes } from "../core/bytes.js";
import { ErrorCode, GatewayError, isGatewayError } from "../core/errors.js";
import {
  MIME_TNDS_WBXML,
  MIME_TNDS_XML,
  NS_DEVINF,
  NS_DMDDF_12,
  NS_METINF,
  NS_SYNCML_11,
  NS_SYNCML_12,
} from "./constants.js";
import { DEFAULT_LIMITS, isElement, type DecodeLimits, type Element, type Node } from "./element.js";
import type {
  Chal,
  Command,
  Cred,
  Data,
  Item,
  Location,
  Meta,
  SyncHdr,
  SyncMLMessage,
  SyncMLVersion,
  XmlElement,
  XmlNode,
  Encoding,
} from "./model.js";
import { decodeWbxmlDocument, sniffWbxmlLanguage } from "./wbxml-decode.js";
import { DEVINF_11, DEVINF_12, DMDDF_12, type WbxmlLanguage } from "./wbxml-languages.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8_ENCODER = new TextEncoder();

/** Item Meta Types whose Data is an embedded document: WBXML form -> XML form and language. */
export const EMBEDDED_TYPES: ReadonlyMap<
  string,
  { readonly xmlType: string; readonly language: WbxmlLanguage }
> = new Map([
  [MIME_TNDS_WBXML, { xmlType: MIME_TNDS_XML, language: DMDDF_12 }],
  ["application/vnd.syncml.dmddf+wbxml", { xmlType: "application/vnd.syncml.dmddf+xml", language: DMDDF_12 }],
  [
    "application/vnd.syncml-devinf+wbxml",
    { xmlType: "application/vnd.syncml-devinf+xml", language: DEVINF_12 },
  ],
]);

/**
 * `encoding` is the wire format the tree came from: in WBXML, a TNDS or DevInf type names its
 * `+wbxml` form and the document travels as nested WBXML; the model holds the `+xml` form and the
 * document as elements, whichever format carried it (libwbxml maps the two the same way).
 */
const EMBEDDED_LANGUAGES: ReadonlySet<WbxmlLanguage> = new Set([DMDDF_12, DEVINF_12, DEVINF_11]);

const EMBEDDED_LANGUAGE_BY_XML_TYPE: ReadonlyMap<string, WbxmlLanguage> = new Map(
  [...EMBEDDED_TYPES.values()].map((v) => [v.xmlType, v.language]),
);

export function messageFromElement(
  root: Element,
  limits: DecodeLimits = DEFAULT_LIMITS,
  encoding: Encoding = "xml",
  elementCount = 0,
): SyncMLMessage {
  expectSyncML(root, "SyncML");
  let hdr: SyncHdr | undefined;
  let bodyEl: Element | undefined;
  const ctx: Context = { limits, encoding, elementsLeft: limits.maxElements - elementCount };
  for (const child of elementChildren(root)) {
    if (child.name === "SyncHdr" && isSyncML(child)) hdr = once(hdr, child, (e) => parseHdr(e, ctx));
    else if (child.name === "SyncBody" && isSyncML(child)) bodyEl = once(bodyEl, child, (e) => e);
    else throw unknown(child, root);
  }
  if (hdr === undefined) throw missing("SyncHdr", root);
  if (bodyEl === undefined) throw missing("SyncBody", root);
  const version = versionOf(hdr.verDTD);
  const commands: Command[] = [];
  let final = false;
  for (const child of elementChildren(bodyEl)) {
    if (child.name === "Final" && isSyncML(child)) {
      if (final) throw duplicate(child);
      final = flag(child);
      continue;
    }
    if (final) throw structure("a command follows <Final>", child);
    commands.push(parseCommand(child, bodyEl, ctx));
  }
  return { version, hdr, body: { commands, final } };
}

interface Context {
  readonly limits: DecodeLimits;
  readonly encoding: Encoding;
  /** Elements nested WBXML documents may still add: they count against the message's limit. */
  elementsLeft: number;
}

function versionOf(verDTD: string): SyncMLVersion {
  const v = verDTD.trim();
  if (v === "1.2") return "1.2";
  if (v === "1.1") return "1.1";
  throw new GatewayError(
    `VerDTD ${JSON.stringify(v.slice(0, 20))} is not a SyncML DM version (1.2 or 1.1)`,
    ErrorCode.Codec_UnsupportedVersion,
    {
      context: { verDTD: v.slice(0, 20) },
    },
  );
}

function parseHdr(el: Element, ctx: Context): SyncHdr {
  const f: {
    verDTD?: string;
    verProto?: string;
    sessionId?: string;
    msgId?: string;
    target?: Location;
    source?: Location;
    respUri?: string;
    noResp?: boolean;
    cred?: Cred;
    meta?: Meta;
  } = {};
  for (const c of elementChildren(el)) {
    if (!isSyncML(c)) throw unknown(c, el);
    switch (c.name) {
      case "VerDTD":
        f.verDTD = once(f.verDTD, c, textOf);
        break;
      case "VerProto":
        f.verProto = once(f.verProto, c, textOf);
        break;
      case "SessionID":
        f.sessionId = once(f.sessionId, c, textOf);
        break;
      case "MsgID":
        f.msgId = once(f.msgId, c, textOf);
        break;
      case "Target":
        f.target = once(f.target, c, parseLocation);
        break;
      case "Source":
        f.source = once(f.source, c, parseLocation);
        break;
      case "RespURI":
        f.respUri = once(f.respUri, c, textOf);
        break;
      case "NoResp":
        f.noResp = once(f.noResp, c, flag);
        break;
      case "Cred":
        f.cred = once(f.cred, c, (e) => parseCred(e, ctx));
        break;
      case "Meta":
        f.meta = once(f.meta, c, (e) => parseMeta(e, ctx));
        break;
      default:
        throw unknown(c, el);
    }
  }
  return {
    verDTD: required(f.verDTD, "VerDTD", el),
    verProto: required(f.verProto, "VerProto", el),
    sessionId: required(f.sessionId, "SessionID", el),
    msgId: required(f.msgId, "MsgID", el),
    target: required(f.target, "Target", el),
    source: required(f.source, "Source", el),
    ...(f.respUri !== undefined && { respUri: f.respUri }),
    ...(f.noResp !== undefined && { noResp: f.noResp }),
    ...(f.cred !== undefined && { cred: f.cred }),
    ...(f.meta !== undefined && { meta: f.meta }),
  };
}

function parseCommand(el: Element, parent: Element, ctx: Context): Command {
  if (!isSyncML(el)) throw unknown(el, parent);
  switch (el.name) {
    case "Add":
    case "Copy":
    case "Delete":
    case "Get":
    case "Replace":
      return parseItemCommand(el, el.name, ctx);
    case "Alert":
      return parseAlert(el, ctx);
    case "Exec":
      return parseExec(el, ctx);
    case "Atomic":
    case "Sequence":
      return parseContainer(el, el.name, ctx);
    case "Status":
      return parseStatus(el, ctx);
    case "Results":
      return parseResults(el, ctx);
    default:
      throw unknown(el, parent);
  }
}

interface CommonFields {
  cmdId?: string;
  noResp?: boolean;
  cred?: Cred;
  meta?: Meta;
  correlator?: string;
  data?: string;
  items: Item[];
}

/** Reads the children shared by the commands; returns false for a name it does not know. */
function commonChild(c: Element, f: CommonFields, allowed: ReadonlySet<string>, ctx: Context): boolean {
  if (!allowed.has(c.name)) return false;
  switch (c.name) {
    case "CmdID":
      f.cmdId = once(f.cmdId, c, textOf);
      return true;
    case "NoResp":
      f.noResp = once(f.noResp, c, flag);
      return true;
    case "Cred":
      f.cred = once(f.cred, c, (e) => parseCred(e, ctx));
      return true;
    case "Meta":
      f.meta = once(f.meta, c, (e) => parseMeta(e, ctx));
      return true;
    case "Correlator":
      f.correlator = once(f.correlator, c, textOf);
      return true;
    case "Data":
      f.data = once(f.data, c, textOf);
      return true;
    case "Item":
      f.items.push(parseItem(c, ctx, f.meta?.type));
      return true;
    default:
      return false;
  }
}

const ITEM_COMMAND_CHILDREN = new Set(["CmdID", "NoResp", "Cred", "Meta", "Item"]);
const ALERT_CHILDREN = new Set(["CmdID", "NoResp", "Cred", "Data", "Correlator", "Item"]);
const EXEC_CHILDREN = new Set(["CmdID", "NoResp", "Cred", "Meta", "Correlator", "Item"]);

function parseItemCommand(
  el: Element,
  kind: "Add" | "Copy" | "Delete" | "Get" | "Replace",
  ctx: Context,
): Command {
  const f: CommonFields = { items: [] };
  for (const c of elementChildren(el)) {
    if (!isSyncML(c) || !commonChild(c, f, ITEM_COMMAND_CHILDREN, ctx)) throw unknown(c, el);
  }
  return {
    kind,
    cmdId: required(f.cmdId, "CmdID", el),
    ...(f.noResp !== undefined && { noResp: f.noResp }),
    ...(f.cred !== undefined && { cred: f.cred }),
    ...(f.meta !== undefined && { meta: f.meta }),
    items: f.items,
  };
}

function parseAlert(el: Element, ctx: Context): Command {
  const f: CommonFields = { items: [] };
  for (const c of elementChildren(el)) {
    if (!isSyncML(c) || !commonChild(c, f, ALERT_CHILDREN, ctx)) throw unknown(c, el);
  }
  return {
    kind: "Alert",
    cmdId: required(f.cmdId, "CmdID", el),
    ...(f.noResp !== undefined && { noResp: f.noResp }),
    ...(f.cred !== undefined && { cred: f.cred }),
    ...(f.data !== undefined && { data: f.data }),
    ...(f.correlator !== undefined && { correlator: f.correlator }),
    items: f.items,
  };
}

function parseExec(el: Element, ctx: Context): Command {
  const f: CommonFields = { items: [] };
  for (const c of elementChildren(el)) {
    if (!isSyncML(c) || !commonChild(c, f, EXEC_CHILDREN, ctx)) throw unknown(c, el);
  }
  return {
    kind: "Exec",
    cmdId: required(f.cmdId, "CmdID", el),
    ...(f.noResp !== undefined && { noResp: f.noResp }),
    ...(f.cred !== undefined && { cred: f.cred }),
    ...(f.meta !== undefined && { meta: f.meta }),
    ...(f.correlator !== undefined && { correlator: f.correlator }),
    items: f.items,
  };
}

function parseContainer(el: Element, kind: "Atomic" | "Sequence", ctx: Context): Command {
  let cmdId: string | undefined;
  let noResp: boolean | undefined;
  let meta: Meta | undefined;
  const commands: Command[] = [];
  for (const c of elementChildren(el)) {
    if (isSyncML(c) && c.name === "CmdID") cmdId = once(cmdId, c, textOf);
    else if (isSyncML(c) && c.name === "NoResp") noResp = once(noResp, c, flag);
    else if (isSyncML(c) && c.name === "Meta") meta = once(meta, c, (e) => parseMeta(e, ctx));
    else commands.push(parseCommand(c, el, ctx));
  }
  return {
    kind,
    cmdId: required(cmdId, "CmdID", el),
    ...(noResp !== undefined && { noResp }),
    ...(meta !== undefined && { meta }),
    commands,
  };
}

function parseStatus(el: Element, ctx: Context): Command {
  let cmdId: string | undefined, msgRef: string | undefined, cmdRef: string | undefined;
  let cmd: string | undefined, data: string | undefined;
  let cred: Cred | undefined;
  let chal: Chal | undefined;
  const targetRefs: string[] = [];
  const sourceRefs: string[] = [];
  const items: Item[] = [];
  for (const c of elementChildren(el)) {
    if (!isSyncML(c)) throw unknown(c, el);
    switch (c.name) {
      case "CmdID":
        cmdId = once(cmdId, c, textOf);
        break;
      case "MsgRef":
        msgRef = once(msgRef, c, textOf);
        break;
      case "CmdRef":
        cmdRef = once(cmdRef, c, textOf);
        break;
      case "Cmd":
        cmd = once(cmd, c, textOf);
        break;
      case "TargetRef":
        targetRefs.push(textOf(c));
        break;
      case "SourceRef":
        sourceRefs.push(textOf(c));
        break;
      case "Cred":
        cred = once(cred, c, (e) => parseCred(e, ctx));
        break;
      case "Chal":
        chal = once(chal, c, (e) => parseChal(e, ctx));
        break;
      case "Data":
        data = once(data, c, textOf);
        break;
      case "Item":
        items.push(parseItem(c, ctx));
        break;
      default:
        throw unknown(c, el);
    }
  }
  return {
    kind: "Status",
    cmdId: required(cmdId, "CmdID", el),
    msgRef: required(msgRef, "MsgRef", el),
    cmdRef: required(cmdRef, "CmdRef", el),
    cmd: required(cmd, "Cmd", el),
    targetRefs,
    sourceRefs,
    ...(cred !== undefined && { cred }),
    ...(chal !== undefined && { chal }),
    data: required(data, "Data", el),
    items,
  };
}

function parseResults(el: Element, ctx: Context): Command {
  let cmdId: string | undefined, msgRef: string | undefined, cmdRef: string | undefined;
  let meta: Meta | undefined;
  const targetRefs: string[] = [];
  const sourceRefs: string[] = [];
  const items: Item[] = [];
  for (const c of elementChildren(el)) {
    if (!isSyncML(c)) throw unknown(c, el);
    switch (c.name) {
      case "CmdID":
        cmdId = once(cmdId, c, textOf);
        break;
      case "MsgRef":
        msgRef = once(msgRef, c, textOf);
        break;
      case "CmdRef":
        cmdRef = once(cmdRef, c, textOf);
        break;
      case "Meta":
        meta = once(meta, c, (e) => parseMeta(e, ctx));
        break;
      case "TargetRef":
        targetRefs.push(textOf(c));
        break;
      case "SourceRef":
        sourceRefs.push(textOf(c));
        break;
      case "Item":
        items.push(parseItem(c, ctx, meta?.type));
        break;
      default:
        throw unknown(c, el);
    }
  }
  return {
    kind: "Results",
    cmdId: required(cmdId, "CmdID", el),
    ...(msgRef !== undefined && { msgRef }),
    cmdRef: required(cmdRef, "CmdRef", el),
    ...(meta !== undefined && { meta }),
    targetRefs,
    sourceRefs,
    items,
  };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

// parseItem and parseLocation run for every Item of a message: they fill one object in place
// rather than spreading optional fields (measurably faster on a 64 KB Results package).
function parseItem(el: Element, ctx: Context, inheritedType?: string): Item {
  const item: Mutable<Item> = {};
  let dataEl: Element | undefined;
  for (const c of elementChildren(el)) {
    if (!isSyncML(c)) throw unknown(c, el);
    switch (c.name) {
      case "Target":
        if (item.target !== undefined) throw duplicate(c);
        item.target = parseLocation(c);
        break;
      case "Source":
        if (item.source !== undefined) throw duplicate(c);
        item.source = parseLocation(c);
        break;
      case "Meta":
        if (item.meta !== undefined) throw duplicate(c);
        item.meta = parseMeta(c, ctx);
        break;
      case "Data":
        if (dataEl !== undefined) throw duplicate(c);
        dataEl = c;
        break;
      case "MoreData":
        if (item.moreData !== undefined) throw duplicate(c);
        item.moreData = flag(c);
        break;
      default:
        throw unknown(c, el);
    }
  }
  if (dataEl !== undefined) {
    let data = parseData(dataEl);
    // An embedded document sent as WBXML (OPAQUE) becomes the same element data the XML form gives.
    // Its type may sit on the Item or on the command (Results Meta); parseMeta already mapped it to
    // the +xml form.
    if (ctx.encoding === "wbxml" && data.kind === "opaque") {
      const type = (item.meta?.type ?? inheritedType)?.trim();
      const language =
        (type === undefined ? undefined : EMBEDDED_LANGUAGE_BY_XML_TYPE.get(type)) ??
        embeddedLanguageOf(data.bytes);
      const nested = language === undefined ? undefined : tryNestedDocument(data.bytes, language, ctx);
      if (nested !== undefined) data = { kind: "element", element: nested };
    }
    // Element Data is an XML document whichever format carried it: its type is the +xml form.
    const wbxmlForm =
      data.kind === "element" && item.meta?.type !== undefined
        ? EMBEDDED_TYPES.get(item.meta.type)
        : undefined;
    if (wbxmlForm !== undefined && item.meta !== undefined)
      item.meta = { ...item.meta, type: wbxmlForm.xmlType };
    // Keep the DTD order of fields (Target, Source, Meta, Data, MoreData) for readable output.
    const moreData = item.moreData;
    delete item.moreData;
    item.data = data;
    if (moreData !== undefined) item.moreData = moreData;
  }
  return item;
}

/** A DM DDF or DevInf document that names itself in its WBXML header, whatever the Item's type. */
function embeddedLanguageOf(bytes: Uint8Array): WbxmlLanguage | undefined {
  if (bytes.length < 4) return undefined;
  const language = sniffWbxmlLanguage(bytes);
  return language !== undefined && EMBEDDED_LANGUAGES.has(language) ? language : undefined;
}

function tryNestedDocument(bytes: Uint8Array, language: WbxmlLanguage, ctx: Context): XmlElement | undefined {
  try {
    const limits = { ...ctx.limits, maxElements: Math.max(0, ctx.elementsLeft) };
    const doc = decodeWbxmlDocument(bytes, { limits, defaultLanguage: language });
    ctx.elementsLeft -= doc.elementCount;
    return toXmlElement(doc.root);
  } catch (e) {
    // A nested document over the limits makes the message too big, as it would inline in XML.
    if (isGatewayError(e, ErrorCode.Codec_TooManyElements) || isGatewayError(e, ErrorCode.Codec_TooDeep))
      throw e;
    if (isGatewayError(e, ErrorCode.Codec_TooLarge)) throw e;
    // Otherwise not a well-formed embedded document: keep the bytes; the command that uses them
    // answers for it.
    return undefined;
  }
}

function parseData(el: Element): Data {
  const elements = el.children.filter(isElement);
  if (elements.length > 0) {
    const root = elements[0];
    if (elements.length > 1 || root === undefined || !el.children.every((c) => isElement(c) || isBlank(c))) {
      throw structure("<Data> mixes text with elements or holds more than one element", el);
    }
    return { kind: "element", element: embeddedNamespace(toXmlElement(root)) };
  }
  if (el.children.some((c) => c instanceof Uint8Array)) {
    // Text and OPAQUE mixed in one Data: the bytes in order, text as UTF-8, in one fresh array.
    const parts = el.children.map((c) =>
      typeof c === "string" ? UTF8_ENCODER.encode(c) : (c as Uint8Array),
    );
    if (parts.length === 1 && parts[0] !== undefined) return { kind: "opaque", bytes: parts[0] };
    return { kind: "opaque", bytes: concatBytes(parts) };
  }
  return { kind: "text", text: el.children.filter((c): c is string => typeof c === "string").join("") };
}

/**
 * A TNDS or DevInf document written inline without its own xmlns inherits the SyncML namespace; give
 * it the namespace its root names, so WBXML encoding finds its code page.
 */
function embeddedNamespace(el: XmlElement): XmlElement {
  if (el.namespace !== NS_SYNCML_12 && el.namespace !== NS_SYNCML_11 && el.namespace !== "") return el;
  const ns = el.name === "MgmtTree" ? NS_DMDDF_12 : el.name === "DevInf" ? NS_DEVINF : undefined;
  if (ns === undefined) return el;
  const inherited = el.namespace;
  const rewrite = (e: XmlElement): XmlElement => ({
    name: e.name,
    namespace: e.namespace === inherited ? ns : e.namespace,
    children: e.children.map((c) => (typeof c === "string" ? c : rewrite(c))),
  });
  return rewrite(el);
}

/**
 * An embedded document (TNDS, DevInf) as model data. Whitespace between its elements is layout, not
 * content (their DTDs have no mixed content), so it is dropped, as libwbxml drops it; the text of a
 * leaf (a TNDS Value) is kept exactly.
 */
function toXmlElement(el: Element): XmlElement {
  const children: XmlNode[] = [];
  const structured = el.children.some(isElement);
  for (const c of el.children) {
    if (typeof c === "string") {
      if (!structured || !isBlank(c)) children.push(c);
    } else if (c instanceof Uint8Array) {
      // OPAQUE in a TNDS Value is a binary (bin) value, which TNDS XML writes as Base64 (TNDS 1.2).
      const binaryValue = el.name === "Value" && el.namespace === NS_DMDDF_12;
      children.push(binaryValue ? Buffer.from(c).toString("base64") : utf8(c, el));
    } else children.push(toXmlElement(c));
  }
  return { name: el.name, namespace: el.namespace, children };
}

function parseLocation(el: Element): Location {
  let locUri: string | undefined;
  let locName: string | undefined;
  for (const c of elementChildren(el)) {
    if (c.name === "LocURI" && isSyncML(c)) {
      if (locUri !== undefined) throw duplicate(c);
      locUri = textOf(c);
    } else if (c.name === "LocName" && isSyncML(c)) {
      if (locName !== undefined) throw duplicate(c);
      locName = textOf(c);
    } else throw unknown(c, el);
  }
  if (locUri === undefined) throw missing("LocURI", el);
  return locName === undefined ? { locUri } : { locUri, locName };
}

function parseCred(el: Element, ctx: Context): Cred {
  let meta: Meta | undefined;
  let data: string | undefined;
  for (const c of elementChildren(el)) {
    if (isSyncML(c) && c.name === "Meta") meta = once(meta, c, (e) => parseMeta(e, ctx));
    else if (isSyncML(c) && c.name === "Data") data = once(data, c, textOf);
    else throw unknown(c, el);
  }
  return { ...(meta !== undefined && { meta }), data: required(data, "Data", el) };
}

function parseChal(el: Element, ctx: Context): Chal {
  let meta: Meta | undefined;
  for (const c of elementChildren(el)) {
    if (isSyncML(c) && c.name === "Meta") meta = once(meta, c, (e) => parseMeta(e, ctx));
    else throw unknown(c, el);
  }
  return { meta: required(meta, "Meta", el) };
}

type MutableMeta = { -readonly [K in keyof Meta]: Meta[K] };

function parseMeta(el: Element, ctx: Context): Meta {
  const m = parseMetInf(el);
  if (ctx.encoding === "wbxml" && m.type !== undefined) {
    const embedded = EMBEDDED_TYPES.get(m.type);
    if (embedded !== undefined) m.type = embedded.xmlType;
  }
  return m;
}

function parseMetInf(el: Element): MutableMeta {
  const m: MutableMeta = {};
  for (const c of elementChildren(el)) {
    // MetInf 1.2 may wrap its elements in <MetInf>; read through it.
    if (c.name === "MetInf") {
      const inner = parseMetInf(c);
      for (const key of Object.keys(inner) as (keyof MutableMeta)[]) {
        if (m[key] !== undefined) throw duplicate(c);
      }
      Object.assign(m, inner);
      continue;
    }
    switch (c.name) {
      case "Format":
        m.format = once(m.format, c, textOf);
        break;
      case "Type":
        m.type = once(m.type, c, textOf);
        break;
      case "Mark":
        m.mark = once(m.mark, c, textOf);
        break;
      case "Size":
        m.size = once(m.size, c, textOf);
        break;
      case "Anchor":
        m.anchor = once(m.anchor, c, parseAnchor);
        break;
      case "Version":
        m.version = once(m.version, c, textOf);
        break;
      case "NextNonce":
        m.nextNonce = once(m.nextNonce, c, textOf);
        break;
      case "MaxMsgSize":
        m.maxMsgSize = once(m.maxMsgSize, c, textOf);
        break;
      case "MaxObjSize":
        m.maxObjSize = once(m.maxObjSize, c, textOf);
        break;
      case "EMI":
        m.emi = [...(m.emi ?? []), textOf(c)];
        break;
      case "Mem":
        m.mem = once(m.mem, c, parseMem);
        break;
      case "FieldLevel":
        m.fieldLevel = once(m.fieldLevel, c, flag);
        break;
      default:
        throw unknown(c, el);
    }
  }
  return m;
}

function parseAnchor(el: Element): NonNullable<Meta["anchor"]> {
  let last: string | undefined;
  let next: string | undefined;
  for (const c of elementChildren(el)) {
    if (c.name === "Last") last = once(last, c, textOf);
    else if (c.name === "Next") next = once(next, c, textOf);
    else throw unknown(c, el);
  }
  return { ...(last !== undefined && { last }), ...(next !== undefined && { next }) };
}

function parseMem(el: Element): NonNullable<Meta["mem"]> {
  let sharedMem: boolean | undefined;
  let freeMem: string | undefined;
  let freeId: string | undefined;
  for (const c of elementChildren(el)) {
    if (c.name === "SharedMem") sharedMem = once(sharedMem, c, flag);
    else if (c.name === "FreeMem") freeMem = once(freeMem, c, textOf);
    else if (c.name === "FreeID") freeId = once(freeId, c, textOf);
    else throw unknown(c, el);
  }
  return {
    ...(sharedMem !== undefined && { sharedMem }),
    ...(freeMem !== undefined && { freeMem }),
    ...(freeId !== undefined && { freeId }),
  };
}

// ---- helpers ----

function isSyncML(el: Element): boolean {
  const ns = el.namespace;
  // <Meta xmlns="syncml:metinf"> declares the MetInf namespace once for its children (RepPro 1.2
  // allows either form); the Meta element itself then sits in that namespace too.
  return ns === NS_SYNCML_12 || ns === NS_SYNCML_11 || ns === "" || (ns === NS_METINF && el.name === "Meta");
}

function expectSyncML(el: Element, name: string): void {
  if (el.name !== name || !isSyncML(el)) {
    throw new GatewayError(
      `root element is <${el.name}> in "${el.namespace}", not a SyncML message`,
      ErrorCode.Codec_UnknownElement,
      {
        context: { element: el.name, namespace: el.namespace },
      },
    );
  }
}

function isBlank(n: Node): boolean {
  if (typeof n !== "string") return false;
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

/** The element children of a container; whitespace between them is ignored, other text refused. */
function elementChildren(el: Element): Element[] {
  const out: Element[] = [];
  for (const c of el.children) {
    if (isElement(c)) out.push(c);
    else if (!isBlank(c)) throw structure(`<${el.name}> holds text where only elements belong`, el);
  }
  return out;
}

/** The text of a leaf element: text pieces joined; OPAQUE read as UTF-8; elements refused. */
function textOf(el: Element): string {
  if (el.children.length === 1 && typeof el.children[0] === "string") return el.children[0];
  let s = "";
  for (const c of el.children) {
    if (typeof c === "string") s += c;
    else if (c instanceof Uint8Array) s += utf8(c, el);
    else throw structure(`<${el.name}> holds an element <${c.name}> where text belongs`, el);
  }
  return s;
}

function utf8(bytes: Uint8Array, el: Element): string {
  try {
    return UTF8.decode(bytes);
  } catch (cause) {
    throw new GatewayError(
      `<${el.name}> holds bytes that are not UTF-8 text`,
      ErrorCode.Codec_InvalidEncoding,
      {
        cause,
        context: { element: el.name },
      },
    );
  }
}

/** Empty elements used as flags (Final, MoreData, NoResp, SharedMem, FieldLevel). */
function flag(el: Element): boolean {
  if (el.children.some((c) => !isBlank(c))) throw structure(`<${el.name}> must be empty`, el);
  return true;
}

function once<T>(current: T | undefined, el: Element, read: (el: Element) => T): T {
  if (current !== undefined) throw duplicate(el);
  return read(el);
}

function duplicate(el: Element): GatewayError {
  return structure(`<${el.name}> appears more than once`, el);
}

function required<T>(value: T | undefined, name: string, parent: Element): T {
  if (value === undefined) throw missing(name, parent);
  return value;
}

function missing(name: string, parent: Element): GatewayError {
  return new GatewayError(`<${parent.name}> lacks its required <${name}>`, ErrorCode.Codec_InvalidStructure, {
    context: { element: parent.name, missing: name },
  });
}

function unknown(el: Element, parent: Element): GatewayError {
  return new GatewayError(
    `<${el.name}>${el.namespace === "" ? "" : ` (${el.namespace})`} is not allowed in <${parent.name}> in SyncML DM`,
    ErrorCode.Codec_UnknownElement,
    { context: { element: el.name, parent: parent.name, namespace: el.namespace } },
  );
}

function structure(message: string, el: Element): GatewayError {
  return new GatewayError(message, ErrorCode.Codec_InvalidStructure, { context: { element: el.name } });
}
