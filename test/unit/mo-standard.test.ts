import assert from "node:assert/strict";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import { DEVDETAIL_MOID } from "../../src/mo/devdetail.js";
import { DEVINFO_MOID } from "../../src/mo/devinfo.js";
import { DMACC_MOID, dmAccPlugin, dmAccountAcl, type DmAccountConfig } from "../../src/mo/dmacc.js";
import { standardMoPlugins, standardPolicyFor, type GatewayIdentity } from "../../src/mo/standard.js";
import { StatusCode } from "../../src/syncml/constants.js";
import { Access, NodeFlag } from "../../src/tree/plugin.js";
import { Store } from "../../src/tree/store.js";
import { nodesToTnds, tndsToXml, type TndsNode } from "../../src/tree/tnds.js";
import { DmTree, type TreeNode } from "../../src/tree/tree.js";
import { childPath, parseUri } from "../../src/tree/uri.js";

const IDENTITY: GatewayIdentity = {
  devId: "IMEI:490154203237518",
  man: "ACME",
  mod: "GW-1",
  dmV: "1.2",
  lang: "en",
  oem: "ACME OEM",
  fwV: "fw-1.0",
  swV: "0.1.0",
  hwV: "rev-B",
  uriLimits: { maxDepth: 16, maxTotLen: 512, maxSegLen: 64 },
};

const CLIENT_SECRET = "client-secret-Xq7";
const SERVER_SECRET = "server-secret-Zp9";
const NONCE_TEXT = "nonce-bytes-secret";
const NONCE_B64 = Buffer.from(NONCE_TEXT).toString("base64");

const ACCOUNT: DmAccountConfig = {
  name: "dmserver",
  serverId: "srv1",
  serverName: "ACME DM",
  addr: "https://dm.example.com/dm",
  clientCred: { type: "DIGEST", name: "gw-1", secret: CLIENT_SECRET, nonce: NONCE_B64 },
  serverCred: { type: "HMAC", name: "srv1", secret: SERVER_SECRET },
};

const X = "./DMAcc/dmserver";
const CL = `${X}/AppAuth/ClientSide`;
const SV = `${X}/AppAuth/ServerSide`;

/** Every node seeding creates, parents first, with its format and value (bytes as hex). */
const LAYOUT: readonly (readonly [string, string, string?])[] = [
  ["./DevInfo", "node"],
  ["./DevInfo/DevId", "chr", "IMEI:490154203237518"],
  ["./DevInfo/Man", "chr", "ACME"],
  ["./DevInfo/Mod", "chr", "GW-1"],
  ["./DevInfo/DmV", "chr", "1.2"],
  ["./DevInfo/Lang", "chr", "en"],
  ["./DevDetail", "node"],
  ["./DevDetail/URI", "node"],
  ["./DevDetail/URI/MaxDepth", "chr", "16"],
  ["./DevDetail/URI/MaxTotLen", "chr", "512"],
  ["./DevDetail/URI/MaxSegLen", "chr", "64"],
  ["./DevDetail/DevTyp", "chr", "gateway"],
  ["./DevDetail/OEM", "chr", "ACME OEM"],
  ["./DevDetail/FwV", "chr", "fw-1.0"],
  ["./DevDetail/SwV", "chr", "0.1.0"],
  ["./DevDetail/HwV", "chr", "rev-B"],
  ["./DevDetail/LrgObj", "bool", "true"],
  ["./DMAcc", "node"],
  [X, "node"],
  [`${X}/AppID`, "chr", "w7"],
  [`${X}/ServerID`, "chr", "srv1"],
  [`${X}/Name`, "chr", "ACME DM"],
  [`${X}/AppAddr`, "node"],
  [`${X}/AppAddr/1`, "node"],
  [`${X}/AppAddr/1/Addr`, "chr", "https://dm.example.com/dm"],
  [`${X}/AppAddr/1/AddrType`, "chr", "URI"],
  [`${X}/AppAddr/1/Port`, "node"],
  [`${X}/AppAddr/1/Port/1`, "node"],
  [`${X}/AppAddr/1/Port/1/PortNbr`, "chr", "443"],
  [`${X}/AAuthPref`, "chr", "DIGEST"],
  [`${X}/AppAuth`, "node"],
  [CL, "node"],
  [`${CL}/AAuthLevel`, "chr", "CLCRED"],
  [`${CL}/AAuthType`, "chr", "DIGEST"],
  [`${CL}/AAuthName`, "chr", "gw-1"],
  [`${CL}/AAuthSecret`, "chr", CLIENT_SECRET],
  [`${CL}/AAuthData`, "bin", Buffer.from(NONCE_TEXT).toString("hex")],
  [SV, "node"],
  [`${SV}/AAuthLevel`, "chr", "SRVCRED"],
  [`${SV}/AAuthType`, "chr", "HMAC"],
  [`${SV}/AAuthName`, "chr", "srv1"],
  [`${SV}/AAuthSecret`, "chr", SERVER_SECRET],
  [`${SV}/AAuthData`, "bin", ""],
];

const SECRET_PATHS = [`${CL}/AAuthSecret`, `${CL}/AAuthData`, `${SV}/AAuthSecret`, `${SV}/AAuthData`];

function makeTree(
  store: Store,
  accounts: readonly DmAccountConfig[] = [ACCOUNT],
  identity = IDENTITY,
): DmTree {
  return new DmTree(store, {
    plugins: standardMoPlugins(identity, accounts),
    uriLimits: identity.uriLimits,
  });
}

/** Every node below the root, as the gateway sees it, parents first in name order. */
function walk(tree: DmTree, path = "."): TreeNode[] {
  const out: TreeNode[] = [];
  for (const name of tree.childNames(path) ?? []) {
    const child = childPath(path, name);
    const node = tree.read(child);
    assert.ok(node !== undefined);
    out.push(node, ...walk(tree, child));
  }
  return out;
}

function flagsOf(store: Store, path: string): { flags: number; access: number | null } {
  const parsed = parseUri(path, { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 });
  assert.ok(parsed.ok);
  let row = store.nodeById(1);
  for (const name of parsed.uri.segments) row = row === undefined ? undefined : store.child(row.id, name);
  assert.ok(row !== undefined, `${path} exists`);
  return { flags: row.flags, access: row.access };
}

function text(v: TreeNode["value"]): string | undefined {
  return v === undefined ? undefined : typeof v === "string" ? v : Buffer.from(v).toString("hex");
}

describe("standard MOs (DevInfo, DevDetail, DMAcc)", () => {
  let store: Store;
  let tree: DmTree;

  beforeEach(() => {
    store = Store.open(":memory:");
    tree = makeTree(store);
    tree.seed();
  });
  afterEach(() => {
    store.close();
  });

  describe("seeding", () => {
    it("creates exactly the DM 1.2 layout, with the identity's and the account's values", () => {
      const got = walk(tree).map((n) => [n.path, n.format, text(n.value)] as const);
      const expected = LAYOUT.map(([p, f, v]) => [p, f, f === "node" ? undefined : v] as const);
      const byPath = (a: readonly [string, ...unknown[]], b: readonly [string, ...unknown[]]): number =>
        a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      // Interior values (child lists) are not part of the layout.
      const gotLeaves = got.map(([p, f, v]) => [p, f, f === "node" ? undefined : v] as const);
      assert.deepEqual([...gotLeaves].sort(byPath), [...expected].sort(byPath));
    });

    it("writes each MO's MOID into its root's Type, so findByMoid finds each root", () => {
      assert.deepEqual(tree.findByMoid(DEVINFO_MOID), ["./DevInfo"]);
      assert.deepEqual(tree.findByMoid(DEVDETAIL_MOID), ["./DevDetail"]);
      assert.deepEqual(tree.findByMoid(DMACC_MOID), ["./DMAcc"]);
      const r = tree.get("srv1", "./DevInfo?prop=Type");
      assert.ok(r.kind === "prop");
      assert.equal(r.value, DEVINFO_MOID);
    });

    it("marks DevInfo and DevDetail Get-only and permanent, the account deletable by its server", () => {
      for (const [path] of LAYOUT.filter(([p]) => p.startsWith("./Dev"))) {
        const { flags, access } = flagsOf(store, path);
        assert.equal(access, Access.Get, path);
        assert.notEqual(flags & NodeFlag.Permanent, 0, path);
      }
      assert.notEqual(flagsOf(store, "./DMAcc").flags & NodeFlag.Permanent, 0);
      for (const [path] of LAYOUT.filter(([p]) => p.startsWith(X))) {
        assert.equal(flagsOf(store, path).flags & NodeFlag.Permanent, 0, path);
      }
    });

    it("flags AAuthSecret and AAuthData secret, and nothing else", () => {
      for (const [path] of LAYOUT) {
        const secret = (flagsOf(store, path).flags & NodeFlag.Secret) !== 0;
        assert.equal(secret, SECRET_PATHS.includes(path), path);
      }
    });

    it("gives the account node the ACL Add, Delete, Get and Replace for its ServerID", () => {
      assert.equal(tree.read(X)?.acl, "Add=srv1&Delete=srv1&Get=srv1&Replace=srv1");
      assert.equal(dmAccountAcl("srv1"), "Add=srv1&Delete=srv1&Get=srv1&Replace=srv1");
      assert.equal(tree.read("./DMAcc")?.acl, "Get=*");
    });

    it("keeps a value a server changed when seeded again, even from a changed configuration", () => {
      assert.equal(tree.replace("srv1", `${X}/Name`, { value: "Renamed by server" }).status, 200);
      const again = makeTree(store, [{ ...ACCOUNT, serverName: "Config name" }], {
        ...IDENTITY,
        man: "Other",
      });
      again.seed();
      again.seed();
      assert.equal(again.read(`${X}/Name`)?.value, "Renamed by server");
      assert.equal(again.read("./DevInfo/Man")?.value, "ACME");
      assert.equal(walk(again).length, LAYOUT.length);
    });

    it("keeps a server's deletion of a seeded node across restarts, and adds an account configured later", () => {
      assert.equal(tree.delete("srv1", `${X}/Name`).status, 200);
      const later: DmAccountConfig = {
        ...ACCOUNT,
        name: "backup",
        serverId: "srv2",
        addr: "http://backup.example.com:8080/dm",
      };
      const again = makeTree(store, [ACCOUNT, later]);
      again.seed();
      assert.equal(again.read(`${X}/Name`), undefined);
      assert.equal(again.read("./DMAcc/backup/AppAddr/1/Port/1/PortNbr")?.value, "8080");
      assert.equal(again.read("./DMAcc/backup")?.acl, "Add=srv2&Delete=srv2&Get=srv2&Replace=srv2");
    });

    it("defaults Name to the ServerID, AAuthPref to the client credential's type, and omits Port when the address has none", () => {
      const bare: DmAccountConfig = {
        name: "raw",
        serverId: "srv3",
        addr: "192.0.2.1",
        addrType: "IPv4",
        clientCred: { type: "BASIC", name: "a", secret: "b" },
        serverCred: { type: "BASIC", name: "c", secret: "d" },
      };
      const t = makeTree(Store.open(":memory:"), [bare]);
      t.seed();
      assert.equal(t.read("./DMAcc/raw/Name")?.value, "srv3");
      assert.equal(t.read("./DMAcc/raw/AAuthPref")?.value, "BASIC");
      assert.equal(t.read("./DMAcc/raw/AppAddr/1/AddrType")?.value, "IPv4");
      assert.equal(t.read("./DMAcc/raw/AppAddr/1/Port"), undefined);
      t.store.close();
    });
  });

  describe("DevInfo and DevDetail", () => {
    const leaves = LAYOUT.filter(([p, f]) => p.startsWith("./Dev") && f !== "node").map(([p]) => p);

    it("answers any server's Get with the value", () => {
      const r = tree.get("anyone", "./DevInfo/Man");
      assert.ok(r.kind === "node");
      assert.equal(r.node.value, "ACME");
      const list = tree.get("anyone", "./DevDetail?list=StructData");
      assert.ok(list.kind === "list");
      assert.equal(list.nodes.length, 11);
    });

    it("answers Replace on every leaf with 405", () => {
      for (const path of leaves) {
        assert.equal(tree.replace("srv1", path, { value: "x" }).status, StatusCode.CommandNotAllowed, path);
      }
    });

    it("answers Delete with 405 and an Add below the roots with 405", () => {
      assert.equal(tree.delete("srv1", "./DevInfo/Man").status, StatusCode.CommandNotAllowed);
      assert.equal(tree.delete("srv1", "./DevDetail").status, StatusCode.CommandNotAllowed);
      assert.equal(tree.add("srv1", "./DevInfo/Ext", {}).status, StatusCode.CommandNotAllowed);
      assert.equal(tree.add("srv1", "./DevDetail/URI/Other", { value: "1" }).status, 405);
      assert.equal(tree.read("./DevInfo/Ext"), undefined);
    });
  });

  describe("DMAcc secrets", () => {
    it("answers a server's Get of AAuthSecret and AAuthData with 405, even the account's own", () => {
      for (const path of SECRET_PATHS) {
        const r = tree.get("srv1", path);
        assert.equal(r.status, StatusCode.CommandNotAllowed, path);
        assert.equal(tree.get("srv1", `${path}?prop=Size`).status, StatusCode.CommandNotAllowed, path);
      }
    });

    it("leaves secret values out of Struct, StructData and TNDS", () => {
      for (const list of ["Struct", "StructData", "TNDS", "TNDS+ACL+Format+Size+Type+Value"]) {
        const r = tree.get("srv1", `./DMAcc?list=${list}`);
        assert.ok(r.kind === "list", list);
        assert.ok(
          r.nodes.some((n) => n.path === `${CL}/AAuthName`),
          list,
        );
        for (const n of r.nodes) {
          if (SECRET_PATHS.includes(n.path)) assert.equal(n.value, undefined, n.path);
          assert.notEqual(n.value, CLIENT_SECRET);
          assert.notEqual(n.value, SERVER_SECRET);
        }
        const tnds: TndsNode[] = r.nodes.map((n) => ({
          path: n.path,
          format: n.format,
          ...(n.value !== undefined && n.format !== "node" && { value: n.value }),
          ...(n.size !== undefined && { size: n.size }),
        }));
        const xml = Buffer.from(
          tndsToXml(nodesToTnds(tnds, { rootPath: "./DMAcc", props: { mode: "+", names: ["Value"] } })),
        ).toString("utf8");
        for (const secret of [CLIENT_SECRET, SERVER_SECRET, NONCE_B64])
          assert.ok(!xml.includes(secret), list);
      }
    });

    it("gives the secrets to the gateway through tree.read", () => {
      assert.equal(tree.read(`${CL}/AAuthSecret`)?.value, CLIENT_SECRET);
      assert.equal(tree.read(`${SV}/AAuthSecret`)?.value, SERVER_SECRET);
      const nonce = tree.read(`${CL}/AAuthData`)?.value;
      assert.ok(nonce instanceof Uint8Array);
      assert.equal(Buffer.from(nonce).toString("utf8"), NONCE_TEXT);
      assert.equal(tree.read(`${CL}/AAuthData`)?.format, "bin");
    });

    it("lets the account's server replace a secret it cannot read", () => {
      assert.equal(tree.replace("srv1", `${CL}/AAuthSecret`, { value: "rotated" }).status, 200);
      assert.equal(tree.read(`${CL}/AAuthSecret`)?.value, "rotated");
      assert.equal(tree.replace("srv2", `${CL}/AAuthSecret`, { value: "stolen" }).status, 425);
    });

    it("makes AAuthSecret and AAuthData a server adds under AppAuth/<x> secret", () => {
      const http = `${X}/AppAuth/HTTP`;
      assert.equal(tree.add("srv1", `${http}/AAuthLevel`, { value: "HTTP" }).status, 200);
      assert.equal(tree.add("srv1", `${http}/AAuthSecret`, { value: "http-pw" }).status, 200);
      assert.equal(
        tree.add("srv1", `${http}/AAuthData`, { format: "bin", value: Uint8Array.of(1) }).status,
        200,
      );
      assert.equal(tree.get("srv1", `${http}/AAuthLevel`).status, 200);
      assert.equal(tree.get("srv1", `${http}/AAuthSecret`).status, StatusCode.CommandNotAllowed);
      assert.equal(tree.get("srv1", `${http}/AAuthData`).status, StatusCode.CommandNotAllowed);
      assert.notEqual(flagsOf(store, `${http}/AAuthSecret`).flags & NodeFlag.Secret, 0);
      assert.equal(tree.read(`${http}/AAuthSecret`)?.value, "http-pw");
    });
  });

  describe("DMAcc ACL", () => {
    it("lets the account's ServerID Get, Replace, Add and Delete in its account", () => {
      const r = tree.get("srv1", `${X}/Name`);
      assert.ok(r.kind === "node");
      assert.equal(r.node.value, "ACME DM");
      assert.equal(tree.replace("srv1", `${X}/AppAddr/1/Addr`, { value: "https://new/dm" }).status, 200);
      assert.equal(tree.add("srv1", `${X}/PrefConRef`, { value: "wan0" }).status, 200);
      assert.equal(
        tree.replace("srv1", `${X}?prop=ACL`, { value: "Delete=srv1&Get=srv1+srv9&Replace=srv1" }).status,
        200,
      );
      assert.equal(tree.delete("srv1", X).status, 200);
      assert.equal(tree.read(X), undefined);
    });

    it("denies another server with 425", () => {
      assert.equal(tree.get("srv2", `${X}/Name`).status, StatusCode.PermissionDenied);
      assert.equal(tree.get("srv2", X).status, StatusCode.PermissionDenied);
      assert.equal(tree.replace("srv2", `${X}/Name`, { value: "x" }).status, StatusCode.PermissionDenied);
      assert.equal(tree.add("srv2", `${X}/Ext`, {}).status, StatusCode.PermissionDenied);
      assert.equal(tree.delete("srv2", X).status, StatusCode.PermissionDenied);
      assert.equal(tree.replace("srv2", `${X}?prop=ACL`, { value: "Get=srv2" }).status, 425);
      const list = tree.get("srv2", "./DMAcc?list=Struct");
      assert.ok(list.kind === "list");
      assert.deepEqual(
        list.nodes.map((n) => n.path),
        ["./DMAcc"],
      );
    });

    it("lets no server add an account or rewrite AppID and ServerID", () => {
      assert.equal(tree.add("srv2", "./DMAcc/mine", {}).status, StatusCode.PermissionDenied);
      assert.equal(tree.add("srv1", "./DMAcc/second", {}).status, StatusCode.PermissionDenied);
      assert.equal(tree.replace("srv1", `${X}/ServerID`, { value: "srv2" }).status, 405);
      assert.equal(tree.replace("srv1", `${X}/AppID`, { value: "w8" }).status, 405);
      assert.equal(tree.delete("srv1", `${X}/ServerID`).status, 405);
    });
  });

  describe("configuration checks", () => {
    const refuse = (accounts: DmAccountConfig[], pattern: RegExp): void => {
      assert.throws(
        () => dmAccPlugin(accounts),
        (e: unknown) => {
          assert.ok(isGatewayError(e, ErrorCode.Tree_InvalidPlugin));
          assert.match(e.message, pattern);
          for (const a of accounts) {
            assert.ok(!e.message.includes(a.clientCred.secret));
            if (a.clientCred.nonce !== undefined) assert.ok(!e.message.includes(a.clientCred.nonce));
          }
          return true;
        },
      );
    };

    it("refuses a name that is not one URI segment", () => {
      refuse([{ ...ACCOUNT, name: "a/b" }], /one URI segment/);
      refuse([{ ...ACCOUNT, name: "" }], /one URI segment/);
      refuse([{ ...ACCOUNT, name: "a%20b" }], /one URI segment/);
    });

    it("refuses a ServerID that cannot appear in an ACL", () => {
      refuse([{ ...ACCOUNT, serverId: "srv 1" }], /ServerID/);
      refuse([{ ...ACCOUNT, serverId: "a+b" }], /ServerID/);
    });

    it("refuses a repeated name or ServerID", () => {
      refuse([ACCOUNT, { ...ACCOUNT, serverId: "other" }], /twice/);
      refuse([ACCOUNT, { ...ACCOUNT, name: "other" }], /another account/);
    });

    it("refuses a port out of range and a nonce that is not Base64, without echoing the nonce", () => {
      refuse([{ ...ACCOUNT, portNbr: 70000 }], /port/);
      refuse([{ ...ACCOUNT, clientCred: { ...ACCOUNT.clientCred, nonce: "not base64!" } }], /nonce/);
    });

    it("refuses URI limits that are not non-negative integers", () => {
      assert.throws(
        () => standardMoPlugins({ ...IDENTITY, uriLimits: { maxDepth: -1, maxTotLen: 0, maxSegLen: 0 } }, []),
        (e: unknown) => isGatewayError(e, ErrorCode.Tree_InvalidPlugin),
      );
    });
  });

  describe("standardPolicyFor", () => {
    it("gives the policies the plugins give, without building them", () => {
      assert.deepEqual(standardPolicyFor(["DMAcc", "a", "AppAuth", "b", "AAuthSecret"]), {
        access: Access.Add | Access.Delete | Access.Replace,
        secret: true,
      });
      assert.equal(standardPolicyFor(["DMAcc", "a", "AppAuth", "b", "AAuthName"]), undefined);
      assert.equal(standardPolicyFor(["DevInfo", "Ext"])?.refuse, 405);
      assert.equal(standardPolicyFor(["GwMO", "Config"]), undefined);
    });
  });
});
