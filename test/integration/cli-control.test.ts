/**
 * The `dmgw` binary against a running control server (this process serves it; the CLI runs as a
 * child): status, devices, groups, a fan-out job watched as plain lines (stdout is a pipe), tree
 * reads through the socket (the same output as offline), and no service -> a clear message and 69.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { progressBars } from "../../src/cli/fanout.js";
import type { DeviceJson, FanoutResults, StatusResult } from "../../src/runtime/control-api.js";
import { defaultControlSocketPath } from "../../src/runtime/control-client.js";
import { startControlServer, type ControlServer } from "../../src/runtime/control-server.js";
import type { JobProgress } from "../../src/runtime/observe.js";
import { runCliAsync, type CliResult } from "../helpers/cli.js";
import { openTestGateway, type TestGateway } from "../helpers/gateway-parts.js";
import { NB_CLCRED, NB_SERVER_ID } from "../helpers/northbound.js";

const GET_MAN = `<Get><CmdID>7</CmdID><Item><Target><LocURI>./DevInfo/Man</LocURI></Target></Item></Get>`;
const EX_UNAVAILABLE = 69;

function out(r: CliResult): string {
  return r.stdout.toString("utf8");
}

function assertOk(r: CliResult): void {
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
}

describe("dmgw CLI through the control socket", function () {
  // Each case spawns the built CLI a few times.
  this.timeout(60_000);
  let dir: string;
  let socket: string;
  let gw: TestGateway | undefined;
  let server: ControlServer | undefined;
  /** The CLI's environment: DMGW_DATA points at the test's dir, so the default socket is ours. */
  let env: NodeJS.ProcessEnv;
  const dmgw = (...args: string[]): Promise<CliResult> => runCliAsync(args, { env });

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-cli-control-"));
    env = { ...process.env, DMGW_DATA: dir };
    // The service's layout under DMGW_DATA (config/paths.ts): state/dmgw.db, runtime/dmgw.sock.
    socket = defaultControlSocketPath({ DMGW_DATA: dir });
    fs.mkdirSync(path.dirname(socket));
    fs.mkdirSync(path.join(dir, "state"));
    gw = await openTestGateway({
      file: path.join(dir, "state", "dmgw.db"),
      httpDevices: [{ id: "http-ok" }, { id: "http-junk", failure: "garbage" }],
    });
    const tree = gw.parts.tree;
    for (const [uri, value] of [
      ["./GwMO/Config/Groups/g1/GroupID", "g1"],
      ["./GwMO/Config/Groups/g1/Name", "all"],
      ["./GwMO/Config/Groups/g1/Members/0/DeviceID", "http-ok"],
      ["./GwMO/Config/Groups/g1/Members/1/DeviceID", "http-junk"],
    ] as const) {
      assert.equal(tree.add(NB_SERVER_ID, uri, { format: "chr", value }).status, 200);
    }
    server = await startControlServer({ path: socket, parts: gw.parts, log: gw.parts.log });
  });

  afterEach(async () => {
    await server?.close();
    await gw?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    server = undefined;
    gw = undefined;
  });

  it("dmgw status --json and dmgw status", async () => {
    const r = await dmgw("status", "--json");
    assertOk(r);
    const s = JSON.parse(out(r)) as StatusResult;
    assert.equal(s.board, "sim");
    assert.equal(s.health.ok, true);
    assert.deepEqual(s.devices["http"], { attached: 2, detached: 0, unreachable: 0 });
    const text = await dmgw("status", "--socket", socket);
    assertOk(text);
    assert.match(out(text), /board sim, health ok/);
    assert.match(out(text), /server dmsrv: idle, 0 sessions/);
    assert.match(out(text), /devices: http 2 attached/);
  });

  it("dmgw devices --json and dmgw groups", async () => {
    const r = await dmgw("devices", "--json");
    assertOk(r);
    const devices = JSON.parse(out(r)) as DeviceJson[];
    assert.deepEqual(
      devices.map((d) => [d.deviceId, d.transport, d.status]),
      [
        ["http-junk", "http", "attached"],
        ["http-ok", "http", "attached"],
      ],
    );
    const table = await dmgw("devices");
    assertOk(table);
    assert.match(out(table), /^DEVICE +TRANSPORT +MODE +STATUS/);
    assert.match(out(table), /^http-ok +http +proxy +attached/m);
    const groups = await dmgw("groups");
    assertOk(groups);
    assert.match(out(groups), /^g1 +all +2 +http-ok http-junk$/m);
  });

  it("dmgw fanout start, then watch prints plain lines when stdout is not a terminal, then results", async () => {
    const commands = path.join(dir, "commands.xml");
    fs.writeFileSync(commands, GET_MAN);
    const started = await dmgw(
      "fanout",
      "start",
      "--group",
      "g1",
      "--commands",
      commands,
      "--name",
      "j1",
      "--options",
      "Retries=0",
    );
    assertOk(started);
    assert.equal(out(started), "./GwMO/Fanout/j1\n");
    const watched = await dmgw("fanout", "watch", "j1");
    assertOk(watched);
    const lines = out(watched).trimEnd().split("\n");
    assert.ok(!out(watched).includes("\x1b"), "no terminal escapes in plain mode");
    for (const line of lines.slice(0, -1)) assert.match(line, /^http \d+\/2 ok \d+ failed \d+$/);
    assert.equal(lines.at(-2), "http 2/2 ok 1 failed 1");
    assert.equal(lines.at(-1), "./GwMO/Fanout/j1 PartiallyCompleted 2/2 ok 1 failed 1");

    const results = await dmgw("fanout", "results", "j1", "--json");
    assertOk(results);
    const r = JSON.parse(out(results)) as FanoutResults;
    assert.deepEqual(
      r.devices.map((d) => [d.deviceId, d.status]),
      [
        ["http-ok", 200],
        ["http-junk", 502],
      ],
    );
    const text = await dmgw("fanout", "results", "./GwMO/Fanout/j1");
    assertOk(text);
    assert.match(out(text), /^1 http-ok http 200\n {2}<SyncBody [^\n]*<Data>SimCo<\/Data>/m);
    const jobs = await dmgw("fanout", "jobs", "--json");
    assertOk(jobs);
    assert.deepEqual(
      (JSON.parse(out(jobs)) as JobProgress[]).map((j) => j.status),
      ["PartiallyCompleted"],
    );
    // A refused job: the group does not exist.
    const refused = await dmgw("fanout", "start", "--group", "nope", "--commands", commands);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^dmgw: .*no group "nope"/);
  });

  it("dmgw tree get and list go through the socket, as the offline mode prints them, secrets hidden", async () => {
    const man = await dmgw("tree", "get", "./DevInfo/Man");
    assertOk(man);
    assert.equal(out(man), "ACME\n");
    const health = await dmgw("tree", "get", "./DMGW/Health/Ok", "--socket", socket);
    assertOk(health);
    assert.equal(out(health), "true\n");
    const secret = await dmgw("tree", "get", "./DMAcc/dmserver/AppAuth/ClientSide/AAuthSecret");
    assertOk(secret);
    assert.equal(out(secret), "<secret>\n");
    const listed = await dmgw("tree", "list", "./DMAcc");
    assertOk(listed);
    assert.ok(!out(listed).includes(NB_CLCRED.secret));
    // Through the service and straight from the file: the same text.
    const offline = await dmgw("tree", "list", "./DevInfo", "--db", path.join(dir, "state", "dmgw.db"));
    const online = await dmgw("tree", "list", "./DevInfo");
    assertOk(offline);
    assertOk(online);
    assert.equal(out(online), out(offline));
    const set = await dmgw("tree", "set", "./Vendor/Note", "from-cli");
    assertOk(set);
    assert.equal(gw!.parts.tree.read("./Vendor/Note")?.value, "from-cli");
    const missing = await dmgw("tree", "get", "./Nope");
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /\.\/Nope not found/);
  });

  it("says no service runs, with status 69, when nothing answers on the socket", async () => {
    await server?.close();
    server = undefined;
    for (const args of [
      ["status"],
      ["devices", "--json"],
      ["groups"],
      ["fanout", "jobs"],
      ["fanout", "watch", "j1"],
    ]) {
      const r = await dmgw(...args);
      assert.equal(r.status, EX_UNAVAILABLE, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout.length, 0);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^dmgw: no dmgw service runs: cannot connect to .*dmgw\.sock/);
    }
    const explicit = await dmgw(
      "tree",
      "get",
      "./DevInfo/Man",
      "--socket",
      path.join(dir, "runtime", "none.sock"),
    );
    assert.equal(explicit.status, EX_UNAVAILABLE);
    // Without --socket, tree falls back to the database file of the stopped gateway.
    const offline = await dmgw("tree", "get", "./DevInfo/Man");
    assertOk(offline);
    assert.equal(out(offline), "ACME\n");
  });
});

describe("fanout watch progress bars", () => {
  it("draws one bar per transport, fitted to the terminal", () => {
    const p = (total: number, done: number, succeeded: number) => ({
      total,
      done,
      succeeded,
      failed: done - succeeded,
      pending: total - done,
      dispatched: 0,
    });
    const progress: JobProgress = {
      job: "./GwMO/Fanout/j",
      serverId: "s",
      state: "running",
      status: "InProgress",
      createdMs: 0,
      finishedMs: undefined,
      overall: p(12, 6, 5),
      byTransport: { serial: p(2, 0, 0), http: p(10, 6, 5) },
    };
    const lines = progressBars(progress, 60);
    assert.equal(lines[0], "./GwMO/Fanout/j  InProgress");
    assert.match(lines[1] ?? "", /^http {3}\[█+░+\] 6\/10 {2}ok 5 {2}failed 1$/);
    assert.match(lines[2] ?? "", /^serial \[░+\] {2}0\/2 {2}ok 0 {2}failed 0$/);
    for (const line of lines) assert.ok(line.length <= 60, line);
  });
});
