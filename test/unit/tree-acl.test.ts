import assert from "node:assert/strict";
import {
  EMPTY_ACL,
  ROOT_DEFAULT_ACL,
  aclFrom,
  aclGrants,
  creatorAcl,
  effectiveAcl,
  formatAcl,
  isServerId,
  mayReplaceAcl,
  parseAcl,
  withoutServerId,
  type Acl,
} from "../../src/tree/acl.js";
import type { AclCommand } from "../../src/tree/types.js";

function acl(text: string): Acl {
  const r = parseAcl(text);
  assert.ok(r.ok, `expected "${text}" to parse, got ${r.ok ? "" : r.reason}`);
  return r.acl;
}

describe("parseAcl / formatAcl", () => {
  const rows: { text: string; canonical: string; why: string }[] = [
    { text: "", canonical: "", why: "empty ACL (inherit)" },
    { text: "Get=*", canonical: "Get=*", why: "wildcard" },
    {
      text: "Add=srvA&Get=*&Replace=srvA+srvB",
      canonical: "Add=srvA&Get=*&Replace=srvA+srvB",
      why: "spec example",
    },
    {
      text: "Add=www.sonera.fi-8765&Delete=www.sonera.fi-8765&Replace=www.sonera.fi-8765+321_&Get=*",
      canonical: "Add=www.sonera.fi-8765&Delete=www.sonera.fi-8765&Get=*&Replace=www.sonera.fi-8765+321_",
      why: "TND 7.7.1.5 example, reordered",
    },
    {
      text: "Replace=a&Get=b&Exec=c&Delete=d&Add=e",
      canonical: "Add=e&Delete=d&Exec=c&Get=b&Replace=a",
      why: "order",
    },
    { text: "Get=b+a", canonical: "Get=b+a", why: "ids keep their given order" },
    { text: "Get=a+b+a", canonical: "Get=a+b", why: "duplicate ids kept once" },
    { text: "Get=a&Get=b", canonical: "Get=a+b", why: "repeated command merged" },
    { text: "Get=a+b&Get=b+c", canonical: "Get=a+b+c", why: "merge keeps first occurrences" },
    { text: "Get=a&Get=*", canonical: "Get=*", why: "merge with * is *" },
    { text: "Get=a+*", canonical: "Get=*", why: "* overrides ids (TND 7.7.1.5)" },
    { text: "Get=*+*", canonical: "Get=*", why: "* twice" },
    {
      text: "Exec=srv:1/x?y#z@é",
      canonical: "Exec=srv:1/x?y#z@é",
      why: "printable punctuation and non-ASCII in ids",
    },
  ];
  for (const row of rows) {
    it(`"${row.text}" → "${row.canonical}" (${row.why})`, () => {
      const parsed = acl(row.text);
      assert.equal(formatAcl(parsed), row.canonical);
      assert.equal(formatAcl(acl(formatAcl(parsed))), row.canonical, "canonical text is a fixed point");
    });
  }

  it("maps each command to its ids, or to '*'", () => {
    const a = acl("Add=srvA&Get=*&Replace=srvA+srvB");
    assert.deepEqual([...a.keys()], ["Add", "Get", "Replace"]);
    assert.deepEqual(a.get("Add"), ["srvA"]);
    assert.equal(a.get("Get"), "*");
    assert.deepEqual(a.get("Replace"), ["srvA", "srvB"]);
    assert.equal(a.get("Delete"), undefined);
  });

  it("parses the empty string to an ACL with no entries", () => {
    assert.equal(acl("").size, 0);
    assert.equal(formatAcl(EMPTY_ACL), "");
  });

  it("returns ACLs that cannot be changed, even through a cast", () => {
    const a = acl("Get=a");
    assert.equal((a as unknown as { set?: unknown }).set, undefined);
    const ids = a.get("Get");
    assert.ok(Array.isArray(ids));
    assert.throws(() => {
      (ids as string[]).push("b");
    }, TypeError);
    assert.equal(formatAcl(a), "Get=a");
  });

  const refused: { text: string; why: string }[] = [
    { text: "&", why: "empty entries" },
    { text: "Get=*&", why: "trailing &" },
    { text: "&Get=*", why: "leading &" },
    { text: "Get=*&&Add=*", why: "empty entry in the middle" },
    { text: "Get", why: "no =" },
    { text: "Get=", why: "no ids" },
    { text: "=a", why: "no command" },
    { text: "get=*", why: "command is case-sensitive" },
    { text: "GET=*", why: "command is case-sensitive" },
    { text: "Copy=*", why: "no Copy entry" },
    { text: "Foo=a", why: "unknown command" },
    { text: " Get=a", why: "space before the command" },
    { text: "Get=a+", why: "empty id at the end" },
    { text: "Get=+a", why: "empty id at the start" },
    { text: "Get=a++b", why: "empty id in the middle" },
    { text: "Get=a=b", why: "= in an id" },
    { text: "Get=a b", why: "space in an id" },
    { text: "Get=a\tb", why: "tab in an id" },
    { text: "Get=a\u00a0b", why: "no-break space in an id" },
    { text: "Get=a\u0000", why: "control character in an id" },
    { text: "Get=a\u200b", why: "format character (zero-width space) in an id" },
    { text: "Get=a*", why: "* inside an id" },
    { text: "Get=*a", why: "* as an id prefix" },
  ];
  for (const row of refused) {
    it(`refuses ${JSON.stringify(row.text)} (${row.why})`, () => {
      const r = parseAcl(row.text);
      assert.ok(!r.ok, "refused");
      assert.ok(r.reason.length > 0, "with a reason");
    });
  }

  it("isServerId follows the identifier grammar", () => {
    assert.equal(isServerId("www.sonera.fi-8765"), true);
    assert.equal(isServerId("*"), false);
    assert.equal(isServerId(""), false);
    assert.equal(isServerId("a+b"), false);
    assert.equal(isServerId("a&b"), false);
  });

  it("aclFrom orders commands, merges repeats and drops empty lists", () => {
    const a = aclFrom([
      ["Get", ["x"]],
      ["Add", []],
      ["Get", ["y", "x"]],
      ["Add", ["z"]],
      ["Exec", []],
    ]);
    assert.equal(formatAcl(a), "Add=z&Get=x+y");
  });
});

describe("aclGrants", () => {
  const a = acl("Add=srvA&Delete=srvA+srvB&Get=*");
  const rows: [AclCommand, string, boolean][] = [
    ["Add", "srvA", true],
    ["Add", "srvB", false],
    ["Delete", "srvB", true],
    ["Get", "anyone", true],
    ["Get", "srvA", true],
    ["Replace", "srvA", false],
    ["Exec", "srvA", false],
    ["Add", "srva", false], // case-sensitive
    ["Add", "*", false], // '*' is not a server, and no entry lists it
  ];
  for (const [cmd, id, expected] of rows) {
    it(`${cmd} for ${id} → ${expected}`, () => {
      assert.equal(aclGrants(a, cmd, id), expected);
    });
  }

  it("grants nothing from the empty ACL (callers use the effective ACL)", () => {
    assert.equal(aclGrants(EMPTY_ACL, "Get", "srvA"), false);
  });
});

describe("effectiveAcl (inheritance)", () => {
  const root = acl("Add=*&Get=*&Replace=srvR");
  const mid = acl("Replace=srvM");
  const rows: { chain: Acl[]; expected: string; why: string }[] = [
    { chain: [acl("Get=srvN"), mid, root], expected: "Get=srvN", why: "own ACL" },
    { chain: [EMPTY_ACL, mid, root], expected: "Replace=srvM", why: "nearest non-empty ancestor" },
    { chain: [EMPTY_ACL, EMPTY_ACL, root], expected: "Add=*&Get=*&Replace=srvR", why: "up to the root" },
    { chain: [EMPTY_ACL, EMPTY_ACL], expected: "Add=*&Get=*", why: "empty root means the factory default" },
    { chain: [], expected: "Add=*&Get=*", why: "no chain at all" },
  ];
  for (const row of rows) {
    it(`${row.why} → "${row.expected}"`, () => {
      assert.equal(formatAcl(effectiveAcl(row.chain)), row.expected);
    });
  }

  it("takes the nearest ACL as a whole, not per command", () => {
    const eff = effectiveAcl([EMPTY_ACL, mid, root]);
    assert.equal(aclGrants(eff, "Replace", "srvM"), true);
    // The root grants Get=* but the nearest non-empty ACL (Replace=srvM) has no Get entry.
    assert.equal(aclGrants(eff, "Get", "srvM"), false);
    assert.equal(aclGrants(eff, "Replace", "srvR"), false);
  });

  it("ROOT_DEFAULT_ACL is Add=*&Get=*", () => {
    assert.equal(formatAcl(ROOT_DEFAULT_ACL), "Add=*&Get=*");
  });
});

describe("withoutServerId", () => {
  const rows: { before: string; id: string; after: string; isRoot?: boolean; why: string }[] = [
    { before: "Add=a+b&Get=b", id: "b", after: "Add=a", why: "an emptied entry disappears" },
    { before: "Add=a&Get=*", id: "a", after: "Get=*", why: "* entries stay" },
    { before: "Add=a+b+c&Replace=c+a", id: "a", after: "Add=b+c&Replace=c", why: "from every entry" },
    { before: "Get=a", id: "a", after: "", why: "everything removed: the node inherits" },
    { before: "Get=a", id: "z", after: "Get=a", why: "absent id: unchanged" },
    { before: "Get=ab", id: "a", after: "Get=ab", why: "whole-id match only" },
    { before: "", id: "a", after: "", why: "empty stays empty" },
    {
      before: "Add=a&Get=a&Replace=a+b",
      id: "a",
      isRoot: true,
      after: "Add=*&Get=*&Replace=b",
      why: "root: factory values",
    },
    { before: "Delete=a&Exec=a", id: "a", isRoot: true, after: "Add=*&Get=*", why: "root never empty" },
    {
      before: "Add=*&Get=a+b",
      id: "a",
      isRoot: true,
      after: "Add=*&Get=b",
      why: "root: only emptied commands reset",
    },
  ];
  for (const row of rows) {
    it(`"${row.before}" without ${row.id}${row.isRoot === true ? " (root)" : ""} → "${row.after}" (${row.why})`, () => {
      const stripped = withoutServerId(acl(row.before), row.id, row.isRoot === true ? { isRoot: true } : {});
      assert.equal(formatAcl(stripped), row.after);
    });
  }
});

describe("creatorAcl", () => {
  it("gives the creator Add, Delete and Replace", () => {
    const a = creatorAcl("srvA");
    assert.equal(formatAcl(a), "Add=srvA&Delete=srvA&Replace=srvA");
    assert.equal(aclGrants(a, "Get", "srvA"), false);
    assert.equal(aclGrants(a, "Replace", "srvB"), false);
  });

  it("refuses an identifier the ACL grammar cannot hold (programmer error)", () => {
    assert.throws(() => creatorAcl("a+b"), { code: "ERR_ASSERTION" });
  });
});

describe("mayReplaceAcl (TND 7.7.1.3)", () => {
  const grantsS = acl("Replace=S");
  const grantsOther = acl("Replace=T&Get=S");
  const rows: { isInterior: boolean; node: Acl; parent: Acl | undefined; expected: boolean; why: string }[] =
    [
      { isInterior: true, node: grantsS, parent: grantsOther, expected: true, why: "interior: own Replace" },
      {
        isInterior: true,
        node: grantsOther,
        parent: grantsS,
        expected: true,
        why: "interior: parent Replace",
      },
      { isInterior: true, node: grantsS, parent: grantsS, expected: true, why: "interior: both" },
      { isInterior: true, node: grantsOther, parent: grantsOther, expected: false, why: "interior: neither" },
      {
        isInterior: false,
        node: grantsS,
        parent: grantsOther,
        expected: false,
        why: "leaf: own Replace is not enough",
      },
      { isInterior: false, node: grantsOther, parent: grantsS, expected: true, why: "leaf: parent Replace" },
      { isInterior: false, node: grantsS, parent: grantsS, expected: true, why: "leaf: both" },
      { isInterior: false, node: grantsOther, parent: grantsOther, expected: false, why: "leaf: neither" },
      { isInterior: true, node: grantsS, parent: undefined, expected: true, why: "root: own Replace" },
      {
        isInterior: true,
        node: ROOT_DEFAULT_ACL,
        parent: undefined,
        expected: false,
        why: "root: factory ACL",
      },
      {
        isInterior: false,
        node: acl("Replace=*"),
        parent: acl("Get=*"),
        expected: false,
        why: "leaf: own * ignored",
      },
      { isInterior: false, node: EMPTY_ACL, parent: acl("Replace=*"), expected: true, why: "leaf: parent *" },
    ];
  for (const row of rows) {
    it(`${row.why} → ${row.expected}`, () => {
      assert.equal(
        mayReplaceAcl(
          { isInterior: row.isInterior, nodeEffectiveAcl: row.node, parentEffectiveAcl: row.parent },
          "S",
        ),
        row.expected,
      );
    });
  }
});
