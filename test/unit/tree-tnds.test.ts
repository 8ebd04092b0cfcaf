import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import {
  NS_DMDDF_12,
  StatusCode,
  decodeMessage,
  encodeMessage,
  type ItemCommand,
  type XmlElement,
  type XmlNode,
} from "../../src/syncml/index.js";
import {
  DEFAULT_TNDS_PROPERTIES,
  nodesToTnds,
  selectedTndsProperties,
  tndsFromWbxml,
  tndsFromXml,
  tndsToNodes,
  tndsToWbxml,
  tndsToXml,
  type TndsNode,
  type TndsSelection,
} from "../../src/tree/tnds.js";
import { NODE_FORMATS } from "../../src/tree/types.js";
import { TNDS_SELECTABLE } from "../../src/tree/uri.js";
import { requireLibwbxml, wbxml2xml, xml2wbxml } from "../helpers/libwbxml.js";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/tnds");
const fixture = (name: string): Buffer => readFileSync(path.join(FIXTURES, name));

/** Every property, so that a round trip keeps everything a TndsNode holds. */
const ALL: TndsSelection = { mode: "+", names: TNDS_SELECTABLE };

/** 0x00..0x3F, the bytes the fixture's bin value encodes. */
const CERT = Uint8Array.from({ length: 64 }, (_, i) => i);

/** What test/fixtures/tnds/all-formats.xml describes, parents first. */
const ALL_FORMATS: readonly TndsNode[] = [
  {
    path: "./Vendor/Example/Gateway",
    format: "node",
    type: "urn:example:mo:gateway:1.0",
    acl: "Get=*&Replace=dm.example.com",
    title: "Edge gateway",
    tstamp: "20250101T120000Z",
    verNo: 7,
  },
  {
    path: "./Vendor/Example/Gateway/Cert",
    format: "bin",
    type: "application/octet-stream",
    size: 64,
    value: CERT,
  },
  { path: "./Vendor/Example/Gateway/Key", format: "b64", type: "text/plain", value: "c2VjcmV0" },
  { path: "./Vendor/Example/Gateway/Enabled", format: "bool", type: "text/plain", acl: "", value: "true" },
  {
    path: "./Vendor/Example/Gateway/Label",
    format: "chr",
    type: "text/plain",
    title: "Étiquette",
    verNo: 65535,
    value: "Hall B & C, rack 4",
  },
  { path: "./Vendor/Example/Gateway/Port", format: "int", type: "text/plain", value: "3128" },
  { path: "./Vendor/Example/Gateway/Ratio", format: "float", type: "text/plain", value: "0.75" },
  { path: "./Vendor/Example/Gateway/Day", format: "date", type: "text/plain", value: "2025-01-01" },
  { path: "./Vendor/Example/Gateway/Time", format: "time", type: "text/plain", value: "12:00:00" },
  { path: "./Vendor/Example/Gateway/Nothing", format: "null", type: "text/plain" },
  { path: "./Vendor/Example/Gateway/Doc", format: "xml", type: "text/xml", value: '<a x="1">b</a>' },
  { path: "./Vendor/Example/Gateway/Sub", format: "node" },
  { path: "./Vendor/Example/Gateway/Sub/Leaf", format: "chr", type: "text/plain", value: "" },
];

function nodesOf(doc: XmlElement, base = "./Elsewhere"): TndsNode[] {
  const r = tndsToNodes(doc, base);
  assert.ok(r.ok, r.ok ? "" : `refused with ${r.status}: ${r.reason}`);
  return r.nodes;
}

function refusal(doc: XmlElement, base = "./Base", maxDepth?: number): { status: number; reason: string } {
  const r = tndsToNodes(doc, base, maxDepth);
  assert.ok(!r.ok, "expected the document to be refused");
  return { status: r.status, reason: r.reason };
}

function xmlDoc(body: string, ns = NS_DMDDF_12): XmlElement {
  return tndsFromXml(`<MgmtTree xmlns="${ns}"><VerDTD>1.2</VerDTD>${body}</MgmtTree>`);
}

/** The names of an element's element children, in order. */
function childNames(el: XmlElement): string[] {
  return el.children.filter((c): c is XmlElement => typeof c !== "string").map((c) => c.name);
}

function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c): c is XmlElement => typeof c !== "string" && c.name === name);
}

/** Every element of the tree, depth-first. */
function* walk(el: XmlElement): Generator<XmlElement> {
  yield el;
  for (const c of el.children) if (typeof c !== "string") yield* walk(c);
}

function text(el: XmlElement | undefined): string {
  return (el?.children ?? []).filter((c: XmlNode): c is string => typeof c === "string").join("");
}

describe("TNDS: reading (tndsToNodes)", () => {
  it("reads a subtree with every format and property into nodes, parents first", () => {
    assert.deepEqual(nodesOf(tndsFromXml(fixture("all-formats.xml"))), ALL_FORMATS);
  });

  it("decodes a bin Value from Base64 into exact bytes and keeps a b64 Value as its text", () => {
    const nodes = nodesOf(
      xmlDoc(
        `<Node><NodeName>B</NodeName><RTProperties><Format><bin/></Format></RTProperties>` +
          `<Value> /wAB\n  gA== </Value></Node>` +
          `<Node><NodeName>T</NodeName><RTProperties><Format><b64/></Format></RTProperties>` +
          `<Value>/wABgA==</Value></Node>`,
      ),
    );
    const bin = nodes[0]?.value;
    assert.ok(bin instanceof Uint8Array);
    assert.deepEqual([...bin], [0xff, 0x00, 0x01, 0x80]);
    assert.equal(nodes[1]?.value, "/wABgA==");
  });

  it("places a top-level Node without Path under the base path, and nests its children", () => {
    assert.deepEqual(nodesOf(tndsFromXml(fixture("add-relative.xml")), "./Apps"), [
      { path: "./Apps/Mail", format: "node", type: "com.example.dm/1.0/Mail" },
      { path: "./Apps/Mail/Inbound", format: "node" },
      { path: "./Apps/Mail/Inbound/Server", format: "chr", type: "text/plain", value: "imap.example.com" },
      { path: "./Apps/Mail/Inbound/User", format: "chr", type: "text/plain", value: "alice" },
    ]);
  });

  it("gives a top-level Node with an empty NodeName the base path itself (TND 8.5.4.1.6)", () => {
    const nodes = nodesOf(
      xmlDoc("<Node><NodeName/><Node><NodeName>X</NodeName><Value>1</Value></Node></Node>"),
      "./A/New",
    );
    assert.deepEqual(
      nodes.map((n) => n.path),
      ["./A/New", "./A/New/X"],
    );
  });

  it("builds URIs from Path (relative, ./-rooted, trailing /) and moves parents before children", () => {
    assert.deepEqual(nodesOf(tndsFromXml(fixture("path-continuation.xml"))), [
      { path: "./Vendor", format: "node" },
      { path: "./Vendor/ISP", format: "node" },
      { path: "./Vendor/ISP/GWInfo", format: "node" },
      { path: "./Vendor/ISP/GWInfo/GWName", format: "chr", value: "gw.example.net" },
    ]);
  });

  it("infers a missing Format: child Nodes or nothing -> node, a Value or a MIME Type -> chr", () => {
    const nodes = nodesOf(
      xmlDoc(
        "<Node><NodeName>I</NodeName><Node><NodeName>V</NodeName><Value>x</Value></Node>" +
          "<Node><NodeName>M</NodeName><RTProperties><Type><MIME>text/plain</MIME></Type></RTProperties></Node>" +
          "<Node><NodeName>E</NodeName></Node></Node>",
      ),
    );
    assert.deepEqual(
      nodes.map((n) => [n.path, n.format]),
      [
        ["./Elsewhere/I", "node"],
        ["./Elsewhere/I/V", "chr"],
        ["./Elsewhere/I/M", "chr"],
        ["./Elsewhere/I/E", "node"],
      ],
    );
  });

  it("escapes node names in paths as uri.ts does (a ? in a NodeName)", () => {
    assert.equal(nodesOf(xmlDoc("<Node><NodeName>a?b</NodeName></Node>"), "./X")[0]?.path, "./X/a%3Fb");
  });

  it("reads the inline TNDS of a DM Add the same after the message goes through WBXML", () => {
    const xml = fixture("../syncml/server-add-tnds-compact.xml");
    const dataOf = (bytes: Uint8Array): XmlElement => {
      const add = decodeMessage(bytes).message.body.commands.find((c) => c.kind === "Add") as ItemCommand;
      const data = add.items[0]?.data;
      assert.ok(data?.kind === "element");
      return data.element;
    };
    const fromXml = nodesOf(dataOf(xml), "./Vendor/Example/Proxy");
    const wbxml = encodeMessage(decodeMessage(xml).message, "wbxml");
    assert.deepEqual(nodesOf(dataOf(wbxml), "./Vendor/Example/Proxy"), fromXml);
    assert.deepEqual(
      fromXml.map((n) => [n.path, n.format, n.value]),
      [
        ["./Vendor/Example/Proxy", "node", undefined],
        ["./Vendor/Example/Proxy/Host", "chr", "proxy.example.net"],
        ["./Vendor/Example/Proxy/Port", "int", "3128"],
        ["./Vendor/Example/Proxy/Enabled", "bool", "true"],
      ],
    );
  });
});

describe("TNDS: malformed documents are refused with a status", () => {
  const node = (inner: string): string => `<Node><NodeName>N</NodeName>${inner}</Node>`;
  const leafProps = (props: string): string => node(`<RTProperties>${props}</RTProperties><Value>v</Value>`);
  const cases: readonly {
    readonly what: string;
    readonly doc: () => XmlElement;
    readonly status: number;
    /** The reason must name the rule that fired, not some other flaw of the document. */
    readonly match: RegExp;
  }[] = [
    {
      what: "a root other than MgmtTree",
      doc: () => tndsFromXml(`<MgmtTre xmlns="${NS_DMDDF_12}"><VerDTD>1.2</VerDTD>${node("")}</MgmtTre>`),
      status: 400,
      match: /root is <MgmtTre>/,
    },
    {
      what: "MgmtTree without a namespace",
      doc: () => xmlDoc(node(""), ""),
      status: 400,
      match: /in "", not/,
    },
    {
      what: "MgmtTree in the SyncML namespace",
      doc: () => xmlDoc(node(""), "SYNCML:SYNCML1.2"),
      status: 400,
      match: /in "SYNCML:SYNCML1\.2"/,
    },
    {
      what: "no VerDTD",
      doc: () => tndsFromXml(`<MgmtTree xmlns="${NS_DMDDF_12}">${node("")}</MgmtTree>`),
      status: 400,
      match: /<Node> before <VerDTD>/,
    },
    {
      what: "a VerDTD that is not a version",
      doc: () => tndsFromXml(`<MgmtTree xmlns="${NS_DMDDF_12}"><VerDTD>x</VerDTD>${node("")}</MgmtTree>`),
      status: 400,
      match: /not a version number/,
    },
    {
      what: "a VerDTD of another major version",
      doc: () => tndsFromXml(`<MgmtTree xmlns="${NS_DMDDF_12}"><VerDTD>2.0</VerDTD>${node("")}</MgmtTree>`),
      status: StatusCode.DtdVersionNotSupported,
      match: /VerDTD 2\.0/,
    },
    { what: "no Node (the DTD says Node+)", doc: () => xmlDoc(""), status: 400, match: /has no <Node>/ },
    {
      what: "an unknown element in Node",
      doc: () => xmlDoc(node("<Foo/>")),
      status: 400,
      match: /unknown element <Foo> in <Node>/,
    },
    {
      what: "DFProperties (DDF, not TNDS) in Node",
      doc: () => xmlDoc(node("<DFProperties><AccessType><Get/></AccessType></DFProperties>")),
      status: 400,
      match: /unknown element <DFProperties>/,
    },
    {
      what: "an unknown element in RTProperties",
      doc: () => xmlDoc(leafProps("<Colour/>")),
      status: 400,
      match: /unknown element <Colour> in <RTProperties>/,
    },
    {
      what: "an unknown element in MgmtTree",
      doc: () => xmlDoc(`${node("")}<Extra/>`),
      status: 400,
      match: /unknown element <Extra> in <MgmtTree>/,
    },
    {
      what: "an element of another namespace",
      doc: () => xmlDoc(node('<Value xmlns="urn:other">v</Value>')),
      status: 400,
      match: /namespace "urn:other"/,
    },
    {
      what: "Value and child Nodes together",
      doc: () => xmlDoc(node("<Value>v</Value><Node><NodeName>C</NodeName></Node>")),
      status: 400,
      match: /both a <Value> and child <Node>s/,
    },
    {
      what: "a Node without NodeName",
      doc: () => xmlDoc("<Node><Value>v</Value></Node>"),
      status: 400,
      match: /no <NodeName>/,
    },
    {
      what: "an empty NodeName on a nested Node",
      doc: () => xmlDoc(node("<Node><NodeName></NodeName><Value>v</Value></Node>")),
      status: 400,
      match: /empty <NodeName>/,
    },
    {
      what: "an empty NodeName with a Path",
      doc: () => xmlDoc("<Node><NodeName/><Path>./A</Path></Node>"),
      status: 400,
      match: /empty <NodeName>/,
    },
    {
      what: "a NodeName with a /",
      doc: () => xmlDoc("<Node><NodeName>a/b</NodeName></Node>"),
      status: 400,
      match: /is not a node name/,
    },
    {
      what: "a NodeName of ..",
      doc: () => xmlDoc("<Node><NodeName>..</NodeName></Node>"),
      status: 400,
      match: /is not a node name/,
    },
    {
      what: "NodeName twice",
      doc: () => xmlDoc(node("<NodeName>M</NodeName>")),
      status: 400,
      match: /<NodeName> repeated/,
    },
    {
      what: "a VerNo that is not a number",
      doc: () => xmlDoc(leafProps("<VerNo>seven</VerNo>")),
      status: 400,
      match: /<VerNo>seven/,
    },
    {
      what: "a VerNo over 65535",
      doc: () => xmlDoc(leafProps("<VerNo>65536</VerNo>")),
      status: 400,
      match: /<VerNo>65536/,
    },
    {
      what: "a negative VerNo",
      doc: () => xmlDoc(leafProps("<VerNo>-1</VerNo>")),
      status: 400,
      match: /<VerNo>-1/,
    },
    {
      what: "a Size over 2^32-1",
      doc: () => xmlDoc(leafProps("<Size>4294967296</Size>")),
      status: 400,
      match: /<Size>4294967296/,
    },
    {
      what: "a Size on an interior node",
      doc: () => xmlDoc(node("<RTProperties><Format><node/></Format><Size>1</Size></RTProperties>")),
      status: 400,
      match: /interior node .* has a <Size>/,
    },
    {
      what: "a Value on an interior node",
      doc: () => xmlDoc(leafProps("<Format><node/></Format>")),
      status: 400,
      match: /interior node .* has a <Value>/,
    },
    {
      what: "child Nodes under a leaf Format",
      doc: () =>
        xmlDoc(
          node("<RTProperties><Format><chr/></Format></RTProperties><Node><NodeName>C</NodeName></Node>"),
        ),
      status: 400,
      match: /Format chr has child <Node>s/,
    },
    {
      what: "an unknown Format",
      doc: () => xmlDoc(leafProps("<Format><str/></Format>")),
      status: 400,
      match: /<str\/>.*not a DM format/,
    },
    {
      what: "a Format naming two formats",
      doc: () => xmlDoc(leafProps("<Format><chr/><int/></Format>")),
      status: 400,
      match: /exactly one format element/,
    },
    {
      what: "an empty Format",
      doc: () => xmlDoc(leafProps("<Format/>")),
      status: 400,
      match: /exactly one format element/,
    },
    {
      what: "a Type with neither MIME nor DDFName",
      doc: () => xmlDoc(leafProps("<Type/>")),
      status: 400,
      match: /<Type> must hold exactly one/,
    },
    {
      what: "a bin Value that is not Base64",
      doc: () =>
        xmlDoc(node("<RTProperties><Format><bin/></Format></RTProperties><Value>not base64!</Value>")),
      status: 400,
      match: /bin value .* not Base64/,
    },
    {
      what: "a b64 Value with bad padding",
      doc: () => xmlDoc(node("<RTProperties><Format><b64/></Format></RTProperties><Value>QUJD=</Value>")),
      status: 400,
      match: /b64 value .* not Base64/,
    },
    {
      what: "text between the elements of a Node",
      doc: () => xmlDoc(node("stray")),
      status: 400,
      match: /holds text where only elements belong/,
    },
    {
      what: "an element inside Value",
      doc: () => xmlDoc(node("<Value><b/></Value>")),
      status: 400,
      match: /<Value> holds an element <b>/,
    },
    {
      what: "two Nodes with one URI",
      doc: () =>
        xmlDoc("<Node><NodeName>N</NodeName></Node><Node><NodeName>N</NodeName><Path>./Base</Path></Node>"),
      status: 400,
      match: /two <Node>s describe \.\/Base\/N/,
    },
    {
      what: "a Path with an empty segment",
      doc: () => xmlDoc("<Node><NodeName>N</NodeName><Path>./A//B</Path></Node>"),
      status: 400,
      match: /empty segment/,
    },
    {
      what: "a Path with a query",
      doc: () => xmlDoc("<Node><NodeName>N</NodeName><Path>./A?list=Struct</Path></Node>"),
      status: 400,
      match: /has a query/,
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.what} with ${c.status}`, () => {
      const r = refusal(c.doc());
      assert.equal(r.status, c.status, r.reason);
      assert.match(r.reason, c.match);
    });
  }

  it("refuses an absolute base path with 400", () => {
    assert.equal(refusal(xmlDoc(node("")), "/OperatorX").status, 400);
  });

  it("refuses Node nesting beyond the depth limit with 413 (default 64, or as given)", () => {
    const nested = (depth: number): XmlElement => {
      let n: XmlElement = { name: "Node", namespace: NS_DMDDF_12, children: [leaf("NodeName", "L")] };
      for (let i = 1; i < depth; i++)
        n = { name: "Node", namespace: NS_DMDDF_12, children: [leaf("NodeName", "N"), n] };
      return { name: "MgmtTree", namespace: NS_DMDDF_12, children: [leaf("VerDTD", "1.2"), n] };
    };
    assert.equal(tndsToNodes(nested(64), ".").ok, true);
    assert.equal(refusal(nested(65), ".").status, StatusCode.RequestEntityTooLarge);
    assert.equal(tndsToNodes(nested(3), ".", 3).ok, true);
    assert.equal(refusal(nested(4), ".", 3).status, StatusCode.RequestEntityTooLarge);
  });
});

function leaf(name: string, value: string): XmlElement {
  return { name, namespace: NS_DMDDF_12, children: [value] };
}

describe("TNDS: writing (nodesToTnds)", () => {
  const ROOT = "./Vendor/Example/Gateway";

  it("round-trips nodes of every format through TNDS, XML and WBXML, bin bytes exact", () => {
    const formats = new Set(ALL_FORMATS.map((n) => n.format));
    assert.deepEqual([...formats].sort(), [...NODE_FORMATS].sort());
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: ROOT, props: ALL });
    assert.deepEqual(nodesOf(doc), ALL_FORMATS);
    assert.deepEqual(nodesOf(tndsFromXml(tndsToXml(doc))), ALL_FORMATS);
    assert.deepEqual(nodesOf(tndsFromWbxml(tndsToWbxml(doc))), ALL_FORMATS);
  });

  it("keeps every byte value of a bin node, and an empty one", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const nodes: TndsNode[] = [
      { path: "./B", format: "node" },
      { path: "./B/All", format: "bin", value: all },
      { path: "./B/None", format: "bin", value: new Uint8Array(0) },
    ];
    const back = nodesOf(tndsFromXml(tndsToXml(nodesToTnds(nodes, { rootPath: "./B" }))));
    assert.deepEqual(back, nodes);
    assert.ok(back[1]?.value instanceof Uint8Array && back[1].value.length === 256);
  });

  it("writes MgmtTree, Node and RTProperties children in DTD order", () => {
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: ROOT, props: ALL, man: "M", mod: "X" });
    assert.equal(doc.namespace, NS_DMDDF_12);
    assert.deepEqual(childNames(doc), ["VerDTD", "Man", "Mod", "Node"]);
    assert.equal(text(child(doc, "VerDTD")), "1.2");
    const gateway = child(doc, "Node");
    assert.ok(gateway !== undefined);
    assert.deepEqual(childNames(gateway).slice(0, 3), ["NodeName", "Path", "RTProperties"]);
    assert.equal(text(child(gateway, "Path")), "./Vendor/Example");
    assert.deepEqual(childNames(child(gateway, "RTProperties") as XmlElement), [
      "ACL",
      "Format",
      "Name",
      "Title",
      "TStamp",
      "Type",
      "VerNo",
    ]);
    const cert = gateway.children[3] as XmlElement;
    assert.deepEqual(childNames(cert), ["NodeName", "RTProperties", "Value"]);
    assert.deepEqual(childNames(child(cert, "RTProperties") as XmlElement), [
      "Format",
      "Name",
      "Size",
      "Type",
    ]);
    for (const e of walk(doc)) assert.equal(e.namespace, NS_DMDDF_12, `<${e.name}> namespace`);
  });

  it("writes Type as DDFName on interior nodes and MIME on leaves", () => {
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: ROOT });
    const types = [...walk(doc)].filter((e) => e.name === "Type").map((e) => childNames(e)[0]);
    assert.equal(types[0], "DDFName");
    assert.ok(types.slice(1).every((t) => t === "MIME"));
  });

  it("writes Format, Type and Value by default (a bare ?list=TNDS)", () => {
    assert.deepEqual([...selectedTndsProperties()], ["Format", "Type", "Value"]);
    assert.deepEqual(DEFAULT_TNDS_PROPERTIES, ["Format", "Type", "Value"]);
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: ROOT });
    const names = new Set([...walk(doc)].map((e) => e.name));
    for (const absent of ["ACL", "Name", "Size", "Title", "TStamp", "VerNo"])
      assert.ok(!names.has(absent), absent);
    const strip = (n: TndsNode): TndsNode => ({
      path: n.path,
      format: n.format,
      ...(n.type === undefined ? {} : { type: n.type }),
      ...(n.value === undefined ? {} : { value: n.value }),
    });
    assert.deepEqual(nodesOf(doc), ALL_FORMATS.map(strip));
  });

  it("writes only the selected properties for ?list=TNDS+ACL+Value", () => {
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: ROOT, props: { mode: "+", names: ["ACL", "Value"] } });
    const names = new Set([...walk(doc)].map((e) => e.name));
    for (const absent of ["Format", "Type", "Name", "Size", "Title", "TStamp", "VerNo"]) {
      assert.ok(!names.has(absent), absent);
    }
    const nodes = nodesOf(doc);
    assert.equal(nodes[0]?.acl, "Get=*&Replace=dm.example.com");
    assert.equal(nodes.find((n) => n.path.endsWith("/Enabled"))?.acl, "");
    assert.equal(nodes.find((n) => n.path.endsWith("/Port"))?.value, "3128");
    // A node with nothing selected to say gets no RTProperties element at all.
    const port = [...walk(doc)].find((e) => e.name === "Node" && text(child(e, "NodeName")) === "Port");
    assert.deepEqual(childNames(port as XmlElement), ["NodeName", "Value"]);
  });

  it("writes all but the named properties for ?list=TNDS-Format", () => {
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: ROOT, props: { mode: "-", names: ["Format"] } });
    const names = new Set([...walk(doc)].map((e) => e.name));
    assert.ok(!names.has("Format"));
    for (const present of ["ACL", "Name", "Size", "Title", "TStamp", "Type", "VerNo", "Value"]) {
      assert.ok(names.has(present), present);
    }
    // Without Format a reader infers it: a bin value is then plain (Base64) text.
    const cert = nodesOf(doc).find((n) => n.path.endsWith("/Cert"));
    assert.equal(cert?.format, "chr");
    assert.equal(cert.value, Buffer.from(CERT).toString("base64"));
  });

  it("writes Name as the node's name and Size on leaves only for ?list=TNDS+Name+Size", () => {
    const doc = nodesToTnds(
      [
        { path: "./R", format: "node", size: 9 },
        { path: "./R/a%3Fb", format: "chr", size: 3, value: "abc" },
      ],
      { rootPath: "./R", props: { mode: "+", names: ["Name", "Size"] } },
    );
    const props = [...walk(doc)].filter((e) => e.name === "RTProperties");
    assert.deepEqual(props.map(childNames), [["Name"], ["Name", "Size"]]);
    assert.deepEqual(
      props.map((p) => text(child(p, "Name"))),
      ["R", "a?b"],
    );
    assert.equal(text(child(props[1] as XmlElement, "Size")), "3");
  });

  it("gives a node whose parent is not in the list its own top-level Node with Path", () => {
    const nodes: TndsNode[] = [
      { path: "./A", format: "node" },
      { path: "./A/Hidden/Seen", format: "chr", value: "x" },
      { path: "./A/B", format: "chr", value: "y" },
    ];
    const doc = nodesToTnds(nodes, { rootPath: "./A" });
    const tops = doc.children.filter((c): c is XmlElement => typeof c !== "string" && c.name === "Node");
    assert.deepEqual(
      tops.map((t) => [text(child(t, "NodeName")), text(child(t, "Path"))]),
      [
        ["A", "."],
        ["Seen", "./A/Hidden"],
      ],
    );
    assert.deepEqual(nodesOf(doc), [nodes[0], nodes[2], nodes[1]]);
  });

  it("serializes the whole tree for rootPath . without the root node itself", () => {
    const nodes: TndsNode[] = [
      { path: ".", format: "node", acl: "Add=*&Get=*" },
      { path: "./DevInfo", format: "node" },
      { path: "./DevInfo/Mod", format: "chr", value: "EDG-200" },
    ];
    const doc = nodesToTnds(nodes, { rootPath: "." });
    assert.deepEqual(nodesOf(doc), nodes.slice(1));
    assert.equal(text(child(child(doc, "Node") as XmlElement, "Path")), ".");
  });

  it("treats inconsistent nodes as programmer errors", () => {
    const root = { path: "./A", format: "node" } as const;
    assert.throws(() => nodesToTnds([], { rootPath: "./A" }), assert.AssertionError);
    assert.throws(
      () => nodesToTnds([root, { path: "./B", format: "chr" }], { rootPath: "./A" }),
      /not under/,
    );
    assert.throws(() => nodesToTnds([{ ...root, value: "x" }], { rootPath: "./A" }), /has a value/);
    assert.throws(
      () =>
        nodesToTnds([root, { path: "./A/C", format: "chr", value: new Uint8Array(1) }], { rootPath: "./A" }),
      /holds bytes/,
    );
    assert.throws(
      () => nodesToTnds([root], { rootPath: "./A", props: { mode: "+", names: ["Colour"] } }),
      /Colour/,
    );
    assert.throws(() => nodesToTnds([{ path: "A", format: "node" }], { rootPath: "A" }), /not canonical/);
  });
});

describe("TNDS: WBXML interop with libwbxml", () => {
  before(() => {
    requireLibwbxml();
  });

  const SELECTIONS: readonly (TndsSelection | undefined)[] = [
    ALL,
    undefined,
    { mode: "+", names: ["ACL", "Value"] },
    { mode: "-", names: ["Format"] },
  ];

  it("writes the same WBXML bytes as xml2wbxml -n -v 1.2 of our XML, for each selection", () => {
    for (const props of SELECTIONS) {
      const doc = nodesToTnds(ALL_FORMATS, {
        rootPath: "./Vendor/Example/Gateway",
        man: "Example Devices Ltd.",
        ...(props === undefined ? {} : { props }),
      });
      const ours = Buffer.from(tndsToWbxml(doc));
      const theirs = xml2wbxml(tndsToXml(doc));
      assert.equal(ours.toString("hex"), theirs.toString("hex"), `selection ${JSON.stringify(props)}`);
    }
  });

  it("names the document by the DM DDF FPI in the string table, tags on code page 2", () => {
    const wbxml = tndsToWbxml(nodesToTnds(ALL_FORMATS, { rootPath: "./Vendor/Example/Gateway" }));
    const fpi = "-//OMA//DTD-DM-DDF 1.2//EN";
    const header = Buffer.concat([
      Buffer.from([0x02, 0x00, 0x00, 0x6a, 0x1b]),
      Buffer.from(fpi),
      Buffer.from([0]),
    ]);
    assert.equal(Buffer.from(wbxml.subarray(0, header.length)).toString("hex"), header.toString("hex"));
    // SWITCH_PAGE 2, then MgmtTree (0x20) with content.
    assert.deepEqual([...wbxml.subarray(header.length, header.length + 3)], [0x00, 0x02, 0x60]);
  });

  it("decodes libwbxml's WBXML of our XML to the same nodes", () => {
    for (const props of [ALL, undefined]) {
      const doc = nodesToTnds(ALL_FORMATS, {
        rootPath: "./Vendor/Example/Gateway",
        ...(props === undefined ? {} : { props }),
      });
      const theirs = xml2wbxml(tndsToXml(doc));
      assert.deepEqual(nodesOf(tndsFromWbxml(theirs)), nodesOf(doc));
    }
    assert.deepEqual(nodesOf(tndsFromWbxml(xml2wbxml(fixture("all-formats.xml")))), ALL_FORMATS);
  });

  it("reads libwbxml's XML (wbxml2xml) of our WBXML to the same nodes", () => {
    const doc = nodesToTnds(ALL_FORMATS, { rootPath: "./Vendor/Example/Gateway", props: ALL });
    assert.deepEqual(nodesOf(tndsFromXml(wbxml2xml(tndsToWbxml(doc)))), ALL_FORMATS);
  });

  it("reads the checked-in libwbxml 0.11.8 WBXML of all-formats.xml to the expected nodes", () => {
    const stored = fixture("all-formats.libwbxml.wbxml");
    assert.deepEqual(nodesOf(tndsFromWbxml(stored)), ALL_FORMATS);
    assert.equal(xml2wbxml(fixture("all-formats.xml")).toString("hex"), stored.toString("hex"));
  });
});

describe("TNDS: WBXML reading details", () => {
  /** A DM DDF WBXML document: header with the FPI, then `body` (tags on page 2). */
  function ddfWbxml(body: readonly number[]): Uint8Array {
    const fpi = Buffer.from("-//OMA//DTD-DM-DDF 1.2//EN\0");
    return Uint8Array.from([0x02, 0x00, 0x00, 0x6a, fpi.length, ...fpi, 0x00, 0x02, ...body]);
  }
  const str = (s: string): number[] => [0x03, ...Buffer.from(s), 0x00];
  // MgmtTree VerDTD Node NodeName RTProperties Format Value (content bit set), bin, chr, END.
  const T = { MgmtTree: 0x60, VerDTD: 0x77, Node: 0x64, NodeName: 0x66, RT: 0x6f, Format: 0x5c, Value: 0x76 };
  const END = 0x01;
  const withValue = (format: number, value: readonly number[]): Uint8Array =>
    ddfWbxml([
      T.MgmtTree,
      T.VerDTD,
      ...str("1.2"),
      END,
      T.Node,
      T.NodeName,
      ...str("V"),
      END,
      T.RT,
      T.Format,
      format,
      END,
      END,
      T.Value,
      ...value,
      END,
      END,
      END,
    ]);

  it("reads a bin Value sent raw as OPAQUE into the same bytes", () => {
    const raw = [0xc3, 0x04, 0xff, 0x00, 0xfe, 0x80];
    const nodes = nodesOf(tndsFromWbxml(withValue(0x09, raw)), "./X");
    assert.deepEqual(nodes, [
      { path: "./X/V", format: "bin", value: Uint8Array.from([0xff, 0x00, 0xfe, 0x80]) },
    ]);
  });

  it("reads OPAQUE text in a chr Value as UTF-8, and refuses OPAQUE that is not UTF-8", () => {
    const nodes = nodesOf(tndsFromWbxml(withValue(0x0b, [0xc3, 0x02, 0xc3, 0xa9])), "./X");
    assert.equal(nodes[0]?.value, "é");
    assert.throws(
      () => tndsFromWbxml(withValue(0x0b, [0xc3, 0x01, 0xff])),
      (e: unknown) => e instanceof GatewayError && e.code === ErrorCode.Codec_InvalidEncoding,
    );
  });

  it("refuses a WBXML document that is not DM DDF with Codec_UnknownDocument", () => {
    const syncml = Uint8Array.from([0x02, 0xa4, 0x01, 0x6a, 0x00, 0x6d, 0x01]);
    assert.throws(
      () => tndsFromWbxml(syncml),
      (e: unknown) => e instanceof GatewayError && e.code === ErrorCode.Codec_UnknownDocument,
    );
  });
});
