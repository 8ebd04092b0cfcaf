/**
 * Typed SyncML DM message -> element tree, children in SyncML RepPro 1.2 DTD order. The target
 * encoding matters only for embedded documents in Data (TNDS, DevInf): inline elements in XML, an
 * OPAQUE nested WBXML document in WBXML, with the Item's Meta Type switched to the matching
 * `+xml` / `+wbxml` form (as libwbxml does).
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import { NS_DEVINF, NS_DMDDF_12, NS_METINF, NS_SYNCML_11, NS_SYNCML_12 } from "./constants.js";
import type { Element, Node } from "./element.js";
import { EMBEDDED_TYPES } from "./message-from-element.js";
import type { Command, Cred, Data, Item, Location, Meta, SyncMLMessage, XmlElement } from "./model.js";
import { encodeWbxmlDocument } from "./wbxml-encode.js";
import { DEVINF_11, DEVINF_12, DMDDF_12, type WbxmlLanguage } from "./wbxml-languages.js";
import type { Encoding } from "./model.js";

const XML_TYPE_TO_WBXML: ReadonlyMap<string, string> = new Map(
  [...EMBEDDED_TYPES].map(([wbxmlType, v]) => [v.xmlType, wbxmlType]),
);

interface Builder {
  readonly ns: string;
  readonly encoding: Encoding;
  readonly version: SyncMLMessage["version"];
}

export function messageToElement(msg: SyncMLMessage, encoding: Encoding): Element {
  const b: Builder = {
    ns: msg.version === "1.1" ? NS_SYNCML_11 : NS_SYNCML_12,
    encoding,
    version: msg.version,
  };
  const h = msg.hdr;
  const hdr: Node[] = [
    leaf(b, "VerDTD", h.verDTD),
    leaf(b, "VerProto", h.verProto),
    leaf(b, "SessionID", h.sessionId),
    leaf(b, "MsgID", h.msgId),
    location(b, "Target", h.target),
    location(b, "Source", h.source),
  ];
  if (h.respUri !== undefined) hdr.push(leaf(b, "RespURI", h.respUri));
  if (h.noResp === true) hdr.push(empty(b, "NoResp"));
  if (h.cred !== undefined) hdr.push(cred(b, h.cred));
  if (h.meta !== undefined) hdr.push(meta(b, h.meta));
  const body: Node[] = msg.body.commands.map((c) => command(b, c));
  if (msg.body.final) body.push(empty(b, "Final"));
  return el(b, "SyncML", [el(b, "SyncHdr", hdr), el(b, "SyncBody", body)]);
}

function command(b: Builder, c: Command): Element {
  const out: Node[] = [leaf(b, "CmdID", c.cmdId)];
  switch (c.kind) {
    case "Add":
    case "Copy":
    case "Delete":
    case "Get":
    case "Replace":
      if (c.noResp === true) out.push(empty(b, "NoResp"));
      if (c.cred !== undefined) out.push(cred(b, c.cred));
      if (c.meta !== undefined) out.push(meta(b, c.meta));
      for (const i of c.items) out.push(item(b, i));
      break;
    case "Alert":
      if (c.noResp === true) out.push(empty(b, "NoResp"));
      if (c.cred !== undefined) out.push(cred(b, c.cred));
      if (c.data !== undefined) out.push(leaf(b, "Data", c.data));
      if (c.correlator !== undefined) out.push(leaf(b, "Correlator", c.correlator));
      for (const i of c.items) out.push(item(b, i));
      break;
    case "Exec":
      if (c.noResp === true) out.push(empty(b, "NoResp"));
      if (c.cred !== undefined) out.push(cred(b, c.cred));
      if (c.meta !== undefined) out.push(meta(b, c.meta));
      if (c.correlator !== undefined) out.push(leaf(b, "Correlator", c.correlator));
      for (const i of c.items) out.push(item(b, i));
      break;
    case "Atomic":
    case "Sequence":
      if (c.noResp === true) out.push(empty(b, "NoResp"));
      if (c.meta !== undefined) out.push(meta(b, c.meta));
      for (const inner of c.commands) out.push(command(b, inner));
      break;
    case "Status":
      out.push(leaf(b, "MsgRef", c.msgRef), leaf(b, "CmdRef", c.cmdRef), leaf(b, "Cmd", c.cmd));
      for (const r of c.targetRefs) out.push(leaf(b, "TargetRef", r));
      for (const r of c.sourceRefs) out.push(leaf(b, "SourceRef", r));
      if (c.cred !== undefined) out.push(cred(b, c.cred));
      if (c.chal !== undefined) out.push(el(b, "Chal", [meta(b, c.chal.meta)]));
      out.push(leaf(b, "Data", c.data));
      for (const i of c.items) out.push(item(b, i));
      break;
    case "Results":
      if (c.msgRef !== undefined) out.push(leaf(b, "MsgRef", c.msgRef));
      out.push(leaf(b, "CmdRef", c.cmdRef));
      if (c.meta !== undefined) out.push(meta(b, c.meta));
      for (const r of c.targetRefs) out.push(leaf(b, "TargetRef", r));
      for (const r of c.sourceRefs) out.push(leaf(b, "SourceRef", r));
      for (const i of c.items) out.push(item(b, i));
      break;
  }
  return el(b, c.kind, out);
}

function item(b: Builder, i: Item): Element {
  const out: Node[] = [];
  if (i.target !== undefined) out.push(location(b, "Target", i.target));
  if (i.source !== undefined) out.push(location(b, "Source", i.source));
  if (i.meta !== undefined) out.push(meta(b, i.meta));
  if (i.data !== undefined) out.push(data(b, i.data));
  if (i.moreData === true) out.push(empty(b, "MoreData"));
  return el(b, "Item", out);
}

function data(b: Builder, d: Data): Element {
  switch (d.kind) {
    case "text":
      return el(b, "Data", d.text.length > 0 ? [d.text] : []);
    case "opaque":
      return el(b, "Data", [d.bytes]);
    case "element":
      if (b.encoding === "xml") return el(b, "Data", [fromXmlElement(d.element)]);
      return el(b, "Data", [encodeWbxmlDocument(fromXmlElement(d.element), embeddedLanguage(d.element, b))]);
  }
}

function embeddedLanguage(e: XmlElement, b: Builder): WbxmlLanguage {
  if (e.namespace === NS_DMDDF_12) return DMDDF_12;
  if (e.namespace === NS_DEVINF) return b.version === "1.1" ? DEVINF_11 : DEVINF_12;
  throw new GatewayError(
    `embedded <${e.name}> of namespace "${e.namespace}" has no WBXML code page (TNDS and DevInf do)`,
    ErrorCode.Codec_EncodeFailed,
    { context: { element: e.name, namespace: e.namespace } },
  );
}

function fromXmlElement(e: XmlElement): Element {
  return {
    name: e.name,
    namespace: e.namespace,
    children: e.children.map((c) => (typeof c === "string" ? c : fromXmlElement(c))),
  };
}

function location(b: Builder, name: "Target" | "Source", l: Location): Element {
  const out: Node[] = [leaf(b, "LocURI", l.locUri)];
  if (l.locName !== undefined) out.push(leaf(b, "LocName", l.locName));
  return el(b, name, out);
}

function cred(b: Builder, c: Cred): Element {
  const out: Node[] = [];
  if (c.meta !== undefined) out.push(meta(b, c.meta));
  out.push(leaf(b, "Data", c.data));
  return el(b, "Cred", out);
}

function meta(b: Builder, m: Meta): Element {
  const out: Node[] = [];
  const mi = (name: string, value: string | undefined): void => {
    if (value !== undefined) out.push(metinf(name, value.length > 0 ? [value] : []));
  };
  mi("Format", m.format);
  // In WBXML a TNDS or DevInf document travels as WBXML, so its type names the +wbxml form wherever
  // it appears (Item or command Meta), as libwbxml writes it.
  const wbxmlType =
    b.encoding === "wbxml" && m.type !== undefined ? XML_TYPE_TO_WBXML.get(m.type) : undefined;
  mi("Type", wbxmlType ?? m.type);
  mi("Mark", m.mark);
  mi("Size", m.size);
  if (m.anchor !== undefined) {
    const a: Node[] = [];
    if (m.anchor.last !== undefined) a.push(metinf("Last", [m.anchor.last]));
    if (m.anchor.next !== undefined) a.push(metinf("Next", [m.anchor.next]));
    out.push(metinf("Anchor", a));
  }
  mi("Version", m.version);
  mi("NextNonce", m.nextNonce);
  mi("MaxMsgSize", m.maxMsgSize);
  mi("MaxObjSize", m.maxObjSize);
  for (const e of m.emi ?? []) mi("EMI", e);
  if (m.mem !== undefined) {
    const mem: Node[] = [];
    if (m.mem.sharedMem === true) mem.push(metinf("SharedMem", []));
    if (m.mem.freeMem !== undefined) mem.push(metinf("FreeMem", [m.mem.freeMem]));
    if (m.mem.freeId !== undefined) mem.push(metinf("FreeID", [m.mem.freeId]));
    out.push(metinf("Mem", mem));
  }
  if (m.fieldLevel === true) out.push(metinf("FieldLevel", []));
  return el(b, "Meta", out);
}

function metinf(name: string, children: Node[]): Element {
  return { name, namespace: NS_METINF, children };
}

function el(b: Builder, name: string, children: Node[]): Element {
  return { name, namespace: b.ns, children };
}

function leaf(b: Builder, name: string, text: string): Element {
  return el(b, name, text.length > 0 ? [text] : []);
}

function empty(b: Builder, name: string): Element {
  return el(b, name, []);
}
