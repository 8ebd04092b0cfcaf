import assert from "node:assert/strict";
import {
  childPath,
  depthOf,
  escapeSegment,
  formatUri,
  isAncestorOrSelf,
  nameOf,
  parentOf,
  parseUri,
  type DmUri,
  type UriQuery,
} from "../../src/tree/uri.js";
import type { UriLimits } from "../../src/tree/types.js";

const NO_LIMITS: UriLimits = { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 };

function parsed(text: string, limits: UriLimits = NO_LIMITS): DmUri {
  const r = parseUri(text, limits);
  assert.ok(r.ok, `expected "${text}" to parse, got ${r.ok ? "" : `${r.status} ${r.reason}`}`);
  return r.uri;
}

function statusOf(text: string, limits: UriLimits = NO_LIMITS): number {
  const r = parseUri(text, limits);
  assert.ok(!r.ok, `expected "${text}" to be refused, got ${r.ok ? r.uri.path : ""}`);
  assert.ok(r.reason.length > 0, "a refusal carries a reason");
  return r.status;
}

describe("parseUri: accepted URIs and their canonical path", () => {
  const rows: { text: string; path: string; segments: string[] }[] = [
    { text: ".", path: ".", segments: [] },
    { text: "A", path: "./A", segments: ["A"] },
    { text: "./A", path: "./A", segments: ["A"] },
    { text: "A/B", path: "./A/B", segments: ["A", "B"] },
    { text: "./A/B", path: "./A/B", segments: ["A", "B"] },
    { text: "./DMAcc/xyzInc", path: "./DMAcc/xyzInc", segments: ["DMAcc", "xyzInc"] },
    { text: "./.hidden/a.b/...", path: "./.hidden/a.b/...", segments: [".hidden", "a.b", "..."] },
    { text: "./%41", path: "./A", segments: ["A"] },
    { text: "./caf%C3%A9", path: "./café", segments: ["café"] },
    { text: "./café", path: "./café", segments: ["café"] },
    { text: "./a%25b", path: "./a%25b", segments: ["a%b"] },
    { text: "./a%3Fb", path: "./a%3Fb", segments: ["a?b"] },
    { text: "./a%0Ab", path: "./a%0Ab", segments: ["a\nb"] },
    { text: "./a b/c&d/e+f", path: "./a b/c&d/e+f", segments: ["a b", "c&d", "e+f"] },
    { text: "./%F0%9F%98%80", path: "./😀", segments: ["😀"] },
    { text: "./a%2Eb", path: "./a.b", segments: ["a.b"] },
  ];

  for (const row of rows) {
    it(`"${row.text}" → ${row.path}`, () => {
      const uri = parsed(row.text);
      assert.equal(uri.path, row.path);
      assert.deepEqual(uri.segments, row.segments);
      assert.equal(uri.query, undefined);
    });
  }

  it("gives ./A/B and A/B the same path and segments", () => {
    assert.deepEqual(parsed("./A/B"), parsed("A/B"));
  });

  it("treats names case-sensitively", () => {
    assert.notEqual(parsed("./a").path, parsed("./A").path);
  });
});

describe("parseUri: 400 Bad Request", () => {
  const rows: { text: string; why: string }[] = [
    { text: "", why: "empty" },
    { text: "./", why: "the root is '.', not './' (TND 5)" },
    { text: "A/", why: "trailing /" },
    { text: "./A/B/", why: "trailing / after ./" },
    { text: "A//B", why: "empty segment" },
    { text: ".//A", why: "empty first segment" },
    { text: "./A/./B", why: ". segment" },
    { text: "././A", why: "./ twice" },
    { text: "./A/../B", why: ".. segment" },
    { text: "..", why: ".. alone" },
    { text: "../A", why: "../ prefix" },
    { text: "./A/..", why: ".. at the end" },
    { text: "./%2E", why: "escaped ." },
    { text: "./A/%2E%2E", why: "escaped .." },
    { text: "/A", why: "leading /" },
    { text: "/", why: "/ alone" },
    { text: "http://example.com/A", why: "absolute" },
    { text: "./a%2Fb", why: "decoded / in a name (upper-case escape)" },
    { text: "./a%2fb", why: "decoded / in a name (lower-case escape)" },
    { text: "./a%", why: "% at the end" },
    { text: "./a%4", why: "% with one hex digit" },
    { text: "./a%G0", why: "non-hex digit" },
    { text: "./a%C3", why: "truncated UTF-8" },
    { text: "./a%FF", why: "invalid UTF-8 byte" },
    { text: "./a%C3%28", why: "invalid UTF-8 continuation" },
    { text: "./a\nb", why: "raw control character" },
    { text: "./a\u007fb", why: "raw DEL" },
    { text: "./a\ud800b", why: "lone surrogate" },
    { text: "./A?", why: "empty query" },
    { text: "./A?foo=bar", why: "unknown query key" },
    { text: "./A?prop", why: "prop without =" },
    { text: "./A?prop=", why: "prop without name" },
    { text: "./A?prop=ACL&list=TNDS", why: "two query parameters" },
    { text: "./A?list=", why: "list without kind" },
    { text: "./A?list=TNDS+ACL-Format", why: "+ and - mixed" },
    { text: "./A?list=TNDS-Format+ACL", why: "- and + mixed" },
    { text: "./A?list=TNDS+", why: "empty name after +" },
    { text: "./A?list=TNDS+ACL++Value", why: "empty name between +" },
    { text: "./A?list=TNDS-", why: "empty name after -" },
    { text: "./A?list=Struct+ACL", why: "selection on Struct" },
    { text: "./A?list=StructData-Value", why: "selection on StructData" },
    { text: "?prop=ACL", why: "query without path" },
  ];
  for (const row of rows) {
    it(`refuses ${JSON.stringify(row.text)} (${row.why})`, () => {
      assert.equal(statusOf(row.text), 400);
    });
  }
});

describe("parseUri: 406 Optional feature not supported", () => {
  const rows = [
    "./A?prop=Foo",
    "./A?prop=acl", // property names are case-sensitive
    "./A?prop=Value", // Value is a TNDS selection, not a property
    "./A?list=Tree",
    "./A?list=tnds",
    "./A?list=Foo+ACL",
    "./A?list=TNDS+Foo",
    "./A?list=TNDS-ACL-Bogus",
  ];
  for (const text of rows) {
    it(`refuses "${text}" with 406`, () => {
      assert.equal(statusOf(text), 406);
    });
  }
});

describe("parseUri: 414 URI too long", () => {
  const rows: { text: string; limits: UriLimits; status: 414 | "ok" }[] = [
    // MaxDepth counts segments
    { text: "./A/B/C", limits: { maxDepth: 3, maxTotLen: 0, maxSegLen: 0 }, status: "ok" },
    { text: "./A/B/C/D", limits: { maxDepth: 3, maxTotLen: 0, maxSegLen: 0 }, status: 414 },
    { text: ".", limits: { maxDepth: 1, maxTotLen: 0, maxSegLen: 0 }, status: "ok" },
    // MaxTotLen: the URI as received, without the query
    { text: "./ABC", limits: { maxDepth: 0, maxTotLen: 5, maxSegLen: 0 }, status: "ok" },
    { text: "./ABCD", limits: { maxDepth: 0, maxTotLen: 5, maxSegLen: 0 }, status: 414 },
    { text: "ABCDE", limits: { maxDepth: 0, maxTotLen: 5, maxSegLen: 0 }, status: "ok" },
    { text: "./ABC?prop=ACL", limits: { maxDepth: 0, maxTotLen: 5, maxSegLen: 0 }, status: "ok" },
    { text: "./%41", limits: { maxDepth: 0, maxTotLen: 4, maxSegLen: 0 }, status: 414 },
    { text: "./éé", limits: { maxDepth: 0, maxTotLen: 4, maxSegLen: 0 }, status: "ok" },
    { text: "./😀😀", limits: { maxDepth: 0, maxTotLen: 4, maxSegLen: 0 }, status: "ok" },
    // MaxSegLen: characters of the received (escaped) form
    { text: "./ABCD/EF", limits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 4 }, status: "ok" },
    { text: "./ABCDE/EF", limits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 4 }, status: 414 },
    { text: "./A/%41%42", limits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 4 }, status: 414 },
    { text: "./A/😀😀😀😀", limits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 4 }, status: "ok" },
    // the limit that trips first in rule order: total length before anything else
    { text: "./A//B", limits: { maxDepth: 0, maxTotLen: 3, maxSegLen: 0 }, status: 414 },
  ];
  for (const row of rows) {
    it(`"${row.text}" with ${JSON.stringify(row.limits)} → ${row.status}`, () => {
      const r = parseUri(row.text, row.limits);
      if (row.status === "ok") assert.ok(r.ok, r.ok ? "" : r.reason);
      else assert.equal(r.ok ? "ok" : r.status, 414);
    });
  }

  it("checks syntax before depth and segment length (a . segment is 400 even when too deep)", () => {
    assert.equal(statusOf("./A/B/./C", { maxDepth: 2, maxTotLen: 0, maxSegLen: 0 }), 400);
  });

  it("checks segment length before escapes (an over-long malformed segment is 414)", () => {
    assert.equal(statusOf("./A%ZZZZ", { maxDepth: 0, maxTotLen: 0, maxSegLen: 4 }), 414);
  });
});

describe("parseUri: queries", () => {
  const rows: { text: string; query: UriQuery }[] = [
    { text: "./A?prop=ACL", query: { kind: "prop", prop: "ACL" } },
    { text: "./A?prop=Format", query: { kind: "prop", prop: "Format" } },
    { text: "./A?prop=Name", query: { kind: "prop", prop: "Name" } },
    { text: "./A?prop=Size", query: { kind: "prop", prop: "Size" } },
    { text: "./A?prop=Title", query: { kind: "prop", prop: "Title" } },
    { text: "./A?prop=TStamp", query: { kind: "prop", prop: "TStamp" } },
    { text: "./A?prop=Type", query: { kind: "prop", prop: "Type" } },
    { text: "./A?prop=VerNo", query: { kind: "prop", prop: "VerNo" } },
    { text: "./A?list=Struct", query: { kind: "list", list: "Struct" } },
    { text: "./A?list=StructData", query: { kind: "list", list: "StructData" } },
    { text: "./A?list=TNDS", query: { kind: "list", list: "TNDS" } },
    {
      text: "./A?list=TNDS+ACL+Value",
      query: { kind: "list", list: "TNDS", props: { mode: "+", names: ["ACL", "Value"] } },
    },
    {
      text: "./A?list=TNDS-Format",
      query: { kind: "list", list: "TNDS", props: { mode: "-", names: ["Format"] } },
    },
    {
      text: "./A?list=TNDS+Value+ACL+Value",
      query: { kind: "list", list: "TNDS", props: { mode: "+", names: ["Value", "ACL"] } },
    },
    {
      text: "./A?list=TNDS+ACL+Format+Name+Size+Title+TStamp+Type+VerNo+Value",
      query: {
        kind: "list",
        list: "TNDS",
        props: {
          mode: "+",
          names: ["ACL", "Format", "Name", "Size", "Title", "TStamp", "Type", "VerNo", "Value"],
        },
      },
    },
    { text: ".?prop=ACL", query: { kind: "prop", prop: "ACL" } },
  ];
  for (const row of rows) {
    it(`"${row.text}"`, () => {
      const uri = parsed(row.text);
      assert.deepEqual(uri.query, row.query);
      assert.equal(uri.path, row.text.startsWith(".?") ? "." : "./A");
    });
  }

  it("omits props for a bare ?list=TNDS (exactOptionalPropertyTypes)", () => {
    const q = parsed("./A?list=TNDS").query;
    assert.ok(q !== undefined && q.kind === "list");
    assert.equal("props" in q, false);
  });

  it("splits the query at the first ? only; an escaped ? stays in the name", () => {
    const uri = parsed("./a%3Fb?prop=ACL");
    assert.deepEqual(uri.segments, ["a?b"]);
    assert.deepEqual(uri.query, { kind: "prop", prop: "ACL" });
  });
});

describe("formatUri and escaping", () => {
  const rows: { segments: string[]; path: string }[] = [
    { segments: [], path: "." },
    { segments: ["A"], path: "./A" },
    { segments: ["A", "B"], path: "./A/B" },
    { segments: ["a%b"], path: "./a%25b" },
    { segments: ["a?b"], path: "./a%3Fb" },
    { segments: ["\u0000\u001f\u007f"], path: "./%00%1F%7F" },
    { segments: ["\u0085"], path: "./%C2%85" },
    { segments: ["café", "a b", "x&y+z=w"], path: "./café/a b/x&y+z=w" },
  ];
  for (const row of rows) {
    it(`${JSON.stringify(row.segments)} → "${row.path}" and back`, () => {
      assert.equal(formatUri(row.segments), row.path);
      const back = parsed(row.path);
      assert.deepEqual(back.segments, row.segments);
      assert.equal(back.path, row.path);
    });
  }

  const received = [
    "A/B",
    "./%41/%62",
    "./caf%c3%a9",
    "./a%25b%3f",
    "./x%0a%7F",
    "./%E2%82%AC%20euro",
    "./a%3F%3f",
  ];
  for (const text of received) {
    it(`formatUri(parse("${text}").segments) is the canonical path, and canonical paths are fixed points`, () => {
      const uri = parsed(text);
      assert.equal(formatUri(uri.segments), uri.path);
      assert.deepEqual(parsed(uri.path), uri);
      assert.equal(parsed(uri.path).path, uri.path);
    });
  }

  it("escapes a / in a name, which parseUri then refuses to decode (names never contain /)", () => {
    assert.equal(formatUri(["a/b", "c"]), "./a%2Fb/c");
    assert.equal(statusOf("./a%2Fb/c"), 400);
  });

  it("escapeSegment leaves ordinary characters alone", () => {
    assert.equal(escapeSegment("Ab9-_.~ é😀&+=#"), "Ab9-_.~ é😀&+=#");
  });
});

describe("canonical path helpers", () => {
  const parents: [string, string | undefined][] = [
    [".", undefined],
    ["./A", "."],
    ["./A/B", "./A"],
    ["./A/B/C", "./A/B"],
    ["./a%2Fb", "."],
    ["./x/a%2Fb", "./x"],
  ];
  for (const [path, parent] of parents) {
    it(`parentOf("${path}") = ${String(parent)}`, () => {
      assert.equal(parentOf(path), parent);
    });
  }

  const children: [string, string, string][] = [
    [".", "A", "./A"],
    ["./A", "B", "./A/B"],
    ["./A", "a/b", "./A/a%2Fb"],
    ["./A", "50%", "./A/50%25"],
  ];
  for (const [path, name, child] of children) {
    it(`childPath("${path}", "${name}") = "${child}"`, () => {
      assert.equal(childPath(path, name), child);
      assert.equal(parentOf(child), path);
      assert.equal(nameOf(child), name);
      assert.equal(child, formatUri([...parsed(path).segments, name]));
    });
  }

  const ancestry: [string, string, boolean][] = [
    ["./A", "./A/B", true],
    ["./A", "./A", true],
    ["./A", "./AB", false],
    ["./A", "./AB/C", false],
    ["./A/B", "./A", false],
    [".", "./A/B", true],
    [".", ".", true],
    ["./A", ".", false],
    ["./A/B", "./A/B/C/D", true],
    ["./B", "./A/B", false],
  ];
  for (const [ancestor, path, expected] of ancestry) {
    it(`isAncestorOrSelf("${ancestor}", "${path}") = ${expected}`, () => {
      assert.equal(isAncestorOrSelf(ancestor, path), expected);
    });
  }

  const depths: [string, number][] = [
    [".", 0],
    ["./A", 1],
    ["./A/B", 2],
    ["./A/a%25b/C", 3],
  ];
  for (const [path, depth] of depths) {
    it(`depthOf("${path}") = ${depth}`, () => {
      assert.equal(depthOf(path), depth);
      assert.equal(parsed(path).segments.length, depth);
    });
  }

  const names: [string, string][] = [
    [".", "."],
    ["./A", "A"],
    ["./A/B", "B"],
    ["./A/a%2Fb", "a/b"],
    ["./caf%C3%A9", "café"], // not canonical, still decoded
    ["./%00x%7F", "\u0000x\u007f"],
    ["./x/50%25", "50%"],
  ];
  for (const [path, name] of names) {
    it(`nameOf("${path}") = ${JSON.stringify(name)}`, () => {
      assert.equal(nameOf(path), name);
    });
  }
});
