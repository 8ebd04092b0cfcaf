import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { standardMoPlugins, type DmAccountConfig, type GatewayIdentity } from "../../src/mo/standard.js";
import { Store } from "../../src/tree/store.js";
import { tndsFromXml, tndsToNodes } from "../../src/tree/tnds.js";
import { DmTree } from "../../src/tree/tree.js";
import { runCli, type CliResult } from "../helpers/cli.js";

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
const NONCE_B64 = Buffer.from("nonce-bytes-secret").toString("base64");
const SECRETS = [CLIENT_SECRET, SERVER_SECRET, NONCE_B64];
const ACCOUNT: DmAccountConfig = {
  name: "dmserver",
  serverId: "srv1",
  serverName: "ACME DM",
  addr: "https://dm.example.com/dm",
  clientCred: { type: "DIGEST", name: "gw-1", secret: CLIENT_SECRET, nonce: NONCE_B64 },
  serverCred: { type: "HMAC", name: "srv1", secret: SERVER_SECRET },
};
const CL = "./DMAcc/dmserver/AppAuth/ClientSide";

/** A dmgw database as the service leaves it after its first start: the standard MOs seeded. */
function createDb(file: string): void {
  const store = Store.open(file);
  try {
    const tree = new DmTree(store, {
      plugins: standardMoPlugins(IDENTITY, [ACCOUNT]),
      uriLimits: IDENTITY.uriLimits,
    });
    tree.seed();
  } finally {
    store.close();
  }
}

/** What `--json` prints for a node. */
interface JsonNode {
  readonly path: string;
  readonly name: string;
  readonly format: string;
  readonly type?: string;
  readonly value?: unknown;
  readonly secret?: boolean;
  readonly children?: string[];
}

function out(r: CliResult): string {
  return r.stdout.toString("utf8");
}

function assertOk(r: CliResult): void {
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
}

/** One line on stderr, nothing on stdout, the given status. */
function assertFails(r: CliResult, status: number, pattern: RegExp): void {
  assert.equal(r.status, status, r.stderr);
  assert.equal(r.stdout.length, 0, out(r));
  assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, pattern);
}

function assertNoSecret(text: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `a secret was printed:\n${text}`);
}

describe("dmgw tree (CLI)", function () {
  // Each case spawns the CLI from the TypeScript sources a few times.
  this.timeout(60_000);
  let dir: string;
  let db: string;
  const tree = (...args: string[]): CliResult => runCli(["tree", ...args, "--db", db]);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-cli-tree-"));
    db = join(dir, "dmgw.db");
    createDb(db);
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe("get", () => {
    it("prints a leaf's value", () => {
      const r = tree("get", "./DevInfo/Man");
      assertOk(r);
      assert.equal(out(r), "ACME\n");
    });

    it("prints an interior node's child names, one per line", () => {
      const r = tree("get", "DevInfo");
      assertOk(r);
      assert.equal(out(r), "DevId\nDmV\nLang\nMan\nMod\n");
    });

    it("prints an object with --json", () => {
      const r = tree("get", "./DevDetail/LrgObj", "--json");
      assertOk(r);
      const node = JSON.parse(out(r)) as JsonNode;
      assert.equal(node.path, "./DevDetail/LrgObj");
      assert.equal(node.format, "bool");
      assert.equal(node.value, "true");
      const acc = JSON.parse(out(tree("get", "./DMAcc", "--json"))) as JsonNode;
      assert.deepEqual(acc.children, ["dmserver"]);
      assert.equal(acc.type, "urn:oma:mo:oma-dm-dmacc:1.0");
    });

    it("prints <secret> for a secret, and no value with --json", () => {
      const r = tree("get", `${CL}/AAuthSecret`);
      assertOk(r);
      assert.equal(out(r), "<secret>\n");
      for (const leaf of ["AAuthSecret", "AAuthData"]) {
        const j = tree("get", `${CL}/${leaf}`, "--json");
        assertOk(j);
        const node = JSON.parse(out(j)) as JsonNode;
        assert.equal(node.secret, true);
        assert.equal("value" in node, false);
        assert.equal("size" in node, false);
        assertNoSecret(out(j));
      }
    });

    it("answers a missing node with exit 1 and one line saying not found", () => {
      assertFails(tree("get", "./DevInfo/Nope"), 1, /\.\/DevInfo\/Nope not found/);
    });

    it("answers a malformed URI or a query with exit 64", () => {
      assertFails(tree("get", "./DevInfo/"), 64, /invalid URI/);
      assertFails(tree("get", "./DevInfo?prop=ACL"), 64, /query/);
    });
  });

  describe("set", () => {
    it("replaces a leaf's value and prints nothing", () => {
      const r = tree("set", "./DMAcc/dmserver/Name", "New name");
      assertOk(r);
      assert.equal(r.stdout.length, 0);
      assert.equal(out(tree("get", "./DMAcc/dmserver/Name")), "New name\n");
    });

    it("creates a missing node and its ancestors", () => {
      assertOk(tree("set", "./Vendor/ACME/Counter", "42", "--format", "int"));
      assert.equal(
        out(tree("list", "./Vendor")),
        "./Vendor\tnode\n./Vendor/ACME\tnode\n./Vendor/ACME/Counter\tint\t42\n",
      );
    });

    it("takes b64 and bin values as Base64 and stores bytes", () => {
      assertOk(tree("set", "./Vendor/Blob", "AAEC/w==", "--format", "b64"));
      assert.equal(out(tree("list", "./Vendor/Blob")), "./Vendor/Blob\tbin\tb64:AAEC/w==\n");
      assertOk(tree("set", "./Vendor/Blob", "BAU="));
      assert.equal(out(tree("get", "./Vendor/Blob")), "b64:BAU=\n");
      const j = JSON.parse(out(tree("get", "./Vendor/Blob", "--json"))) as { value: unknown };
      assert.deepEqual(j.value, { base64: "BAU=" });
    });

    it("refuses a value its format cannot hold with exit 64", () => {
      assertFails(tree("set", "./Vendor/N", "many", "--format", "int"), 64, /not an int/);
      assertFails(tree("set", "./Vendor/B", "@@", "--format", "bin"), 64, /Base64/);
      assert.equal(tree("get", "./Vendor").status, 1);
    });

    it("refuses an interior node and a node below a leaf with exit 1", () => {
      assertFails(tree("set", "./DevInfo", "x"), 1, /interior/);
      assertFails(tree("set", "./DevInfo/Man/Sub", "x"), 1, /leaf/);
      assertFails(tree("set", ".", "x"), 1, /root/);
    });

    it("keeps a secret secret: setting it prints nothing, reading it shows <secret>", () => {
      assertOk(tree("set", `${CL}/AAuthSecret`, "rotated-Qw3"));
      assert.equal(out(tree("get", `${CL}/AAuthSecret`)), "<secret>\n");
      // A new credential under AppAuth/<x> is secret as when a server adds it.
      assertOk(tree("set", "./DMAcc/dmserver/AppAuth/HTTP/AAuthSecret", "http-pw-Rt5"));
      const listed = out(tree("list", "./DMAcc"));
      assert.match(listed, /\/AppAuth\/HTTP\/AAuthSecret\tchr\t<secret>\n/);
      assert.ok(!listed.includes("rotated-Qw3") && !listed.includes("http-pw-Rt5"));
      // The gateway itself still reads the values.
      const store = Store.open(db, { create: false });
      try {
        const t = new DmTree(store);
        assert.equal(t.read(`${CL}/AAuthSecret`)?.value, "rotated-Qw3");
        assert.equal(t.read("./DMAcc/dmserver/AppAuth/HTTP/AAuthSecret")?.value, "http-pw-Rt5");
      } finally {
        store.close();
      }
    });

    it("sets a null node without a VALUE", () => {
      assertOk(tree("set", "./Vendor/Flag", "--format", "null"));
      assert.equal(out(tree("list", "./Vendor/Flag")), "./Vendor/Flag\tnull\t\n");
    });
  });

  describe("list", () => {
    it("prints one line per node: path, format, value", () => {
      const r = tree("list", "./DevInfo");
      assertOk(r);
      assert.equal(
        out(r),
        [
          "./DevInfo\tnode",
          "./DevInfo/DevId\tchr\tIMEI:490154203237518",
          "./DevInfo/DmV\tchr\t1.2",
          "./DevInfo/Lang\tchr\ten",
          "./DevInfo/Man\tchr\tACME",
          "./DevInfo/Mod\tchr\tGW-1",
          "",
        ].join("\n"),
      );
    });

    it("limits the depth with --depth", () => {
      assert.equal(out(tree("list", ".", "--depth", "0")), ".\tnode\n");
      assert.deepEqual(
        out(tree("list", ".", "--depth", "1"))
          .trimEnd()
          .split("\n"),
        [".\tnode", "./DMAcc\tnode", "./DevDetail\tnode", "./DevInfo\tnode"],
      );
      const two = out(tree("list", "./DevDetail", "--depth", "1"));
      assert.ok(two.includes("./DevDetail/URI\tnode\n"));
      assert.ok(!two.includes("MaxDepth"));
      const r = tree("list", ".", "--depth=-1");
      assert.equal(r.status, 64);
      assert.match(r.stderr, /--depth takes a number/);
    });

    it("escapes control characters so that each node stays on one line", () => {
      assertOk(tree("set", "./Vendor/Text", "a\nb\tc\\d"));
      assert.equal(out(tree("list", "./Vendor/Text")), "./Vendor/Text\tchr\ta\\nb\\tc\\\\d\n");
      assert.equal(out(tree("get", "./Vendor/Text")), "a\nb\tc\\d\n");
    });

    it("prints an array with --json", () => {
      const r = tree("list", "./DevDetail/URI", "--json");
      assertOk(r);
      const nodes = JSON.parse(out(r)) as { path: string; format: string; value?: string }[];
      assert.deepEqual(
        nodes.map((n) => [n.path, n.format, n.value]),
        [
          ["./DevDetail/URI", "node", undefined],
          ["./DevDetail/URI/MaxDepth", "chr", "16"],
          ["./DevDetail/URI/MaxSegLen", "chr", "64"],
          ["./DevDetail/URI/MaxTotLen", "chr", "512"],
        ],
      );
    });

    it("answers a missing node with exit 1", () => {
      assertFails(tree("list", "./Nope"), 1, /not found/);
    });
  });

  describe("export", () => {
    it("prints the subtree as TNDS XML that reads back", () => {
      const r = tree("export", "./DevInfo", "--tnds");
      assertOk(r);
      const text = out(r);
      assert.match(text, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<MgmtTree xmlns="syncml:dmddf1.2">/);
      const decoded = tndsToNodes(tndsFromXml(r.stdout), ".");
      assert.ok(decoded.ok, decoded.ok ? "" : decoded.reason);
      assert.deepEqual(
        decoded.nodes.map((n) => [n.path, n.format, n.value]),
        [
          ["./DevInfo", "node", undefined],
          ["./DevInfo/DevId", "chr", "IMEI:490154203237518"],
          ["./DevInfo/DmV", "chr", "1.2"],
          ["./DevInfo/Lang", "chr", "en"],
          ["./DevInfo/Man", "chr", "ACME"],
          ["./DevInfo/Mod", "chr", "GW-1"],
        ],
      );
      assert.equal(decoded.nodes[0]?.type, "urn:oma:mo:oma-dm-devinfo:1.0");
    });

    it("leaves secret values out, keeping the nodes", () => {
      const r = tree("export", "./DMAcc", "--tnds");
      assertOk(r);
      assertNoSecret(out(r));
      const decoded = tndsToNodes(tndsFromXml(r.stdout), ".");
      assert.ok(decoded.ok);
      const secret = decoded.nodes.find((n) => n.path === `${CL}/AAuthSecret`);
      assert.ok(secret !== undefined);
      assert.equal(secret.value, undefined);
      assert.equal(decoded.nodes.find((n) => n.path === `${CL}/AAuthName`)?.value, "gw-1");
      assert.equal(
        decoded.nodes.find((n) => n.path === "./DMAcc/dmserver")?.acl,
        "Add=srv1&Delete=srv1&Get=srv1&Replace=srv1",
      );
    });

    it("wraps the document in JSON with --json", () => {
      const r = tree("export", ".", "--tnds", "--json");
      assertOk(r);
      const doc = JSON.parse(out(r)) as { contentType: string; tnds: string };
      assert.equal(doc.contentType, "application/vnd.syncml.dmtnds+xml");
      assert.ok(tndsToNodes(tndsFromXml(doc.tnds), ".").ok);
      assertNoSecret(doc.tnds);
    });

    it("needs --tnds (exit 64)", () => {
      const r = tree("export", "./DevInfo");
      assert.equal(r.status, 64);
      assert.match(r.stderr, /--tnds/);
      assert.equal(r.stdout.length, 0);
    });
  });

  it("never prints a secret, whatever the command and format", () => {
    const runs = [
      tree("list", "."),
      tree("list", ".", "--json"),
      tree("export", ".", "--tnds"),
      tree("export", ".", "--tnds", "--json"),
      ...["AAuthSecret", "AAuthData"].flatMap((leaf) => [
        tree("get", `${CL}/${leaf}`, "--json"),
        tree("list", `${CL}/${leaf}`),
      ]),
      tree("export", `${CL}/AAuthData`, "--tnds"),
    ];
    for (const r of runs) {
      assertOk(r);
      assertNoSecret(out(r));
    }
  });

  describe("the database", () => {
    it("is not created when missing: exit 66, one line naming the file", () => {
      const missing = join(dir, "absent.db");
      for (const args of [
        ["get", "./DevInfo/Man"],
        ["set", "./A", "1"],
        ["list", "."],
        ["export", ".", "--tnds"],
      ]) {
        assertFails(runCli(["tree", ...args, "--db", missing]), 66, /absent\.db does not exist/);
      }
      assert.equal(existsSync(missing), false);
      assert.equal(existsSync(`${missing}-wal`), false);
    });

    it("is refused when corrupt: exit 65, one line naming the file, the file untouched", () => {
      const bad = join(dir, "corrupt.db");
      const garbage = Buffer.from("this is not a database, just some bytes to refuse".repeat(20));
      writeFileSync(bad, garbage);
      assertFails(runCli(["tree", "list", ".", "--db", bad]), 65, /corrupt\.db/);
      assert.deepEqual(readFileSync(bad), garbage);
      const truncated = join(dir, "truncated.db");
      writeFileSync(truncated, readFileSync(db).subarray(0, 1000));
      const r = runCli(["tree", "get", "./DevInfo/Man", "--db", truncated]);
      assert.equal(r.status, 65, r.stderr);
      assert.match(r.stderr, /truncated\.db/);
    });

    it("is refused when it is another program's database or empty", () => {
      const foreign = join(dir, "foreign.db");
      const other = new Database(foreign);
      other.exec("CREATE TABLE t (x)");
      other.close();
      assertFails(
        runCli(["tree", "list", ".", "--db", foreign]),
        65,
        /foreign\.db belongs to another program/,
      );
      const empty = join(dir, "empty.db");
      writeFileSync(empty, "");
      assertFails(runCli(["tree", "list", ".", "--db", empty]), 65, /empty\.db is empty/);
      assert.equal(readFileSync(empty).length, 0);
      assertFails(runCli(["tree", "list", ".", "--db", dir]), 74, /is not a file/);
    });

    it("defaults to $DMGW_DATA/state/dmgw.db (the service's layout), then $STATE_DIRECTORY/dmgw.db, else a usage error", () => {
      const saved = { DMGW_DATA: process.env["DMGW_DATA"], STATE_DIRECTORY: process.env["STATE_DIRECTORY"] };
      const state = join(dir, "state");
      mkdirSync(state);
      createDb(join(state, "dmgw.db"));
      try {
        process.env["DMGW_DATA"] = dir;
        process.env["STATE_DIRECTORY"] = `${join(dir, "nowhere")}:${state}`;
        assert.equal(out(runCli(["tree", "get", "./DevInfo/Man"])), "ACME\n");
        delete process.env["DMGW_DATA"];
        assertFails(runCli(["tree", "get", "./DevInfo/Man"]), 66, /nowhere/);
        process.env["STATE_DIRECTORY"] = state;
        assert.equal(out(runCli(["tree", "get", "./DevInfo/Man"])), "ACME\n");
        delete process.env["STATE_DIRECTORY"];
        const r = runCli(["tree", "get", "./DevInfo/Man"]);
        assert.equal(r.status, 64);
        assert.match(r.stderr, /no database/);
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) Reflect.deleteProperty(process.env, k);
          else process.env[k] = v;
        }
      }
    });
  });

  it("answers a bad command line with exit 64 and the usage", () => {
    for (const args of [
      ["tree"],
      ["tree", "frob"],
      ["tree", "get"],
      ["tree", "set", "./A"],
      ["tree", "get", "./A", "--bogus"],
    ]) {
      const r = runCli(args);
      assert.equal(r.status, 64, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /usage: dmgw tree get/);
      assert.equal(r.stdout.length, 0);
    }
    const set = runCli(["tree", "set", "./A", "1", "--format", "node", "--db", db]);
    assert.equal(set.status, 64);
    assert.match(set.stderr, /--format must be one of/);
  });
});
