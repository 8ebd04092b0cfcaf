import assert from "node:assert/strict";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import { Access, type ExecRequest, type MoPlugin, type NodeSpec } from "../../src/tree/plugin.js";
import { ROOT_ID, Store } from "../../src/tree/store.js";
import { DmTree, isoBasic, type LeafInput } from "../../src/tree/tree.js";
import type { NodeFormat, NodeValue, UriLimits } from "../../src/tree/types.js";
import {
  Clock,
  OPEN_ACL,
  OTHER,
  SRV,
  T0,
  getList,
  getNode,
  getProp,
  memoryTree,
  plugin,
  snapshot,
  tempDir,
  text,
} from "../helpers/tree.js";

const DEVINFO_MOID = "urn:oma:mo:oma-dm-devinfo:1.0";

/** Adds a leaf as SRV on an open tree, asserting success. */
function addLeaf(tree: DmTree, uri: string, value: NodeValue = "v", format: NodeFormat = "chr"): void {
  assert.equal(tree.add(SRV, uri, { format, value }).status, 200, `Add ${uri}`);
}

function addNode(tree: DmTree, uri: string, serverId = SRV): void {
  assert.equal(tree.add(serverId, uri, { format: "node" }).status, 200, `Add ${uri} (node)`);
}

// ==================================================================== URIs

describe("DmTree URIs (protocol.md 3.10)", () => {
  const equivalent: [string, string][] = [
    ["./A/B", "A/B"],
    ["./A/%42", "A/B"],
    ["A/B", "./A/B"],
  ];
  for (const [added, read] of equivalent) {
    it(`Add ${added} then Get ${read} -> 200, the same node ./A/B`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      addLeaf(tree, added, "x");
      const node = getNode(tree, SRV, read);
      assert.equal(node.path, "./A/B");
      assert.equal(text(node.value), "x");
    });
  }

  it("Add A/B when ./A/B exists -> 418 (one node, two spellings)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./A/B");
    assert.equal(tree.add(SRV, "A/B", { format: "chr", value: "y" }).status, 418);
  });

  const malformed = ["", "/A", "A//B", "A/", "./", "A/../B", "./A/./B", "A/%ZZ", "http://x/A", "A/B?foo=1"];
  for (const uri of malformed) {
    it(`Get/Add/Replace/Delete ${JSON.stringify(uri)} -> 400`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      assert.equal(tree.get(SRV, uri).status, 400, "Get");
      assert.equal(tree.add(SRV, uri, { format: "chr", value: "v" }).status, 400, "Add");
      assert.equal(tree.replace(SRV, uri, { value: "v" }).status, 400, "Replace");
      assert.equal(tree.delete(SRV, uri).status, 400, "Delete");
    });
  }

  const limits: UriLimits = { maxDepth: 3, maxTotLen: 16, maxSegLen: 5 };
  const overLimit: [string, string][] = [
    ["./A/B/C/D", "4 segments > MaxDepth 3"],
    ["./ABCDEF", "segment of 6 > MaxSegLen 5"],
    ["./AAAAA/BBBBB/CCC", "17 characters > MaxTotLen 16"],
  ];
  for (const [uri, why] of overLimit) {
    it(`${uri} (${why}) -> 414 for Add, Get, Replace, Delete, Exec`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL, uriLimits: limits });
      assert.deepEqual(tree.uriLimits, limits);
      assert.equal(tree.add(SRV, uri, { format: "chr", value: "v" }).status, 414, "Add");
      assert.equal(tree.get(SRV, uri).status, 414, "Get");
      assert.equal(tree.replace(SRV, uri, { value: "v" }).status, 414, "Replace");
      assert.equal(tree.delete(SRV, uri).status, 414, "Delete");
      assert.equal(tree.exec(SRV, uri).status, 414, "Exec");
    });
  }

  const atLimit = ["./A/B/C", "./ABCDE", "./AAAAA/BBBBB/CC"];
  for (const uri of atLimit) {
    it(`${uri} (exactly at the limits) -> Add 200`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL, uriLimits: limits });
      assert.equal(tree.add(SRV, uri, { format: "chr", value: "v" }).status, 200);
    });
  }

  it("0 limits (the default) are unlimited: a 40-segment URI of 100-character names -> Add 200", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    const uri = `./${Array.from({ length: 40 }, (_, i) => `${i}`.padStart(100, "n")).join("/")}`;
    assert.equal(tree.add(SRV, uri, { format: "chr", value: "v" }).status, 200);
  });
});

// ==================================================================== Add

describe("DmTree Add (protocol.md 3.3)", () => {
  it("Add ./A (leaf) -> 200; again -> 418", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.add(SRV, "./A", { format: "chr", value: "1" }).status, 200);
    assert.equal(tree.add(SRV, "./A", { format: "chr", value: "2" }).status, 418);
    assert.equal(text(getNode(tree, SRV, "./A").value), "1", "the first value is kept");
  });

  it("Add ./N (interior) twice -> 200 then 418", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.add(SRV, "./N", { format: "node" }).status, 200);
    assert.equal(tree.add(SRV, "./N", { format: "node" }).status, 418);
  });

  it("Add . (the root) -> 418", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.add(SRV, ".", { format: "node" }).status, 418);
  });

  it("Add ./A/B/C with ./A missing -> 200; ./A and ./A/B are interior with an empty ACL", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.add(SRV, "./A/B/C", { format: "int", value: "7" }).status, 200);
    for (const p of ["./A", "./A/B"]) {
      assert.equal(getProp(tree, SRV, p, "Format"), "node", `${p} Format`);
      assert.equal(getProp(tree, SRV, p, "ACL"), "", `${p} ACL`);
    }
    assert.equal(getProp(tree, SRV, "./A/B/C", "Format"), "int");
    assert.equal(text(getNode(tree, SRV, "./A/B").value), "C");
  });

  const underLeaf = ["./L/X", "./L/X/Y"];
  for (const uri of underLeaf) {
    it(`Add ${uri} when ./L is a leaf -> 405, nothing created`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      addLeaf(tree, "./L");
      const before = snapshot(tree);
      assert.equal(tree.add(SRV, uri, { format: "chr", value: "v" }).status, 405);
      assert.deepEqual(snapshot(tree), before);
    });
  }

  it("Add ./A as a server without Add on the parent -> 425", () => {
    const tree = memoryTree({ rootAcl: `Add=${OTHER}&Get=*` });
    assert.equal(tree.add(SRV, "./A", { format: "chr", value: "v" }).status, 425);
    assert.equal(tree.get(SRV, "./A").status, 404);
  });

  describe("creator ACL (a server without Replace on the parent adds an interior node)", () => {
    it(`root ACL Add=*&Get=*, ${SRV} adds ./Acc (node) -> ACL gives ${SRV} Add, Delete, Get, Replace`, () => {
      const tree = memoryTree(); // root ACL Add=*&Get=*
      addNode(tree, "./Acc");
      assert.equal(getProp(tree, SRV, "./Acc", "ACL"), `Add=${SRV}&Delete=${SRV}&Get=${SRV}&Replace=${SRV}`);
      // The creator can manage what it created; another server cannot (the ACL is inherited whole).
      addLeaf(tree, "./Acc/Name", "x");
      assert.equal(tree.replace(SRV, "./Acc/Name", { value: "y" }).status, 200);
      assert.equal(tree.get(OTHER, "./Acc/Name").status, 425);
      assert.equal(tree.delete(OTHER, "./Acc").status, 425);
      assert.equal(tree.delete(SRV, "./Acc").status, 200);
    });

    it("root ACL grants Replace -> the new interior node's ACL stays empty", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      addNode(tree, "./Acc");
      assert.equal(getProp(tree, SRV, "./Acc", "ACL"), "");
    });

    it("a leaf added without Replace on the parent keeps an empty ACL (the rule is for interior nodes)", () => {
      const tree = memoryTree();
      addLeaf(tree, "./Leaf");
      assert.equal(getProp(tree, SRV, "./Leaf", "ACL"), "");
    });

    it("Add ./P/Q/Leaf without Replace on . -> the topmost new node ./P has the creator ACL, ./P/Q empty", () => {
      const tree = memoryTree();
      addLeaf(tree, "./P/Q/Leaf");
      assert.equal(getProp(tree, SRV, "./P", "ACL"), `Add=${SRV}&Delete=${SRV}&Get=${SRV}&Replace=${SRV}`);
      assert.equal(getProp(tree, SRV, "./P/Q", "ACL"), "");
    });
  });

  const formats: { format: NodeFormat; value: string; status: number }[] = [
    { format: "int", value: "42", status: 200 },
    { format: "int", value: "-7", status: 200 },
    { format: "int", value: "+3", status: 200 },
    { format: "int", value: "1.5", status: 400 },
    { format: "int", value: "abc", status: 400 },
    { format: "int", value: "", status: 400 },
    { format: "bool", value: "true", status: 200 },
    { format: "bool", value: "false", status: 200 },
    { format: "bool", value: "yes", status: 400 },
    { format: "bool", value: "1", status: 400 },
    { format: "float", value: "1.5e3", status: 200 },
    { format: "float", value: "-0.25", status: 200 },
    { format: "float", value: "abc", status: 400 },
    { format: "float", value: "", status: 400 },
    { format: "null", value: "", status: 200 },
    { format: "null", value: "x", status: 400 },
    { format: "node", value: "x", status: 400 },
    { format: "chr", value: "anything at all", status: 200 },
  ];
  for (const { format, value, status } of formats) {
    it(`Add Format ${format} Data ${JSON.stringify(value)} -> ${status}`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      assert.equal(tree.add(SRV, "./V", { format, value }).status, status);
      if (status === 200) assert.equal(getProp(tree, SRV, "./V", "Format"), format);
      else assert.equal(tree.get(SRV, "./V").status, 404, "nothing created");
    });
  }

  const defaults: { input: LeafInput; format: NodeFormat; why: string }[] = [
    { input: { value: "hello" }, format: "chr", why: "Data, no Format" },
    { input: {}, format: "chr", why: "no Data, no Format (Meta Format defaults to chr)" },
    { input: { format: "node" }, format: "node", why: "Format node" },
  ];
  for (const { input, format, why } of defaults) {
    it(`Add ./D with ${why} -> Format ${format}`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      assert.equal(tree.add(SRV, "./D", input).status, 200);
      assert.equal(getProp(tree, SRV, "./D", "Format"), format);
    });
  }

  it("Add ./A?prop=Title -> 405 (properties are created with the node)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./A");
    assert.equal(tree.add(SRV, "./A?prop=Title", { value: "t" }).status, 405);
  });

  it("Add with a Type -> ?prop=Type reports it", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.add(SRV, "./J", { format: "xml", type: "application/json", value: "{}" }).status, 200);
    assert.equal(getProp(tree, SRV, "./J", "Type"), "application/json");
  });
});

// ==================================================================== Get

describe("DmTree Get", () => {
  it("Get ./A (chr leaf) -> 200 with the value, Format and path", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./A", "hello");
    const node = getNode(tree, SRV, "A");
    assert.deepEqual([node.path, node.name, node.format, text(node.value)], ["./A", "A", "chr", "hello"]);
  });

  it("Get ./B (bin leaf) -> the stored bytes", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./B", Uint8Array.from([0, 1, 254, 255]), "bin");
    const node = getNode(tree, SRV, "./B");
    assert.equal(node.format, "bin");
    assert.deepEqual(Buffer.from(node.value as Uint8Array), Buffer.from([0, 1, 254, 255]));
  });

  it("Get interior ./N with children added b, c, a -> Format node, Data a/b/c (name order)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    for (const n of ["b", "c", "a"]) addLeaf(tree, `./N/${n}`);
    const node = getNode(tree, SRV, "./N");
    assert.equal(node.format, "node");
    assert.equal(node.value, "a/b/c");
  });

  it("Get an interior node without children -> empty Data", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addNode(tree, "./Empty");
    assert.equal(getNode(tree, SRV, "./Empty").value, "");
  });

  it("Get . -> the root's child list", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addNode(tree, "./Y");
    addNode(tree, "./X");
    assert.equal(getNode(tree, SRV, ".").value, "X/Y");
  });

  it("Get ./Missing -> 404", () => {
    const tree = memoryTree();
    assert.equal(tree.get(SRV, "./Missing").status, 404);
  });

  it(`Get a node with ACL Get=${OTHER} as ${SRV} -> 425; as ${OTHER} -> 200`, () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./P", format: "chr", value: "x", acl: `Get=${OTHER}` });
    assert.equal(tree.get(SRV, "./P").status, 425);
    assert.equal(tree.get(OTHER, "./P").status, 200);
  });

  it("Get a node whose access lacks Get (Replace only) -> 405, even with ACL Get=*", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./W", format: "chr", value: "x", access: Access.Replace });
    assert.equal(tree.get(SRV, "./W").status, 405);
  });

  it("Get a secret node -> 405, even with ACL Get=*", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./S", format: "chr", value: "hunter2", secret: true });
    const r = tree.get(SRV, "./S");
    assert.equal(r.status, 405);
    assert.ok(!JSON.stringify(r).includes("hunter2"));
  });
});

// ==================================================================== Replace

describe("DmTree Replace", () => {
  it("Replace ./Missing -> 404 and never creates it", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.replace(SRV, "./Missing", { format: "chr", value: "v" }).status, 404);
    assert.equal(tree.get(SRV, "./Missing").status, 404);
    assert.equal(tree.replace(SRV, "./Missing/Deeper", { value: "v" }).status, 404);
  });

  it("Replace of an interior node -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addNode(tree, "./N");
    assert.equal(tree.replace(SRV, "./N", { value: "x" }).status, 405);
    assert.equal(tree.replace(SRV, ".", { value: "x" }).status, 405, "the root too");
  });

  it("Replace a leaf into Format node -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./L");
    assert.equal(tree.replace(SRV, "./L", { format: "node" }).status, 405);
  });

  it(`Replace with ACL Get=*&Replace=${OTHER} as ${SRV} -> 425, value unchanged`, () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./L", format: "chr", value: "old", acl: `Get=*&Replace=${OTHER}` });
    assert.equal(tree.replace(SRV, "./L", { value: "new" }).status, 425);
    assert.equal(text(getNode(tree, SRV, "./L").value), "old");
    assert.equal(tree.replace(OTHER, "./L", { value: "new" }).status, 200);
  });

  it("Replace a node whose access lacks Replace (Get only) -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./RO", format: "chr", value: "x", access: Access.Get });
    assert.equal(tree.replace(SRV, "./RO", { value: "y" }).status, 405);
  });

  it("each Replace increments VerNo: 0 -> 1 -> 2", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./L", "a");
    assert.equal(getProp(tree, SRV, "./L", "VerNo"), "0");
    tree.replace(SRV, "./L", { value: "b" });
    assert.equal(getProp(tree, SRV, "./L", "VerNo"), "1");
    tree.replace(SRV, "./L", { value: "c" });
    assert.equal(getProp(tree, SRV, "./L", "VerNo"), "2");
  });

  it("VerNo 65535 + Replace -> 0 (uint16 wraps)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./L");
    tree.store.db.prepare("UPDATE node SET verno = 65535 WHERE name = 'L'").run();
    assert.equal(tree.replace(SRV, "./L", { value: "b" }).status, 200);
    assert.equal(getProp(tree, SRV, "./L", "VerNo"), "0");
  });

  it("Replace updates TStamp to the time of the change (ISO 8601 basic UTC)", () => {
    const clock = new Clock();
    const tree = memoryTree({ rootAcl: OPEN_ACL, now: clock.now });
    addLeaf(tree, "./L");
    assert.equal(getProp(tree, SRV, "./L", "TStamp"), "20250101T120000Z");
    clock.tick(90_061_000); // 1 day, 1 h, 1 min, 1 s
    assert.equal(tree.replace(SRV, "./L", { value: "b" }).status, 200);
    assert.equal(getProp(tree, SRV, "./L", "TStamp"), "20250102T130101Z");
    assert.equal(isoBasic(T0), "20250101T120000Z");
  });

  it("Replace with another Format changes the Format (chr -> int) and validates the value", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./L", "text");
    assert.equal(tree.replace(SRV, "./L", { format: "int", value: "x" }).status, 400);
    assert.equal(getProp(tree, SRV, "./L", "Format"), "chr", "a refused Replace changes nothing");
    assert.equal(tree.replace(SRV, "./L", { format: "int", value: "12" }).status, 200);
    assert.equal(getProp(tree, SRV, "./L", "Format"), "int");
    assert.equal(text(getNode(tree, SRV, "./L").value), "12");
  });

  it("Replace without a Format keeps the node's Format and validates against it (int, 'x' -> 400)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./I", "1", "int");
    assert.equal(tree.replace(SRV, "./I", { value: "x" }).status, 400);
    assert.equal(tree.replace(SRV, "./I", { value: "2" }).status, 200);
    assert.equal(getProp(tree, SRV, "./I", "Format"), "int");
  });

  it("Replace with a Type changes ?prop=Type", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./L");
    tree.replace(SRV, "./L", { type: "text/x-csv", value: "a,b" });
    assert.equal(getProp(tree, SRV, "./L", "Type"), "text/x-csv");
  });
});

// ==================================================================== Delete

describe("DmTree Delete", () => {
  it("Delete ./A removes ./A and its whole subtree", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./A/B/C");
    addLeaf(tree, "./A/D");
    addLeaf(tree, "./AB", "sibling with a common prefix");
    assert.equal(tree.delete(SRV, "./A").status, 200);
    for (const p of ["./A", "./A/B", "./A/B/C", "./A/D"]) assert.equal(tree.get(SRV, p).status, 404, p);
    assert.equal(tree.get(SRV, "./AB").status, 200);
    assert.equal(tree.store.db.prepare("SELECT count(*) FROM node").pluck().get(), 2, "root and ./AB");
  });

  it("Delete . (root) -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.delete(SRV, ".").status, 405);
  });

  it("Delete ./Missing -> 404", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.delete(SRV, "./Missing").status, 404);
  });

  it("Delete a permanent node -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./Perm", format: "chr", value: "x", permanent: true });
    assert.equal(tree.delete(SRV, "./Perm").status, 405);
    assert.equal(tree.get(SRV, "./Perm").status, 200);
  });

  it("Delete an interior node holding a permanent node -> 405, nothing deleted", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./N/Plain");
    tree.write({ path: "./N/Perm", format: "chr", value: "x", permanent: true });
    assert.equal(tree.delete(SRV, "./N").status, 405);
    assert.equal(tree.get(SRV, "./N/Plain").status, 200);
  });

  it("Delete a node whose access lacks Delete -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./K", format: "chr", value: "x", access: Access.Get | Access.Replace });
    assert.equal(tree.delete(SRV, "./K").status, 405);
  });

  it(`Delete with ACL Delete=${OTHER}&Get=* as ${SRV} -> 425`, () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./K", format: "chr", value: "x", acl: `Delete=${OTHER}&Get=*` });
    assert.equal(tree.delete(SRV, "./K").status, 425);
    assert.equal(tree.delete(OTHER, "./K").status, 200);
  });

  it("Delete ./A?prop=ACL -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./A");
    assert.equal(tree.delete(SRV, "./A?prop=ACL").status, 405);
  });
});

// ==================================================================== Copy

describe("DmTree Copy (DM 1.2: leaf to leaf)", () => {
  it("Copy ./Src (int 5, Type t) to a new ./Dst -> 200, an Add of the same Format, Type and value", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.add(SRV, "./Src", { format: "int", type: "text/x-num", value: "5" }).status, 200);
    assert.equal(tree.copy(SRV, "./Dir/Dst", "./Src").status, 200);
    const dst = getNode(tree, SRV, "./Dir/Dst");
    assert.deepEqual([dst.format, dst.type, text(dst.value)], ["int", "text/x-num", "5"]);
    assert.equal(getProp(tree, SRV, "./Dir", "Format"), "node", "missing ancestors created as by Add");
  });

  it("Copy onto an existing leaf -> 200, a Replace (value changed, VerNo 0 -> 1)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./Src", "new");
    addLeaf(tree, "./Dst", "old");
    assert.equal(tree.copy(SRV, "./Dst", "./Src").status, 200);
    assert.equal(text(getNode(tree, SRV, "./Dst").value), "new");
    assert.equal(getProp(tree, SRV, "./Dst", "VerNo"), "1");
  });

  it("Copy bin bytes -> the target holds the same bytes", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./Src", Uint8Array.from([9, 8, 7]), "bin");
    assert.equal(tree.copy(SRV, "./Dst", "./Src").status, 200);
    assert.deepEqual([...(getNode(tree, SRV, "./Dst").value as Uint8Array)], [9, 8, 7]);
  });

  it("Copy from an interior source -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./N/x");
    assert.equal(tree.copy(SRV, "./Dst", "./N").status, 405);
    assert.equal(tree.get(SRV, "./Dst").status, 404);
  });

  it("Copy from a missing source -> 404", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(tree.copy(SRV, "./Dst", "./Nope").status, 404);
  });

  it("Copy from a secret source -> 405 (a secret cannot leave through Copy)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./Secret", format: "chr", value: "pw", secret: true });
    assert.equal(tree.copy(SRV, "./Dst", "./Secret").status, 405);
    assert.equal(tree.get(SRV, "./Dst").status, 404);
  });

  it(`Copy from a source the server may not Get (Get=${OTHER}) -> 425`, () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./Src", format: "chr", value: "x", acl: `Get=${OTHER}` });
    assert.equal(tree.copy(SRV, "./Dst", "./Src").status, 425);
  });

  it("Copy onto an existing interior node -> 403 (the target cannot be overwritten)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./Src");
    addNode(tree, "./Dst");
    assert.equal(tree.copy(SRV, "./Dst", "./Src").status, 403);
  });
});

// ==================================================================== Exec

interface ExecCall {
  readonly path: string;
  readonly serverId: string;
  readonly data?: NodeValue;
  readonly correlator?: string;
}

/** A `./Cmd` MO whose `./Cmd/Run` answers `status`, recording every call. */
function execPlugin(
  status: number,
  calls: ExecCall[],
  onExec?: (request: ExecRequest) => void,
  access?: number,
): MoPlugin {
  return plugin({
    root: "./Cmd",
    seed: () => [
      { path: "./Cmd", format: "node", acl: "Exec=*&Get=*" },
      { path: "./Cmd/Run", format: "chr", ...(access !== undefined && { access }) },
    ],
    exec: (request) => {
      calls.push({
        path: request.path,
        serverId: request.serverId,
        ...(request.data !== undefined && { data: request.data }),
        ...(request.correlator !== undefined && { correlator: request.correlator }),
      });
      onExec?.(request);
      return { status };
    },
  });
}

describe("DmTree Exec (delegated to the MO)", () => {
  for (const status of [200, 202, 404, 500]) {
    it(`the plugin answers ${status} -> Exec ${status}`, () => {
      const calls: ExecCall[] = [];
      const tree = memoryTree({ plugins: [execPlugin(status, calls)] });
      assert.equal(tree.exec(SRV, "./Cmd/Run").status, status);
      assert.equal(calls.length, 1);
    });
  }

  it("the plugin receives the canonical path, ServerID, Data and Correlator", () => {
    const calls: ExecCall[] = [];
    const tree = memoryTree({ plugins: [execPlugin(200, calls)] });
    tree.exec(SRV, "Cmd/Run", "arg", "corr-1");
    assert.deepEqual(calls, [{ path: "./Cmd/Run", serverId: SRV, data: "arg", correlator: "corr-1" }]);
  });

  it("Exec of a node no plugin owns -> 405", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./Plain");
    assert.equal(tree.exec(SRV, "./Plain").status, 405);
  });

  it("Exec in an MO without exec() -> 405", () => {
    const p = plugin({ root: "./NoExec", seed: () => [{ path: "./NoExec", format: "node", acl: "Exec=*" }] });
    const tree = memoryTree({ plugins: [p] });
    assert.equal(tree.exec(SRV, "./NoExec").status, 405);
  });

  it("Exec of a node whose access lacks Exec -> 405, the plugin is not called", () => {
    const calls: ExecCall[] = [];
    const tree = memoryTree({ plugins: [execPlugin(200, calls, undefined, Access.Get)] });
    assert.equal(tree.exec(SRV, "./Cmd/Run").status, 405);
    assert.equal(calls.length, 0);
  });

  it(`Exec with ACL Exec=${OTHER} as ${SRV} -> 425, the plugin is not called`, () => {
    const calls: ExecCall[] = [];
    const tree = memoryTree({ plugins: [execPlugin(200, calls)] });
    tree.store.setAcl(tree.store.child(ROOT_ID, "Cmd")!.id, `Exec=${OTHER}&Get=*`);
    assert.equal(tree.exec(SRV, "./Cmd/Run").status, 425);
    assert.equal(calls.length, 0);
  });

  it("Exec of a missing node -> 404; of a property -> 405", () => {
    const calls: ExecCall[] = [];
    const tree = memoryTree({ plugins: [execPlugin(200, calls)] });
    assert.equal(tree.exec(SRV, "./Cmd/Nope").status, 404);
    assert.equal(tree.exec(SRV, "./Cmd/Run?prop=Name").status, 405);
  });

  it("afterCommit hooks run after the transaction commits, not during it", () => {
    const events: string[] = [];
    const calls: ExecCall[] = [];
    const p = execPlugin(202, calls, (request) => {
      request.afterCommit(() => events.push(`hook (in transaction: ${tree.store.db.inTransaction})`));
    });
    const tree = memoryTree({ plugins: [p] });
    tree.transaction(() => {
      assert.equal(tree.exec(SRV, "./Cmd/Run").status, 202);
      events.push("end of transaction body");
    });
    assert.deepEqual(events, ["end of transaction body", "hook (in transaction: false)"]);
  });

  it("afterCommit hooks do not run when the transaction throws (and its changes are rolled back)", () => {
    let ran = 0;
    const calls: ExecCall[] = [];
    const p = execPlugin(200, calls, (request) => {
      request.afterCommit(() => ran++);
    });
    const tree = memoryTree({ plugins: [p], rootAcl: OPEN_ACL });
    assert.throws(() =>
      tree.transaction(() => {
        tree.exec(SRV, "./Cmd/Run");
        addLeaf(tree, "./Made");
        throw new Error("boom");
      }),
    );
    assert.equal(ran, 0);
    assert.equal(tree.get(SRV, "./Made").status, 404);
    // The next transaction starts with no leftover hooks.
    tree.transaction(() => tree.exec(SRV, "./Cmd/Run"));
    assert.equal(ran, 1);
  });

  it("afterCommit hooks of an Exec rolled back by a savepoint (Atomic) do not run", () => {
    let ran = 0;
    const calls: ExecCall[] = [];
    const p = execPlugin(200, calls, (request) => {
      request.afterCommit(() => ran++);
    });
    const tree = memoryTree({ plugins: [p] });
    tree.transaction(() => {
      tree.savepoint(() => ({ commit: false, value: tree.exec(SRV, "./Cmd/Run") }));
      tree.savepoint(() => ({ commit: true, value: tree.exec(SRV, "./Cmd/Run") }));
    });
    assert.equal(calls.length, 2);
    assert.equal(ran, 1, "only the committed Exec's hook");
  });

  it("outside a transaction an afterCommit hook runs at once", () => {
    let ran = 0;
    const calls: ExecCall[] = [];
    const tree = memoryTree({
      plugins: [
        execPlugin(200, calls, (request) => {
          request.afterCommit(() => ran++);
        }),
      ],
    });
    tree.exec(SRV, "./Cmd/Run");
    assert.equal(ran, 1);
  });
});

// ==================================================================== properties

describe("DmTree properties (?prop=)", () => {
  function leafTree(clock = new Clock()): DmTree {
    const tree = memoryTree({ rootAcl: OPEN_ACL, now: clock.now });
    tree.write({
      path: "./N/L",
      format: "int",
      type: "text/plain",
      value: "123",
      acl: "Get=*&Replace=*",
      title: "A number",
    });
    return tree;
  }

  const leafProps: [string, string][] = [
    ["ACL", "Get=*&Replace=*"],
    ["Format", "int"],
    ["Name", "L"],
    ["Size", "3"],
    ["Title", "A number"],
    ["TStamp", "20250101T120000Z"],
    ["Type", "text/plain"],
    ["VerNo", "0"],
  ];
  for (const [prop, expected] of leafProps) {
    it(`Get ./N/L?prop=${prop} -> 200 ${JSON.stringify(expected)}`, () => {
      assert.equal(getProp(leafTree(), SRV, "./N/L", prop), expected);
    });
  }

  const interiorProps: [string, string | number][] = [
    ["ACL", ""],
    ["Format", "node"],
    ["Name", "N"],
    ["Size", 406],
    ["Title", ""],
  ];
  for (const [prop, expected] of interiorProps) {
    const what = typeof expected === "number" ? String(expected) : `200 ${JSON.stringify(expected)}`;
    it(`Get ./N?prop=${prop} (interior, implicit) -> ${what}`, () => {
      const tree = leafTree();
      if (typeof expected === "number") assert.equal(tree.get(SRV, "./N?prop=Size").status, expected);
      else assert.equal(getProp(tree, SRV, "./N", prop), expected);
    });
  }

  it("?prop=Size counts UTF-8 bytes of text (é = 2) and bytes of bin", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./T", "é");
    addLeaf(tree, "./B", new Uint8Array(10), "bin");
    assert.equal(getProp(tree, SRV, "./T", "Size"), "2");
    assert.equal(getProp(tree, SRV, "./B", "Size"), "10");
  });

  it("Get ./N/L?prop=Foo -> 406; Replace ./N/L?prop=Foo -> 406", () => {
    const tree = leafTree();
    assert.equal(tree.get(SRV, "./N/L?prop=Foo").status, 406);
    assert.equal(tree.replace(SRV, "./N/L?prop=Foo", { value: "x" }).status, 406);
  });

  it("Get ./Missing?prop=ACL -> 404", () => {
    assert.equal(leafTree().get(SRV, "./Missing?prop=ACL").status, 404);
  });

  for (const prop of ["Format", "Size", "TStamp", "Type", "VerNo"]) {
    it(`Replace ./N/L?prop=${prop} -> 405 (read-only property)`, () => {
      const tree = leafTree();
      assert.equal(tree.replace(SRV, `./N/L?prop=${prop}`, { value: "1" }).status, 405);
    });
  }

  describe("Replace ?prop=ACL (who may change an ACL, protocol.md 3.10)", () => {
    const rows: {
      why: string;
      parentAcl: string;
      nodeAcl: string;
      interior: boolean;
      status: number;
    }[] = [
      {
        why: "leaf: the parent grants Replace",
        parentAcl: `Get=*&Replace=${SRV}`,
        nodeAcl: "Get=*",
        interior: false,
        status: 200,
      },
      {
        why: "leaf: only the leaf's own Replace (the parent's does not grant it)",
        parentAcl: `Get=*&Replace=${OTHER}`,
        nodeAcl: `Get=*&Replace=${SRV}`,
        interior: false,
        status: 425,
      },
      {
        why: "interior: the node's own Replace",
        parentAcl: `Get=*&Replace=${OTHER}`,
        nodeAcl: `Get=*&Replace=${SRV}`,
        interior: true,
        status: 200,
      },
      {
        why: "interior: the parent's Replace takes over the child",
        parentAcl: `Get=*&Replace=${SRV}`,
        nodeAcl: `Get=*&Replace=${OTHER}`,
        interior: true,
        status: 200,
      },
      {
        why: "interior: neither the node nor the parent grants Replace",
        parentAcl: `Get=*&Replace=${OTHER}`,
        nodeAcl: `Get=*&Replace=${OTHER}`,
        interior: true,
        status: 425,
      },
    ];
    for (const r of rows) {
      it(`${r.why} -> ${r.status}`, () => {
        const tree = memoryTree({ rootAcl: OPEN_ACL });
        tree.write({ path: "./P", format: "node", acl: r.parentAcl });
        tree.write({ path: "./P/X", format: r.interior ? "node" : "chr", acl: r.nodeAcl });
        const newAcl = `Get=*&Replace=${SRV}+${OTHER}`;
        assert.equal(tree.replace(SRV, "./P/X?prop=ACL", { value: newAcl }).status, r.status);
        assert.equal(getProp(tree, OTHER, "./P/X", "ACL"), r.status === 200 ? newAcl : r.nodeAcl);
      });
    }

    it("an ACL is stored in canonical form (Replace=b+a&Get=* -> Get=*&Replace=b+a)", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      addNode(tree, "./X");
      assert.equal(tree.replace(SRV, "./X?prop=ACL", { value: "Replace=b+a&Get=*" }).status, 200);
      assert.equal(getProp(tree, SRV, "./X", "ACL"), "Get=*&Replace=b+a");
    });

    for (const bad of ["Get", "Copy=*", "Get=a b", "Get=*&"]) {
      it(`Replace ?prop=ACL with ${JSON.stringify(bad)} -> 400`, () => {
        const tree = memoryTree({ rootAcl: OPEN_ACL });
        addNode(tree, "./X");
        assert.equal(tree.replace(SRV, "./X?prop=ACL", { value: bad }).status, 400);
      });
    }

    it("Replace ?prop=ACL with empty Data -> 200, the node inherits again", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      tree.write({ path: "./X", format: "node", acl: `Get=${OTHER}` });
      assert.equal(tree.get(SRV, "./X").status, 425);
      assert.equal(tree.replace(SRV, "./X?prop=ACL", { value: "" }).status, 200);
      assert.equal(getProp(tree, SRV, "./X", "ACL"), "");
      assert.equal(tree.get(SRV, "./X").status, 200);
    });

    it("Replace .?prop=ACL with empty Data -> 400 (the root ACL always has a value)", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      assert.equal(tree.replace(SRV, ".?prop=ACL", { value: "" }).status, 400);
    });

    it("Replace .?prop=ACL under the default root ACL Add=*&Get=* -> 425", () => {
      const tree = memoryTree();
      assert.equal(tree.replace(SRV, ".?prop=ACL", { value: OPEN_ACL }).status, 425);
      assert.equal(getProp(tree, SRV, ".", "ACL"), "Add=*&Get=*");
    });
  });

  describe("Replace ?prop=Name (rename)", () => {
    it("Replace ./N/L?prop=Name 'M' -> 200; ./N/L 404, ./N/M holds the value", () => {
      const tree = leafTree();
      assert.equal(tree.replace(SRV, "./N/L?prop=Name", { value: "M" }).status, 200);
      assert.equal(tree.get(SRV, "./N/L").status, 404);
      assert.equal(text(getNode(tree, SRV, "./N/M").value), "123");
      assert.equal(getProp(tree, SRV, "./N/M", "Name"), "M");
    });

    it("renaming an interior node moves its subtree", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      addLeaf(tree, "./Old/Child", "c");
      assert.equal(tree.replace(SRV, "./Old?prop=Name", { value: "New" }).status, 200);
      assert.equal(text(getNode(tree, SRV, "./New/Child").value), "c");
    });

    it("rename of a permanent node -> 405", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      tree.write({ path: "./P", format: "chr", value: "x", permanent: true });
      assert.equal(tree.replace(SRV, "./P?prop=Name", { value: "Q" }).status, 405);
    });

    it("rename of the root -> 405", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      assert.equal(tree.replace(SRV, ".?prop=Name", { value: "Q" }).status, 405);
    });

    it("rename to a sibling's name -> 418", () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      addLeaf(tree, "./A");
      addLeaf(tree, "./B");
      assert.equal(tree.replace(SRV, "./A?prop=Name", { value: "B" }).status, 418);
    });

    for (const bad of ["a/b", "", "..", "."]) {
      it(`rename to ${JSON.stringify(bad)} -> 400`, () => {
        const tree = memoryTree({ rootAcl: OPEN_ACL });
        addLeaf(tree, "./A");
        assert.equal(tree.replace(SRV, "./A?prop=Name", { value: bad }).status, 400);
      });
    }

    it(`rename as a server without Replace (Get=*&Replace=${OTHER}) -> 425`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      tree.write({ path: "./A", format: "chr", value: "x", acl: `Get=*&Replace=${OTHER}` });
      assert.equal(tree.replace(SRV, "./A?prop=Name", { value: "B" }).status, 425);
    });
  });

  describe("Replace ?prop=Title", () => {
    const rows: [string, string, number][] = [
      ["a short title", "Hello", 200],
      ["255 ASCII bytes", "t".repeat(255), 200],
      ["256 ASCII bytes", "t".repeat(256), 413],
      ["128 × é = 256 UTF-8 bytes", "é".repeat(128), 413],
      ["127 × é = 254 UTF-8 bytes", "é".repeat(127), 200],
    ];
    for (const [why, title, status] of rows) {
      it(`Title of ${why} -> ${status}`, () => {
        const tree = leafTree();
        assert.equal(tree.replace(SRV, "./N/L?prop=Title", { value: title }).status, status);
        assert.equal(getProp(tree, SRV, "./N/L", "Title"), status === 200 ? title : "A number");
      });
    }

    it(`Title as a server without Replace (Get=*&Replace=${OTHER}) -> 425`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      tree.write({ path: "./A", format: "chr", value: "x", acl: `Get=*&Replace=${OTHER}` });
      assert.equal(tree.replace(SRV, "./A?prop=Title", { value: "t" }).status, 425);
    });
  });
});

// ==================================================================== ACL inheritance

describe("DmTree ACL inheritance (nearest non-empty ancestor, as a whole)", () => {
  const rows: { why: string; acls: [string, string, string]; cmd: "Get" | "Replace"; status: number }[] = [
    {
      why: "./A/B/C empty, ./A/B empty, ./A Get=* -> Get allowed",
      acls: ["Get=*", "", ""],
      cmd: "Get",
      status: 200,
    },
    {
      why: `./A/B Get=${OTHER} overrides ./A Get=* for ./A/B/C`,
      acls: ["Get=*", `Get=${OTHER}`, ""],
      cmd: "Get",
      status: 425,
    },
    {
      why: `./A/B/C Replace=${SRV}: Get is not filled in from ./A's Get=* (whole ACL)`,
      acls: ["Get=*", "", `Replace=${SRV}`],
      cmd: "Get",
      status: 425,
    },
    {
      why: `./A/B Replace=${SRV} is inherited by ./A/B/C`,
      acls: ["Get=*", `Replace=${SRV}`, ""],
      cmd: "Replace",
      status: 200,
    },
    {
      why: `./A Replace=${SRV}&Get=*, ./A/B Get=*: ./A's Replace does not reach ./A/B/C`,
      acls: [`Get=*&Replace=${SRV}`, "Get=*", ""],
      cmd: "Replace",
      status: 425,
    },
  ];
  for (const r of rows) {
    it(`${r.cmd} ./A/B/C: ${r.why} -> ${r.status}`, () => {
      const tree = memoryTree({ rootAcl: OPEN_ACL });
      tree.write({ path: "./A", format: "node", acl: r.acls[0] });
      tree.write({ path: "./A/B", format: "node", acl: r.acls[1] });
      tree.write({ path: "./A/B/C", format: "chr", value: "v", acl: r.acls[2] });
      const status =
        r.cmd === "Get"
          ? tree.get(SRV, "./A/B/C").status
          : tree.replace(SRV, "./A/B/C", { value: "w" }).status;
      assert.equal(status, r.status);
    });
  }

  it("an unseeded tree (root ACL never set) behaves as Add=*&Get=*", () => {
    const tree = memoryTree({ seed: false });
    assert.equal(tree.add(SRV, "./A", { format: "chr", value: "x" }).status, 200);
    assert.equal(tree.get(OTHER, "./A").status, 200);
    assert.equal(tree.replace(SRV, "./A", { value: "y" }).status, 425);
  });

  it("Get ?prop=ACL of a node with an empty ACL -> empty Data (not the inherited value)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./A");
    assert.equal(getProp(tree, SRV, "./A", "ACL"), "");
  });
});

// ==================================================================== tree exchange

describe("DmTree ?list= (tree exchange)", () => {
  /**
   * ./T            Get=*&Replace=srv
   * ./T/a          chr "1"
   * ./T/b/         interior
   * ./T/b/c        int "2"
   * ./T/hidden     Get=other (left out with its child)
   * ./T/hidden/x   chr "no"
   * ./T/noget      access Replace only (left out)
   * ./T/secret     secret chr "pw"
   */
  function exchangeTree(): DmTree {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./T", format: "node", acl: `Get=*&Replace=${SRV}` });
    tree.write({ path: "./T/a", format: "chr", value: "1" });
    tree.write({ path: "./T/b", format: "node" });
    tree.write({ path: "./T/b/c", format: "int", value: "2" });
    tree.write({ path: "./T/hidden", format: "node", acl: `Get=${OTHER}` });
    tree.write({ path: "./T/hidden/x", format: "chr", value: "no" });
    tree.write({ path: "./T/noget", format: "chr", value: "no", access: Access.Replace });
    tree.write({ path: "./T/secret", format: "chr", value: "pw", secret: true });
    return tree;
  }
  const VISIBLE = ["./T", "./T/a", "./T/b", "./T/b/c", "./T/secret"];

  for (const list of ["Struct", "StructData", "TNDS"]) {
    it(`Get ./T?list=${list} -> only the nodes ${SRV} may Get, parents first in name order`, () => {
      const nodes = getList(exchangeTree(), SRV, `./T?list=${list}`);
      assert.deepEqual(
        nodes.map((n) => n.path),
        VISIBLE,
      );
    });
  }

  it(`Get ./T?list=Struct as ${OTHER} -> the hidden subtree appears`, () => {
    const nodes = getList(exchangeTree(), OTHER, "./T?list=Struct");
    assert.ok(nodes.some((n) => n.path === "./T/hidden/x"));
  });

  it("?list=Struct -> Format (and Type) of every node, no Data", () => {
    const nodes = getList(exchangeTree(), SRV, "./T?list=Struct");
    assert.deepEqual(
      nodes.map((n) => [n.path, n.format, n.value]),
      [
        ["./T", "node", undefined],
        ["./T/a", "chr", undefined],
        ["./T/b", "node", undefined],
        ["./T/b/c", "int", undefined],
        ["./T/secret", "chr", undefined],
      ],
    );
  });

  it("?list=StructData -> leaf Data; interior nodes without Data; the secret without its value", () => {
    const nodes = getList(exchangeTree(), SRV, "./T?list=StructData");
    assert.deepEqual(
      nodes.map((n) => [n.path, text(n.value)]),
      [
        ["./T", undefined],
        ["./T/a", "1"],
        ["./T/b", undefined],
        ["./T/b/c", "2"],
        ["./T/secret", undefined],
      ],
    );
  });

  it("?list=TNDS+ACL+Value keeps the property selection on the query", () => {
    const r = exchangeTree().get(SRV, "./T?list=TNDS+ACL+Value");
    assert.equal(r.status, 200);
    assert.ok(r.kind === "list");
    assert.deepEqual(r.query, { kind: "list", list: "TNDS", props: { mode: "+", names: ["ACL", "Value"] } });
  });

  it("?list= of a leaf -> that leaf alone, with Data for StructData", () => {
    const nodes = getList(exchangeTree(), SRV, "./T/a?list=StructData");
    assert.deepEqual(
      nodes.map((n) => [n.path, text(n.value)]),
      [["./T/a", "1"]],
    );
  });

  const refused: [string, number][] = [
    ["./T/hidden?list=Struct", 425],
    ["./T/noget?list=Struct", 405],
    ["./T?list=Foo", 406],
    ["./T?list=TNDS+Bogus", 406],
    ["./T?list=TNDS+ACL-Value", 400],
    ["./Missing?list=Struct", 404],
  ];
  for (const [uri, status] of refused) {
    it(`Get ${uri} -> ${status}`, () => {
      assert.equal(exchangeTree().get(SRV, uri).status, status);
    });
  }
});

// ==================================================================== secrets, dynamic leaves, policies

describe("DmTree secret and dynamic leaves", () => {
  function secretTree(): DmTree {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.write({ path: "./Acc/AAuthSecret", format: "chr", value: "hunter2", secret: true });
    return tree;
  }

  it("a secret leaf: Get -> 405", () => {
    assert.equal(secretTree().get(SRV, "./Acc/AAuthSecret").status, 405);
  });

  for (const list of ["StructData", "TNDS", "TNDS+Value+Size"]) {
    it(`a secret leaf: Get ./Acc?list=${list} -> listed without value or size`, () => {
      const nodes = getList(secretTree(), SRV, `./Acc?list=${list}`);
      const node = nodes.find((n) => n.path === "./Acc/AAuthSecret");
      assert.ok(node !== undefined);
      assert.equal(node.value, undefined);
      assert.equal(node.size, undefined, "the size of a secret is not revealed either");
      assert.ok(!JSON.stringify(nodes).includes("hunter2"));
    });
  }

  it("a secret leaf: ?prop=Size -> 406 (not revealed); ?prop=Format -> 200", () => {
    const tree = secretTree();
    assert.equal(tree.get(SRV, "./Acc/AAuthSecret?prop=Size").status, 406);
    assert.equal(getProp(tree, SRV, "./Acc/AAuthSecret", "Format"), "chr");
  });

  it("a secret leaf: the gateway reads it with read()", () => {
    assert.equal(text(secretTree().read("./Acc/AAuthSecret")?.value), "hunter2");
  });

  it("a secret leaf: a server may still Replace it (write-only) and the gateway reads the new value", () => {
    const tree = secretTree();
    assert.equal(tree.replace(SRV, "./Acc/AAuthSecret", { value: "s3cret" }).status, 200);
    assert.equal(text(tree.read("./Acc/AAuthSecret")?.value), "s3cret");
  });

  function dynamicTree(): { tree: DmTree; reads: string[] } {
    const reads: string[] = [];
    let n = 0;
    const p = plugin({
      root: "./Dyn",
      seed: () => [
        { path: "./Dyn", format: "node", acl: "Get=*" },
        { path: "./Dyn/Counter", format: "int", dynamic: true },
        { path: "./Dyn/Static", format: "chr", value: "s" },
      ],
      read: (path, segments) => {
        reads.push(`${path} ${segments.join(",")}`);
        n++;
        return String(n);
      },
    });
    return { tree: memoryTree({ plugins: [p] }), reads };
  }

  it("a dynamic leaf: each Get calls the plugin's read (1, then 2)", () => {
    const { tree, reads } = dynamicTree();
    assert.equal(getNode(tree, SRV, "./Dyn/Counter").value, "1");
    assert.equal(getNode(tree, SRV, "./Dyn/Counter").value, "2");
    assert.deepEqual(reads, ["./Dyn/Counter Dyn,Counter", "./Dyn/Counter Dyn,Counter"]);
  });

  it("a dynamic leaf: ?list=StructData reads it; ?list=Struct does not", () => {
    const { tree, reads } = dynamicTree();
    getList(tree, SRV, "./Dyn?list=Struct");
    assert.equal(reads.length, 0);
    const nodes = getList(tree, SRV, "./Dyn?list=StructData");
    assert.equal(nodes.find((x) => x.path === "./Dyn/Counter")?.value, "1");
    assert.equal(nodes.find((x) => x.path === "./Dyn/Static")?.value, "s");
    assert.equal(reads.length, 1, "the static leaf is not read through the plugin");
  });

  it("a dynamic leaf whose plugin has no value right now -> 200 without a value", () => {
    const p = plugin({
      root: "./D",
      seed: () => [
        { path: "./D", format: "node", acl: "Get=*" },
        { path: "./D/X", format: "chr", dynamic: true },
      ],
      read: () => undefined,
    });
    const node = getNode(memoryTree({ plugins: [p] }), SRV, "./D/X");
    assert.equal(node.value, undefined);
  });
});

describe("DmTree plugin policyFor", () => {
  function policyTree(): DmTree {
    const p = plugin({
      root: "./Acc",
      seed: () => [{ path: "./Acc", format: "node", acl: OPEN_ACL }],
      policyFor: (segments) => {
        if (segments[1] === "ReadOnly") return { refuse: 405 };
        if (segments[1] === "BadRef") return { refuse: 404 };
        if (segments[1] === "GetOnly") return { access: Access.Get };
        if (segments[segments.length - 1] === "Secret")
          return { secret: true, access: Access.Add | Access.Replace };
        return undefined;
      },
    });
    return memoryTree({ plugins: [p] });
  }

  const refusals: [string, number][] = [
    ["./Acc/ReadOnly", 405],
    ["./Acc/BadRef", 404],
    ["./Acc/GetOnly", 405],
    ["./Acc/ReadOnly/Deep/Leaf", 405],
    ["./Acc/BadRef/Leaf", 404],
  ];
  for (const [uri, status] of refusals) {
    it(`Add ${uri} refused by the MO -> ${status}, nothing created`, () => {
      const tree = policyTree();
      const before = snapshot(tree);
      assert.equal(tree.add(SRV, uri, { format: "chr", value: "x" }).status, status);
      assert.deepEqual(snapshot(tree), before);
    });
  }

  it("Add ./Acc/x/Secret (marked secret by the MO) -> 200; Get 405; read() has the value", () => {
    const tree = policyTree();
    assert.equal(tree.add(SRV, "./Acc/x/Secret", { format: "chr", value: "pw" }).status, 200);
    assert.equal(tree.get(SRV, "./Acc/x/Secret").status, 405);
    assert.equal(text(tree.read("./Acc/x/Secret")?.value), "pw");
    const listed = getList(tree, SRV, "./Acc?list=StructData").find((n) => n.path === "./Acc/x/Secret");
    assert.equal(listed?.value, undefined);
  });

  it("the MO's access for a server-added node applies (Secret: Add and Replace only -> Delete 405)", () => {
    const tree = policyTree();
    assert.equal(tree.add(SRV, "./Acc/x/Secret", { format: "chr", value: "pw" }).status, 200);
    assert.equal(tree.replace(SRV, "./Acc/x/Secret", { value: "pw2" }).status, 200);
    assert.equal(tree.delete(SRV, "./Acc/x/Secret").status, 405);
  });

  it("Add ./Acc/Free/Leaf (no policy) -> 200, a plain readable leaf", () => {
    const tree = policyTree();
    assert.equal(tree.add(SRV, "./Acc/Free/Leaf", { format: "chr", value: "x" }).status, 200);
    assert.equal(text(getNode(tree, SRV, "./Acc/Free/Leaf").value), "x");
  });
});

// ==================================================================== seed, findByMoid

function devInfo(man = "Acme"): MoPlugin {
  const specs: NodeSpec[] = [
    { path: "./DevInfo", format: "node", acl: "Add=*&Get=*&Replace=*" },
    { path: "./DevInfo/DevId", format: "chr", value: "IMEI:493005100592800" },
    { path: "./DevInfo/Man", format: "chr", value: man },
    { path: "./DevInfo/Ext", format: "node", permanent: false },
  ];
  return plugin({ root: "./DevInfo", moid: DEVINFO_MOID, seed: () => specs });
}

describe("DmTree seed()", () => {
  it("creates the plugin's nodes; the MO root's Type is the MOID; the root ACL is Add=*&Get=*", () => {
    const tree = memoryTree({ plugins: [devInfo()] });
    assert.equal(getProp(tree, SRV, "./DevInfo", "Type"), DEVINFO_MOID);
    assert.equal(text(getNode(tree, SRV, "./DevInfo/Man").value), "Acme");
    assert.equal(getNode(tree, SRV, "./DevInfo").value, "DevId/Ext/Man");
    assert.equal(getProp(tree, SRV, ".", "ACL"), "Add=*&Get=*");
  });

  it("seeded nodes are permanent unless declared otherwise (Delete 405 / 200)", () => {
    const tree = memoryTree({ plugins: [devInfo()] });
    tree.store.setAcl(tree.store.child(ROOT_ID, "DevInfo")!.id, OPEN_ACL);
    assert.equal(tree.delete(SRV, "./DevInfo/Man").status, 405);
    assert.equal(tree.delete(SRV, "./DevInfo/Ext").status, 200);
  });

  it("a second seed() creates nothing new and overwrites nothing", () => {
    const tree = memoryTree({ plugins: [devInfo()] });
    assert.equal(tree.replace(SRV, "./DevInfo/Man", { value: "Changed" }).status, 200);
    const before = snapshot(tree);
    tree.seed();
    assert.deepEqual(snapshot(tree), before);
  });

  it("restart: reopen the same file, seed() again -> the server's change and added nodes survive", () => {
    const tmp = tempDir();
    try {
      const file = tmp.file("tree.db");
      const first = new DmTree(Store.open(file), { plugins: [devInfo("Acme")] });
      first.seed();
      first.transaction(() => {
        assert.equal(first.replace(SRV, "./DevInfo/Man", { value: "Changed" }).status, 200);
        assert.equal(first.add(SRV, "./DevInfo/Ext/Mine", { format: "chr", value: "m" }).status, 200);
        assert.equal(first.replace(SRV, "./DevInfo?prop=ACL", { value: "Get=*" }).status, 200);
      });
      first.store.close();

      // The new build ships a different default; the stored value still wins.
      const second = new DmTree(Store.open(file, { create: false }), { plugins: [devInfo("Acme v2")] });
      second.seed();
      assert.equal(text(getNode(second, SRV, "./DevInfo/Man").value), "Changed");
      assert.equal(text(getNode(second, SRV, "./DevInfo/Ext/Mine").value), "m");
      assert.equal(getProp(second, SRV, "./DevInfo", "ACL"), "Get=*");
      assert.equal(second.store.db.prepare("SELECT count(*) FROM node").pluck().get(), 6);
      second.store.close();
    } finally {
      tmp.cleanup();
    }
  });

  it("a plugin added by an upgrade is seeded on the next start; the others are untouched", () => {
    const extra = plugin({ root: "./Vendor", seed: () => [{ path: "./Vendor", format: "node" }] });
    const tree = memoryTree({ plugins: [devInfo()] });
    tree.replace(SRV, "./DevInfo/Man", { value: "Changed" });
    const upgraded = new DmTree(tree.store, { plugins: [devInfo(), extra] });
    upgraded.seed();
    assert.equal(upgraded.get(SRV, "./Vendor").status, 200);
    assert.equal(text(getNode(upgraded, SRV, "./DevInfo/Man").value), "Changed");
  });

  it("a plugin declaring a node before its parent -> GatewayError Tree_InvalidPlugin", () => {
    const bad = plugin({ root: "./Bad", seed: () => [{ path: "./Bad/Child/Leaf", format: "chr" }] });
    const tree = memoryTree({ seed: false, plugins: [bad] });
    assert.throws(
      () => {
        tree.seed();
      },
      (e) => isGatewayError(e, ErrorCode.Tree_InvalidPlugin),
    );
    assert.equal(tree.read("./Bad"), undefined, "the failed seed left nothing behind");
  });

  it("a plugin declaring an invalid path -> GatewayError Tree_InvalidPlugin", () => {
    const bad = plugin({ root: "./Bad", seed: () => [{ path: "./Bad//x", format: "chr" }] });
    const tree = memoryTree({ seed: false, plugins: [bad] });
    assert.throws(
      () => {
        tree.seed();
      },
      (e) => isGatewayError(e, ErrorCode.Tree_InvalidPlugin),
    );
  });
});

describe("DmTree findByMoid", () => {
  it("finds the MO roots whose Type is the MOID, sorted; leaves with that Type are not MO roots", () => {
    const tree = memoryTree({ plugins: [devInfo()], rootAcl: OPEN_ACL });
    tree.write({ path: "./Other/DevInfo2", format: "node", type: DEVINFO_MOID });
    tree.write({ path: "./Leaf", format: "chr", type: DEVINFO_MOID, value: "x" });
    assert.deepEqual(tree.findByMoid(DEVINFO_MOID), ["./DevInfo", "./Other/DevInfo2"]);
  });

  it("an unknown MOID -> []", () => {
    const tree = memoryTree({ plugins: [devInfo()] });
    assert.deepEqual(tree.findByMoid("urn:oma:mo:unknown:1.0"), []);
  });

  it("an MO root a server added with that Type is found too", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.equal(
      tree.add(SRV, "./Vendor/Fw", { format: "node", type: "urn:oma:mo:oma-fumo:1.0" }).status,
      200,
    );
    assert.deepEqual(tree.findByMoid("urn:oma:mo:oma-fumo:1.0"), ["./Vendor/Fw"]);
  });
});

// ==================================================================== transactions

describe("DmTree transaction() and savepoint()", () => {
  it("transaction(): a throw rolls back every change (Add, Replace, Delete, ACL) and rethrows", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    addLeaf(tree, "./Keep", "k");
    addLeaf(tree, "./Gone", "g");
    const before = snapshot(tree);
    assert.throws(
      () =>
        tree.transaction(() => {
          addLeaf(tree, "./New/Leaf");
          tree.replace(SRV, "./Keep", { value: "changed" });
          tree.delete(SRV, "./Gone");
          tree.replace(SRV, "./Keep?prop=ACL", { value: "Get=*" });
          throw new Error("boom");
        }),
      /boom/,
    );
    assert.deepEqual(snapshot(tree), before);
  });

  it("transaction(): returns fn's value and commits", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    const v = tree.transaction(() => {
      addLeaf(tree, "./A");
      return 42;
    });
    assert.equal(v, 42);
    assert.equal(tree.store.db.inTransaction, false);
    assert.equal(tree.get(SRV, "./A").status, 200);
  });

  it("transaction() inside transaction() joins the outer one (an outer throw undoes the inner)", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    assert.throws(() =>
      tree.transaction(() => {
        tree.transaction(() => {
          addLeaf(tree, "./Inner");
        });
        throw new Error("outer");
      }),
    );
    assert.equal(tree.get(SRV, "./Inner").status, 404);
  });

  it("savepoint() with commit: false rolls back only its own changes", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.transaction(() => {
      addLeaf(tree, "./Before");
      const r = tree.savepoint(() => {
        addLeaf(tree, "./Inside");
        return { commit: false, value: "v" };
      });
      assert.deepEqual(r, { committed: false, value: "v" });
      addLeaf(tree, "./After");
    });
    assert.equal(tree.get(SRV, "./Before").status, 200);
    assert.equal(tree.get(SRV, "./Inside").status, 404);
    assert.equal(tree.get(SRV, "./After").status, 200);
  });

  it("savepoint() with commit: true keeps its changes", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.transaction(() => {
      const r = tree.savepoint(() => {
        addLeaf(tree, "./Inside");
        return { commit: true, value: undefined };
      });
      assert.equal(r.committed, true);
    });
    assert.equal(tree.get(SRV, "./Inside").status, 200);
  });

  it("savepoint() that throws rolls back its changes and rethrows; the transaction can go on", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.transaction(() => {
      assert.throws(() =>
        tree.savepoint(() => {
          addLeaf(tree, "./Inside");
          throw new Error("inner");
        }),
      );
      addLeaf(tree, "./After");
    });
    assert.equal(tree.get(SRV, "./Inside").status, 404);
    assert.equal(tree.get(SRV, "./After").status, 200);
  });

  it("nested savepoints: the inner rolled back, the outer committed", () => {
    const tree = memoryTree({ rootAcl: OPEN_ACL });
    tree.transaction(() => {
      tree.savepoint(() => {
        addLeaf(tree, "./Outer");
        tree.savepoint(() => {
          addLeaf(tree, "./Inner");
          return { commit: false, value: undefined };
        });
        return { commit: true, value: undefined };
      });
    });
    assert.equal(tree.get(SRV, "./Outer").status, 200);
    assert.equal(tree.get(SRV, "./Inner").status, 404);
  });
});

// ==================================================================== gateway-side access

describe("DmTree gateway-side read/write/remove/childNames (no ACL)", () => {
  it("write() creates missing ancestors as interior nodes and ignores the ACL", () => {
    const tree = memoryTree(); // Add=*&Get=*: no Replace for anyone
    tree.write({ path: "./GW/State/Count", format: "int", value: "1" });
    tree.write({ path: "./GW/State/Count", format: "int", value: "2" });
    assert.equal(text(tree.read("./GW/State/Count")?.value), "2");
    assert.equal(tree.read("./GW/State")?.format, "node");
    assert.deepEqual(tree.childNames("./GW/State"), ["Count"]);
  });

  it("write() refuses to turn an interior node into a leaf, a leaf into an interior node, or to write below a leaf (Tree_Conflict)", () => {
    const tree = memoryTree();
    tree.write({ path: "./GW/Leaf", format: "chr", value: "x" });
    const conflict = (spec: NodeSpec): void => {
      assert.throws(
        () => {
          tree.write(spec);
        },
        (e: unknown) => isGatewayError(e, ErrorCode.Tree_Conflict),
        spec.path,
      );
    };
    conflict({ path: "./GW", format: "chr", value: "y" });
    conflict({ path: "./GW/Leaf", format: "node" });
    conflict({ path: "./GW/Leaf/Child", format: "chr", value: "z" });
    assert.equal(text(tree.read("./GW/Leaf")?.value), "x", "the leaf is unchanged");
    assert.equal(tree.read("./GW/Leaf/Child"), undefined);
  });

  it("write() applies the owning MO's policy: a node it marks secret is secret whoever writes it", () => {
    const tree = new DmTree(Store.open(":memory:"), {
      plugins: [
        plugin({
          root: "./Acc",
          seed: () => [{ path: "./Acc", format: "node", acl: OPEN_ACL }],
          policyFor: (segs) => (segs[segs.length - 1] === "Secret" ? { secret: true } : undefined),
        }),
      ],
    });
    tree.seed();
    tree.write({ path: "./Acc/A/Secret", format: "chr", value: "pw" });
    assert.equal(tree.get(SRV, "./Acc/A/Secret").status, 405);
    assert.equal(tree.read("./Acc/A/Secret")?.secret, true);
    assert.equal(text(tree.read("./Acc/A/Secret")?.value), "pw", "the gateway itself still reads it");
  });

  it("read() and childNames() of a missing node -> undefined; remove() of a missing node -> false", () => {
    const tree = memoryTree();
    assert.equal(tree.read("./Nope"), undefined);
    assert.equal(tree.childNames("./Nope"), undefined);
    assert.equal(tree.remove("./Nope"), false);
  });

  it("remove() deletes a subtree even of permanent nodes; remove('.') -> false", () => {
    const tree = memoryTree();
    tree.write({ path: "./GW/P", format: "chr", value: "x", permanent: true });
    assert.equal(tree.remove("./GW"), true);
    assert.equal(tree.read("./GW/P"), undefined);
    assert.equal(tree.remove("."), false);
  });

  it("read() of a node the server may not Get (ACL, access) returns it", () => {
    const tree = memoryTree();
    tree.write({ path: "./H", format: "chr", value: "x", acl: `Get=${OTHER}`, access: Access.Replace });
    assert.equal(text(tree.read("./H")?.value), "x");
  });
});

describe("MO hooks: check and added", () => {
  const SERVER = "srv1";
  function jobsTree(): DmTree {
    const tree = new DmTree(Store.open(":memory:"), {
      plugins: [
        {
          id: "jobs",
          root: "./Jobs",
          seed: () => [
            { path: "./Jobs", format: "node", acl: `Add=${SERVER}&Get=${SERVER}&Replace=${SERVER}` },
          ],
          check: (r) => (r.segments.at(-1) === "Ref" && r.value !== "known" ? 404 : undefined),
          added: (path, segments) =>
            segments.length === 2
              ? [
                  { path: `${path}/Status`, format: "chr", value: "Idle", access: Access.Get },
                  { path: `${path}/Start`, format: "null", access: Access.Exec },
                ]
              : [],
        },
      ],
    });
    tree.seed();
    return tree;
  }

  it("a value the MO refuses is answered with its status and nothing is written (Add and Replace)", () => {
    const tree = jobsTree();
    assert.equal(tree.add(SERVER, "./Jobs/j1/Ref", { format: "chr", value: "unknown" }).status, 404);
    assert.equal(tree.read("./Jobs/j1"), undefined, "not even the implicit parent");
    assert.equal(tree.add(SERVER, "./Jobs/j1/Ref", { format: "chr", value: "known" }).status, 200);
    assert.equal(tree.replace(SERVER, "./Jobs/j1/Ref", { value: "other" }).status, 404);
    assert.equal(tree.read("./Jobs/j1/Ref")?.value, "known");
  });

  it("the DDF children of an added node are written once, also under an implicit ancestor", () => {
    const tree = jobsTree();
    assert.equal(tree.add(SERVER, "./Jobs/j2/Ref", { format: "chr", value: "known" }).status, 200);
    assert.equal(tree.read("./Jobs/j2/Status")?.value, "Idle");
    assert.equal(tree.read("./Jobs/j2/Start")?.format, "null");
    tree.write({ path: "./Jobs/j2/Status", format: "chr", value: "InProgress", access: Access.Get });
    assert.equal(tree.add(SERVER, "./Jobs/j2/Other", { format: "chr", value: "x" }).status, 200);
    assert.equal(tree.read("./Jobs/j2/Status")?.value, "InProgress", "an existing child is kept");
    assert.equal(tree.replace(SERVER, "./Jobs/j2/Status", { value: "Done" }).status, 405, "Get-only");
  });
});
