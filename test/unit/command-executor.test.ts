import assert from "node:assert/strict";
import { executeCommands, type Reply } from "../../src/dm/command-executor.js";
import {
  MIME_TNDS_XML,
  decodeMessage,
  encodeMessage,
  type AlertCommand,
  type Command,
  type Encoding,
  type ItemCommand,
  type ResultsCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import type { MoPlugin } from "../../src/tree/plugin.js";
import { tndsToNodes, type TndsNode } from "../../src/tree/tnds.js";
import type { DmTree } from "../../src/tree/tree.js";
import {
  OPEN_ACL,
  OTHER,
  SRV,
  clientReply,
  decodeCommands,
  memoryTree,
  plugin,
  runMessage,
  snapshot,
  statusTriples,
  text,
} from "../helpers/tree.js";

const META_NS = `xmlns="syncml:metinf"`;

/** `<Item>` with a Target, optional Meta Format/Type and Data. */
function item(target: string, opts: { format?: string; type?: string; data?: string } = {}): string {
  const meta =
    opts.format === undefined && opts.type === undefined
      ? ""
      : `<Meta>${opts.format === undefined ? "" : `<Format ${META_NS}>${opts.format}</Format>`}${
          opts.type === undefined ? "" : `<Type ${META_NS}>${opts.type}</Type>`
        }</Meta>`;
  const data = opts.data === undefined ? "" : `<Data>${opts.data}</Data>`;
  return `<Item><Target><LocURI>${target}</LocURI></Target>${meta}${data}</Item>`;
}

function cmd(kind: string, cmdId: number, ...items: string[]): string {
  return `<${kind}><CmdID>${cmdId}</CmdID>${items.join("")}</${kind}>`;
}

/**
 * ./A              Get=*&Replace=srv&Add=srv&Delete=srv
 * ./A/b/           interior
 * ./A/b/c          int "2"
 * ./A/hidden       Get=other, with a child
 * ./A/secret       secret "pw"
 * ./A/x            chr "1"
 */
function fixtureTree(plugins: readonly MoPlugin[] = []): DmTree {
  const tree = memoryTree({ rootAcl: OPEN_ACL, plugins });
  tree.write({ path: "./A", format: "node", acl: `Add=${SRV}&Delete=${SRV}&Get=*&Replace=${SRV}` });
  tree.write({ path: "./A/x", format: "chr", value: "1" });
  tree.write({ path: "./A/b", format: "node" });
  tree.write({ path: "./A/b/c", format: "int", value: "2" });
  tree.write({ path: "./A/hidden", format: "node", acl: `Get=${OTHER}` });
  tree.write({ path: "./A/hidden/h", format: "chr", value: "no" });
  tree.write({ path: "./A/secret", format: "chr", value: "pw", secret: true });
  return tree;
}

function onlyResults(results: readonly ResultsCommand[]): ResultsCommand {
  assert.equal(results.length, 1, "one Results");
  return results[0]!;
}

// ==================================================================== Get

describe("executeCommands: Get", () => {
  it("Get ./A/x (leaf) -> Status 200 (CmdRef 3, TargetRef ./A/x) then Results chr '1' with Source", () => {
    const { replies, statuses, results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A/x")));
    assert.deepEqual(
      replies.map((r) => r.kind),
      ["Status", "Results"],
    );
    const s = statuses[0]!;
    assert.deepEqual(
      [s.cmdRef, s.cmd, s.msgRef, s.targetRefs, s.sourceRefs, s.data],
      ["3", "Get", "2", ["./A/x"], [], "200"],
    );
    const r = onlyResults(results);
    assert.deepEqual([r.cmdRef, r.msgRef], ["3", "2"]);
    assert.deepEqual(r.items, [
      { source: { locUri: "./A/x" }, meta: { format: "chr" }, data: { kind: "text", text: "1" } },
    ]);
    assert.notEqual(r.cmdId, s.cmdId, "every reply has its own CmdID");
  });

  it("Get ./A/b (interior) -> Results Format node, Data 'c'", () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A/b")));
    assert.deepEqual(onlyResults(results).items, [
      { source: { locUri: "./A/b" }, meta: { format: "node" }, data: { kind: "text", text: "c" } },
    ]);
  });

  it("Get ./A (interior) -> child list in name order, hidden children included (names only)", () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A")));
    assert.deepEqual(onlyResults(results).items[0]?.data, { kind: "text", text: "b/hidden/secret/x" });
  });

  it("Get ./A?prop=ACL -> Results chr with the ACL text", () => {
    const { statuses, results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A?prop=ACL")));
    assert.equal(statuses[0]?.data, "200");
    assert.deepEqual(onlyResults(results).items, [
      {
        source: { locUri: "./A?prop=ACL" },
        meta: { format: "chr" },
        data: { kind: "text", text: `Add=${SRV}&Delete=${SRV}&Get=*&Replace=${SRV}` },
      },
    ]);
  });

  const failures: [string, string][] = [
    ["./A/missing", "404"],
    ["./A/secret", "405"],
    ["./A/hidden", "425"],
    ["./A?prop=Foo", "406"],
    ["./A?list=Foo", "406"],
    ["./A//x", "400"],
  ];
  for (const [uri, code] of failures) {
    it(`Get ${uri} -> Status ${code}, no Results`, () => {
      const { statuses, results } = runMessage(fixtureTree(), cmd("Get", 3, item(uri)));
      assert.deepEqual(statusTriples(statuses), [["3", "Get", code]]);
      assert.deepEqual(statuses[0]?.targetRefs, [uri]);
      assert.equal(results.length, 0);
    });
  }

  it("Get with two Items (200 and 404) -> one Status per Item, one Results for the found one", () => {
    const { statuses, results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A/x"), item("./A/nope")));
    assert.deepEqual(
      statuses.map((s) => [s.targetRefs[0], s.data]),
      [
        ["./A/x", "200"],
        ["./A/nope", "404"],
      ],
    );
    assert.equal(onlyResults(results).items[0]?.source?.locUri, "./A/x");
  });

  it("Get ./A?list=StructData -> one Item per readable node; Data on leaves only; no hidden or secret data", () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A?list=StructData")));
    const r = onlyResults(results);
    assert.deepEqual(
      r.items.map((i) => [i.source?.locUri, i.meta?.format, i.data]),
      [
        ["./A", "node", undefined],
        ["./A/b", "node", undefined],
        ["./A/b/c", "int", { kind: "text", text: "2" }],
        ["./A/secret", "chr", undefined], // a secret leaf carries no Data at all (not an empty value)
        ["./A/x", "chr", { kind: "text", text: "1" }],
      ],
    );
    assert.ok(!JSON.stringify(r).includes("pw"));
  });

  it("Get ./A?list=Struct -> the same nodes, no Data at all", () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A?list=Struct")));
    const r = onlyResults(results);
    assert.deepEqual(
      r.items.map((i) => i.source?.locUri),
      ["./A", "./A/b", "./A/b/c", "./A/secret", "./A/x"],
    );
    assert.ok(r.items.every((i) => i.data === undefined));
  });

  it("Get ./A?list=TNDS -> Results Meta Type dmtnds+xml, element Data with the readable subtree", () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A?list=TNDS")));
    const r = onlyResults(results);
    const it0 = r.items[0]!;
    assert.equal(it0.meta?.type, MIME_TNDS_XML);
    assert.equal(it0.meta.format, "xml");
    assert.equal(it0.source?.locUri, "./A?list=TNDS");
    assert.ok(it0.data !== undefined && it0.data.kind === "element");
    assert.equal(it0.data.element.name, "MgmtTree");
    const decoded = tndsToNodes(it0.data.element, ".");
    assert.ok(decoded.ok);
    assert.deepEqual(
      decoded.nodes.map((n: TndsNode) => [n.path, n.format, text(n.value)]),
      [
        ["./A", "node", undefined],
        ["./A/b", "node", undefined],
        ["./A/b/c", "int", "2"],
        ["./A/secret", "chr", undefined],
        ["./A/x", "chr", "1"],
      ],
    );
  });

  it("Get ./A?list=TNDS+ACL -> ACL of every node, no Values", () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A?list=TNDS+ACL")));
    const data = onlyResults(results).items[0]?.data;
    assert.ok(data?.kind === "element");
    const decoded = tndsToNodes(data.element, ".");
    assert.ok(decoded.ok);
    assert.equal(
      decoded.nodes.find((n) => n.path === "./A")?.acl,
      `Add=${SRV}&Delete=${SRV}&Get=*&Replace=${SRV}`,
    );
    assert.ok(decoded.nodes.every((n) => n.value === undefined));
  });

  it(`Get ./A?list=TNDS as ${OTHER} -> the hidden subtree is included`, () => {
    const { results } = runMessage(fixtureTree(), cmd("Get", 3, item("./A?list=TNDS")), { serverId: OTHER });
    const data = onlyResults(results).items[0]?.data;
    assert.ok(data?.kind === "element");
    const decoded = tndsToNodes(data.element, ".");
    assert.ok(decoded.ok);
    assert.ok(decoded.nodes.some((n) => n.path === "./A/hidden/h" && n.value === "no"));
  });
});

// ==================================================================== binary values

describe("executeCommands: binary values (b64 over XML, bin over WBXML)", () => {
  const BYTES = [0, 1, 2, 255];
  const B64 = "AAEC/w==";

  function withBinary(): DmTree {
    const tree = fixtureTree();
    const { statuses } = runMessage(tree, cmd("Add", 3, item("./A/bin", { format: "b64", data: B64 })));
    assert.deepEqual(statusTriples(statuses), [["3", "Add", "200"]]);
    return tree;
  }

  it(`Add Format b64 Data ${B64} -> stored as Format bin, bytes 00 01 02 FF`, () => {
    const node = withBinary().read("./A/bin");
    assert.equal(node?.format, "bin");
    assert.ok(node.value instanceof Uint8Array);
    assert.deepEqual([...node.value], BYTES);
    assert.equal(node.size, 4);
  });

  it("Add Format b64 with Meta on the command (not the Item) -> stored as bin", () => {
    const tree = fixtureTree();
    const body = `<Add><CmdID>3</CmdID><Meta><Format ${META_NS}>b64</Format></Meta>${item("./A/bin", { data: B64 })}</Add>`;
    runMessage(tree, body);
    assert.deepEqual([...(tree.read("./A/bin")?.value as Uint8Array)], BYTES);
  });

  it("Add Format b64 with Data that is not Base64 -> 400, nothing stored", () => {
    const tree = fixtureTree();
    const { statuses } = runMessage(
      tree,
      cmd("Add", 3, item("./A/bin", { format: "b64", data: "not*base64" })),
    );
    assert.equal(statuses[0]?.data, "400");
    assert.equal(tree.read("./A/bin"), undefined);
  });

  it(`Get of the bin leaf in an XML session -> Results Format b64, Data ${B64}, and so in the XML bytes`, () => {
    const { results, replies } = runMessage(withBinary(), cmd("Get", 4, item("./A/bin")), {
      encoding: "xml",
    });
    assert.deepEqual(onlyResults(results).items[0], {
      source: { locUri: "./A/bin" },
      meta: { format: "b64" },
      data: { kind: "text", text: B64 },
    });
    const xml = new TextDecoder().decode(encodeMessage(clientReply(replies), "xml"));
    assert.match(
      xml,
      new RegExp(
        `<Format xmlns="syncml:metinf">b64</Format></Meta><Data>${B64.replace(/\+/g, "\\+")}</Data>`,
      ),
    );
  });

  it("Get of the bin leaf in a WBXML session -> Results Format bin, OPAQUE Data, bytes intact through WBXML", () => {
    const { results, replies } = runMessage(withBinary(), cmd("Get", 4, item("./A/bin")), {
      encoding: "wbxml",
    });
    const first = onlyResults(results).items[0]!;
    assert.equal(first.meta?.format, "bin");
    assert.ok(first.data?.kind === "opaque");
    assert.deepEqual([...first.data.bytes], BYTES);

    const wbxml = encodeMessage(clientReply(replies), "wbxml");
    // OPAQUE (0xC3), length 4, the raw bytes: no Base64 on the wire.
    assert.ok(Buffer.from(wbxml).includes(Buffer.from([0xc3, 4, ...BYTES])), "OPAQUE bytes in the WBXML");
    const back = decodeMessage(wbxml).message.body.commands.find((c) => c.kind === "Results");
    assert.ok(back?.kind === "Results");
    const data = back.items[0]?.data;
    assert.ok(data?.kind === "opaque");
    assert.deepEqual([...data.bytes], BYTES);
    assert.equal(back.items[0]?.meta?.format, "bin");
  });

  it("Add Format bin with OPAQUE Data (a WBXML server message) -> stored bytes", () => {
    const tree = fixtureTree();
    const xmlCommands = decodeCommands(cmd("Add", 3, item("./A/raw", { format: "bin", data: "x" })));
    const add = xmlCommands[0] as ItemCommand;
    const opaqueAdd: ItemCommand = {
      ...add,
      items: [{ ...add.items[0]!, data: { kind: "opaque", bytes: Uint8Array.from([7, 0, 7]) } }],
    };
    const message: SyncMLMessage = {
      ...clientReply([]),
      body: { commands: [opaqueAdd], final: true },
    };
    const decoded = decodeMessage(encodeMessage(message, "wbxml"));
    assert.equal(decoded.encoding, "wbxml");
    let next = 1;
    const replies = tree.transaction(() =>
      executeCommandsFor(tree, decoded.message.body.commands, "wbxml", () => String(next++)),
    );
    assert.equal(replies[0]?.kind === "Status" ? replies[0].data : undefined, "200");
    assert.deepEqual([...(tree.read("./A/raw")?.value as Uint8Array)], [7, 0, 7]);
    assert.equal(tree.read("./A/raw")?.format, "bin");
  });
});

function executeCommandsFor(
  tree: DmTree,
  commands: readonly Command[],
  encoding: Encoding,
  nextCmdId: () => string,
): Reply[] {
  return executeCommands(commands, { tree, serverId: SRV, encoding, msgId: "2", nextCmdId });
}

// ==================================================================== Atomic and Sequence

describe("executeCommands: Atomic (all or nothing)", () => {
  it("Atomic [Add 200, Replace 200, Add 418, Delete] -> 507, 216, 216, 418, 215; the tree unchanged", () => {
    const tree = fixtureTree();
    const before = snapshot(tree);
    const body = `<Atomic><CmdID>3</CmdID>${[
      cmd("Add", 4, item("./A/new", { data: "n" })),
      cmd("Replace", 5, item("./A/x", { data: "changed" })),
      cmd("Add", 6, item("./A/x", { data: "again" })),
      cmd("Delete", 7, item("./A/b")),
    ].join("")}</Atomic>`;
    const { statuses, results } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Atomic", "507"],
      ["4", "Add", "216"],
      ["5", "Replace", "216"],
      ["6", "Add", "418"],
      ["7", "Delete", "215"],
    ]);
    assert.deepEqual(
      statuses[4]?.targetRefs,
      ["./A/b"],
      "the skipped command's Status still names its target",
    );
    assert.equal(results.length, 0);
    assert.deepEqual(snapshot(tree), before);
  });

  it("Atomic [Add, Replace] all succeeding -> 200, 200, 200; the changes are kept", () => {
    const tree = fixtureTree();
    const body = `<Atomic><CmdID>3</CmdID>${cmd("Add", 4, item("./A/new", { data: "n" }))}${cmd(
      "Replace",
      5,
      item("./A/x", { data: "changed" }),
    )}</Atomic>`;
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Atomic", "200"],
      ["4", "Add", "200"],
      ["5", "Replace", "200"],
    ]);
    assert.equal(text(tree.read("./A/new")?.value), "n");
    assert.equal(text(tree.read("./A/x")?.value), "changed");
  });

  it("Atomic [Add with Items ok, 418, ok] -> 507; the successful Items of the failing Add are 216", () => {
    const tree = fixtureTree();
    const before = snapshot(tree);
    const body = `<Atomic><CmdID>3</CmdID>${cmd(
      "Add",
      4,
      item("./A/n1", { data: "1" }),
      item("./A/x", { data: "dup" }),
      item("./A/n2", { data: "2" }),
    )}</Atomic>`;
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(
      statuses.map((s) => [s.cmd, s.targetRefs[0], s.data]),
      [
        ["Atomic", undefined, "507"],
        ["Add", "./A/n1", "216"],
        ["Add", "./A/x", "418"],
        ["Add", "./A/n2", "216"],
      ],
    );
    assert.deepEqual(snapshot(tree), before);
  });

  it("nested Atomic -> the inner Atomic 500, its commands 215, the outer 507; the tree unchanged", () => {
    const tree = fixtureTree();
    const before = snapshot(tree);
    const body = `<Atomic><CmdID>3</CmdID>${cmd("Add", 4, item("./A/n", { data: "1" }))}<Atomic><CmdID>5</CmdID>${cmd(
      "Add",
      6,
      item("./A/m", { data: "2" }),
    )}</Atomic>${cmd("Replace", 7, item("./A/x", { data: "3" }))}</Atomic>`;
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Atomic", "507"],
      ["4", "Add", "216"],
      ["5", "Atomic", "500"],
      ["6", "Add", "215"],
      ["7", "Replace", "215"],
    ]);
    assert.deepEqual(snapshot(tree), before);
  });

  it("Get inside Atomic -> the Get 500, no Results, the Atomic 507, the preceding Add 216", () => {
    const tree = fixtureTree();
    const before = snapshot(tree);
    const body = `<Atomic><CmdID>3</CmdID>${cmd("Add", 4, item("./A/n", { data: "1" }))}${cmd(
      "Get",
      5,
      item("./A/x"),
    )}</Atomic>`;
    const { statuses, results } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Atomic", "507"],
      ["4", "Add", "216"],
      ["5", "Get", "500"],
    ]);
    assert.equal(results.length, 0);
    assert.deepEqual(snapshot(tree), before);
  });

  it("Atomic [Sequence [Add 200, Add 418]] -> 507; the Sequence's success rolled back too", () => {
    const tree = fixtureTree();
    const before = snapshot(tree);
    const body = `<Atomic><CmdID>3</CmdID><Sequence><CmdID>4</CmdID>${cmd("Add", 5, item("./A/n", { data: "1" }))}${cmd(
      "Add",
      6,
      item("./A/x", { data: "dup" }),
    )}</Sequence></Atomic>`;
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Atomic", "507"],
      ["4", "Sequence", "216"],
      ["5", "Add", "216"],
      ["6", "Add", "418"],
    ]);
    assert.deepEqual(snapshot(tree), before);
  });

  it("a failed Atomic does not undo the commands before it in the message", () => {
    const tree = fixtureTree();
    const body = `${cmd("Add", 3, item("./A/before", { data: "b" }))}<Atomic><CmdID>4</CmdID>${cmd(
      "Add",
      5,
      item("./A/x", { data: "dup" }),
    )}</Atomic>`;
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Add", "200"],
      ["4", "Atomic", "507"],
      ["5", "Add", "418"],
    ]);
    assert.equal(text(tree.read("./A/before")?.value), "b");
  });
});

describe("executeCommands: Sequence and order", () => {
  it("Sequence [Add ./A/s 1, Replace ./A/s 2, Get ./A/s] -> run in order; the Get sees 2", () => {
    const tree = fixtureTree();
    const body = `<Sequence><CmdID>3</CmdID>${[
      cmd("Add", 4, item("./A/s", { data: "1" })),
      cmd("Replace", 5, item("./A/s", { data: "2" })),
      cmd("Get", 6, item("./A/s")),
    ].join("")}</Sequence>`;
    const { statuses, results } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Sequence", "200"],
      ["4", "Add", "200"],
      ["5", "Replace", "200"],
      ["6", "Get", "200"],
    ]);
    assert.deepEqual(onlyResults(results).items[0]?.data, { kind: "text", text: "2" });
    assert.equal(onlyResults(results).cmdRef, "6");
  });

  it("top-level commands are independent: Add 418 does not stop the next Add 200", () => {
    const tree = fixtureTree();
    const body = cmd("Add", 3, item("./A/x", { data: "dup" })) + cmd("Add", 4, item("./A/y", { data: "y" }));
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(statusTriples(statuses), [
      ["3", "Add", "418"],
      ["4", "Add", "200"],
    ]);
  });

  it("reply CmdIDs are allocated in order and every Status carries MsgRef = the message's MsgID", () => {
    const tree = fixtureTree();
    const { replies } = runMessage(tree, cmd("Get", 3, item("./A/x")) + cmd("Delete", 4, item("./A/x")), {
      msgId: "7",
    });
    assert.deepEqual(
      replies.map((r) => [r.kind, r.cmdId, r.msgRef]),
      [
        ["Status", "1", "7"],
        ["Results", "2", "7"],
        ["Status", "3", "7"],
      ],
    );
    assert.equal(tree.read("./A/x"), undefined);
  });

  it("Copy -> Status with TargetRef and SourceRef; the target holds the source's value", () => {
    const tree = fixtureTree();
    const body = `<Copy><CmdID>3</CmdID><Item><Target><LocURI>./A/copy</LocURI></Target><Source><LocURI>./A/x</LocURI></Source></Item></Copy>`;
    const { statuses } = runMessage(tree, body);
    assert.deepEqual(
      statuses.map((s) => [s.cmd, s.targetRefs, s.sourceRefs, s.data]),
      [["Copy", ["./A/copy"], ["./A/x"], "200"]],
    );
    assert.equal(text(tree.read("./A/copy")?.value), "1");
  });
});

// ==================================================================== TNDS payloads

function mgmtTree(nodes: string): string {
  return `<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>${nodes}</MgmtTree>`;
}

const VENDOR_TNDS = mgmtTree(
  `<Node><NodeName>Vendor</NodeName><RTProperties><Format><node/></Format><Type><DDFName>urn:example:mo:vendor:1.0</DDFName></Type></RTProperties>` +
    `<Node><NodeName>Name</NodeName><RTProperties><Format><chr/></Format><Type><MIME>text/plain</MIME></Type></RTProperties><Value>Acme</Value></Node>` +
    `<Node><NodeName>Port</NodeName><RTProperties><Format><int/></Format><Type><MIME>text/plain</MIME></Type></RTProperties><Value>8080</Value></Node>` +
    `<Node><NodeName>Sub</NodeName><RTProperties><Format><node/></Format></RTProperties>` +
    `<Node><NodeName>Flag</NodeName><RTProperties><Format><bool/></Format><Type><MIME>text/plain</MIME></Type></RTProperties><Value>true</Value></Node>` +
    `</Node></Node>`,
);

describe("executeCommands: Add/Replace with a TNDS payload", () => {
  it("Add ./A with a TNDS subtree -> one Status 200; every node created with its Format and value", () => {
    const tree = fixtureTree();
    const { statuses } = runMessage(
      tree,
      cmd("Add", 3, item("./A", { format: "xml", type: MIME_TNDS_XML, data: VENDOR_TNDS })),
    );
    assert.deepEqual(statusTriples(statuses), [["3", "Add", "200"]]);
    assert.deepEqual(
      ["./A/Vendor", "./A/Vendor/Name", "./A/Vendor/Port", "./A/Vendor/Sub", "./A/Vendor/Sub/Flag"].map(
        (p) => {
          const n = tree.read(p);
          return [p, n?.format, n?.format === "node" ? undefined : text(n?.value)];
        },
      ),
      [
        ["./A/Vendor", "node", undefined],
        ["./A/Vendor/Name", "chr", "Acme"],
        ["./A/Vendor/Port", "int", "8080"],
        ["./A/Vendor/Sub", "node", undefined],
        ["./A/Vendor/Sub/Flag", "bool", "true"],
      ],
    );
    assert.deepEqual(tree.findByMoid("urn:example:mo:vendor:1.0"), ["./A/Vendor"]);
  });

  it("Add of a TNDS subtree where one leaf exists -> one Status 418, nothing of the subtree created", () => {
    const tree = fixtureTree();
    tree.write({ path: "./A/Vendor/Port", format: "int", value: "1" });
    const before = snapshot(tree);
    const { statuses } = runMessage(
      tree,
      cmd("Add", 3, item("./A", { format: "xml", type: MIME_TNDS_XML, data: VENDOR_TNDS })),
    );
    assert.deepEqual(statusTriples(statuses), [["3", "Add", "418"]]);
    assert.deepEqual(snapshot(tree), before);
  });

  it("Replace ./A with a TNDS subtree over existing leaves -> one Status 200; values replaced", () => {
    const tree = fixtureTree();
    runMessage(tree, cmd("Add", 3, item("./A", { format: "xml", type: MIME_TNDS_XML, data: VENDOR_TNDS })));
    const update = mgmtTree(
      `<Node><NodeName>Vendor</NodeName><RTProperties><Format><node/></Format></RTProperties>` +
        `<Node><NodeName>Name</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>Beta</Value></Node>` +
        `<Node><NodeName>Port</NodeName><RTProperties><Format><int/></Format></RTProperties><Value>9090</Value></Node>` +
        `</Node>`,
    );
    const { statuses } = runMessage(
      tree,
      cmd("Replace", 4, item("./A", { format: "xml", type: MIME_TNDS_XML, data: update })),
    );
    assert.deepEqual(statusTriples(statuses), [["4", "Replace", "200"]]);
    assert.equal(text(tree.read("./A/Vendor/Name")?.value), "Beta");
    assert.equal(text(tree.read("./A/Vendor/Port")?.value), "9090");
    assert.equal(tree.read("./A/Vendor/Port")?.verNo, 1);
  });

  it("Replace with a TNDS value the Format refuses (int 'x') -> one Status 400; nothing replaced", () => {
    const tree = fixtureTree();
    runMessage(tree, cmd("Add", 3, item("./A", { format: "xml", type: MIME_TNDS_XML, data: VENDOR_TNDS })));
    const before = snapshot(tree);
    const update = mgmtTree(
      `<Node><NodeName>Vendor</NodeName><RTProperties><Format><node/></Format></RTProperties>` +
        `<Node><NodeName>Name</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>Beta</Value></Node>` +
        `<Node><NodeName>Port</NodeName><RTProperties><Format><int/></Format></RTProperties><Value>x</Value></Node>` +
        `</Node>`,
    );
    const { statuses } = runMessage(
      tree,
      cmd("Replace", 4, item("./A", { format: "xml", type: MIME_TNDS_XML, data: update })),
    );
    assert.deepEqual(statusTriples(statuses), [["4", "Replace", "400"]]);
    assert.deepEqual(snapshot(tree), before);
  });

  it("Add with element Data of another Meta Type (application/xml) -> 415", () => {
    const tree = fixtureTree();
    const { statuses } = runMessage(
      tree,
      cmd("Add", 3, item("./A", { format: "xml", type: "application/xml", data: VENDOR_TNDS })),
    );
    assert.deepEqual(statusTriples(statuses), [["3", "Add", "415"]]);
    assert.equal(tree.read("./A/Vendor"), undefined);
  });

  it("Add of a MgmtTree without VerDTD -> 400", () => {
    const tree = fixtureTree();
    const bad = `<MgmtTree xmlns="syncml:dmddf1.2"><Node><NodeName>V</NodeName></Node></MgmtTree>`;
    const { statuses } = runMessage(tree, cmd("Add", 3, item("./A", { type: MIME_TNDS_XML, data: bad })));
    assert.deepEqual(statusTriples(statuses), [["3", "Add", "400"]]);
  });
});

// ==================================================================== Alert, Exec, incomplete commands

describe("executeCommands: Alert and Exec", () => {
  const ALERT = `<Alert><CmdID>3</CmdID><Data>1101</Data><Item><Data>Reboot now?</Data></Item></Alert>`;

  it("Alert 1101 without onAlert -> 406", () => {
    const { statuses } = runMessage(fixtureTree(), ALERT);
    assert.deepEqual(statusTriples(statuses), [["3", "Alert", "406"]]);
  });

  it("Alert 1101 with onAlert answering 304 -> 304; onAlert saw Data 1101 and the Item", () => {
    const seen: AlertCommand[] = [];
    const { statuses } = runMessage(fixtureTree(), ALERT, {
      onAlert: (a) => {
        seen.push(a);
        return { status: 304 };
      },
    });
    assert.deepEqual(statusTriples(statuses), [["3", "Alert", "304"]]);
    assert.equal(seen[0]?.data, "1101");
    assert.deepEqual(seen[0].items[0]?.data, { kind: "text", text: "Reboot now?" });
  });

  function execTree(status: number, calls: unknown[]): DmTree {
    const p = plugin({
      root: "./Fw",
      seed: () => [
        { path: "./Fw", format: "node", acl: "Exec=*&Get=*" },
        { path: "./Fw/Update", format: "node" },
      ],
      exec: (request) => {
        calls.push({
          path: request.path,
          serverId: request.serverId,
          data: request.data,
          correlator: request.correlator,
        });
        return { status };
      },
    });
    return memoryTree({ plugins: [p] });
  }

  it("Exec with Correlator and Data -> reaches the plugin; its 202 is the Status", () => {
    const calls: unknown[] = [];
    const body = `<Exec><CmdID>3</CmdID><Correlator>abc-123</Correlator>${item("./Fw/Update", {
      data: "pkg-url",
    })}</Exec>`;
    const { statuses } = runMessage(execTree(202, calls), body);
    assert.deepEqual(statusTriples(statuses), [["3", "Exec", "202"]]);
    assert.deepEqual(statuses[0]?.targetRefs, ["./Fw/Update"]);
    assert.deepEqual(calls, [{ path: "./Fw/Update", serverId: SRV, data: "pkg-url", correlator: "abc-123" }]);
  });

  it("Exec refused by the plugin (500) -> 500", () => {
    const calls: unknown[] = [];
    const { statuses } = runMessage(execTree(500, calls), cmd("Exec", 3, item("./Fw/Update")));
    assert.deepEqual(statusTriples(statuses), [["3", "Exec", "500"]]);
    assert.equal(calls.length, 1);
  });

  it("Exec of a node outside any MO -> 405", () => {
    const { statuses } = runMessage(fixtureTree(), cmd("Exec", 3, item("./A/x")));
    assert.deepEqual(statusTriples(statuses), [["3", "Exec", "405"]]);
  });
});

describe("executeCommands: incomplete commands -> 412", () => {
  const noTarget = `<Item><Meta><Format ${META_NS}>chr</Format></Meta><Data>v</Data></Item>`;
  for (const kind of ["Add", "Replace", "Delete", "Get", "Exec"]) {
    it(`${kind} with an Item without Target -> 412`, () => {
      const tree = fixtureTree();
      const before = snapshot(tree);
      const { statuses, results } = runMessage(tree, `<${kind}><CmdID>3</CmdID>${noTarget}</${kind}>`);
      assert.deepEqual(statusTriples(statuses), [["3", kind, "412"]]);
      assert.equal(results.length, 0);
      assert.deepEqual(snapshot(tree), before);
    });
  }

  it("Copy with a Target but no Source -> 412", () => {
    const { statuses } = runMessage(fixtureTree(), cmd("Copy", 3, item("./A/y")));
    assert.deepEqual(statusTriples(statuses), [["3", "Copy", "412"]]);
  });

  it("Add with an unknown Meta Format (foo) -> 415", () => {
    const { statuses } = runMessage(
      fixtureTree(),
      cmd("Add", 3, item("./A/y", { format: "foo", data: "v" })),
    );
    assert.deepEqual(statusTriples(statuses), [["3", "Add", "415"]]);
  });
});

// ==================================================================== reply round trip

describe("executeCommands: the reply message round-trips through the codec", () => {
  const SESSION = [
    cmd("Add", 3, item("./A/bin", { format: "b64", data: "AAEC/w==" })),
    cmd("Get", 4, item("./A/x"), item("./A/b"), item("./A/bin"), item("./A/missing")),
    cmd("Get", 5, item("./A?prop=ACL"), item("./A?list=StructData"), item("./A?list=TNDS+ACL+Value+Format")),
    `<Atomic><CmdID>6</CmdID>${cmd("Replace", 7, item("./A/x", { data: "9" }))}${cmd(
      "Add",
      8,
      item("./A/x", { data: "dup" }),
    )}</Atomic>`,
    cmd("Delete", 9, item("./A/b/c")),
  ].join("");

  for (const encoding of ["wbxml", "xml"] as const) {
    it(`the Status/Results of a mixed message encode to ${encoding.toUpperCase()} and decode back equal`, () => {
      const { replies, results } = runMessage(fixtureTree(), SESSION, { encoding });
      assert.ok(results.length >= 5, "Results for the found Gets");
      const message = clientReply(replies);
      const bytes = encodeMessage(message, encoding);
      const decoded = decodeMessage(bytes);
      assert.equal(decoded.encoding, encoding);
      assert.deepEqual(normalise(decoded.message), normalise(message));
    });
  }
});

/** Bytes as plain arrays, so that Buffer and Uint8Array compare equal. */
function normalise(message: SyncMLMessage): unknown {
  return JSON.parse(
    JSON.stringify(message, (_k, v: unknown) => (v instanceof Uint8Array ? { bytes: [...v] } : v)),
  ) as unknown;
}
