/**
 * The local control socket against a gateway wired from real parts (store, tree with the standard,
 * GwMO and DMGW MOs, registry, fan-out engine, HTTP driver with simulated HTTP devices): owner-only
 * socket, status/devices/groups, an operator's fan-out job from start to results, tree reads without
 * secrets, hostile input, a second service on a live socket, a stale socket, and a clean close. The
 * metrics endpoint is checked over HTTP on the same gateway.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import { MemoryLogger } from "../../src/core/log.js";
import type {
  DeviceJson,
  FanoutResults,
  FanoutStarted,
  GroupJson,
  StatusResult,
  WireNode,
} from "../../src/runtime/control-api.js";
import {
  connectControl,
  defaultControlSocketPath,
  type ControlConnection,
} from "../../src/runtime/control-client.js";
import { MAX_LINE_BYTES, startControlServer, type ControlServer } from "../../src/runtime/control-server.js";
import { METRICS_CONTENT_TYPE, startMetricsServer } from "../../src/runtime/metrics.js";
import type { JobProgress } from "../../src/runtime/observe.js";
import { NB_CLCRED, NB_SERVER_ID, NB_SRVCRED } from "../helpers/northbound.js";
import { openTestGateway, type TestGateway } from "../helpers/gateway-parts.js";
import { waitFor } from "../helpers/wait.js";

const GET_MAN = `<Get><CmdID>7</CmdID><Item><Target><LocURI>./DevInfo/Man</LocURI></Target></Item></Get>`;
const HTTP_DEVICES = [
  { id: "http-ok" },
  { id: "http-ok2" },
  { id: "http-junk", failure: "garbage" as const },
];

/** Unix socket and server handles of this process (the control server's and its connections'). */
function pipeHandles(): number {
  return process.getActiveResourcesInfo().filter((k) => k.startsWith("Pipe")).length;
}

/** A raw connection: write lines, read answer lines. */
async function rawConnection(socketPath: string): Promise<{
  socket: net.Socket;
  lines: () => unknown[];
  closed: Promise<void>;
}> {
  const socket = net.createConnection({ path: socketPath });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => undefined); // EPIPE while writing a line the server stopped reading
  let buffered = "";
  const answers: unknown[] = [];
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      answers.push(JSON.parse(buffered.slice(0, nl)));
      buffered = buffered.slice(nl + 1);
    }
  });
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      resolve();
    }),
  );
  return { socket, lines: () => answers, closed };
}

function errorCode(answer: unknown): unknown {
  return (answer as { error?: { code?: unknown } }).error?.code;
}

describe("control socket", function () {
  this.timeout(60_000);
  let dir: string;
  let socketPath: string;
  let gw: TestGateway | undefined;
  let server: ControlServer | undefined;
  let client: ControlConnection | undefined;
  let log: MemoryLogger;
  let pipesBefore: number;

  beforeEach(async () => {
    pipesBefore = pipeHandles();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-control-"));
    socketPath = defaultControlSocketPath({ DMGW_DATA: dir });
    fs.mkdirSync(path.dirname(socketPath));
    log = new MemoryLogger();
    gw = await openTestGateway({ file: path.join(dir, "dmgw.db"), httpDevices: HTTP_DEVICES, log });
    const tree = gw.parts.tree;
    // A device of a transport no driver runs here: its commands end 503 at once.
    gw.parts.south.registry.seen({ deviceId: "mqtt-1", transport: "mqtt", mode: "proxy", address: "mqtt-1" });
    const add = (uri: string, value: string): void => {
      assert.equal(tree.add(NB_SERVER_ID, uri, { format: "chr", value }).status, 200, uri);
    };
    add("./GwMO/Config/Groups/g1/GroupID", "g1");
    add("./GwMO/Config/Groups/g1/Name", "everyone");
    ["http-ok", "http-ok2", "http-junk", "mqtt-1"].forEach((id, i) => {
      add(`./GwMO/Config/Groups/g1/Members/${i}/DeviceID`, id);
    });
    server = await startControlServer({ path: socketPath, parts: gw.parts, log });
    client = await connectControl(socketPath);
  });

  afterEach(async () => {
    client?.close();
    await server?.close();
    await gw?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    client = undefined;
    server = undefined;
    gw = undefined;
  });

  it("defaults to the service's runtime directory: $DMGW_DATA/runtime, then $RUNTIME_DIRECTORY, then /run/dmgw", () => {
    assert.equal(
      defaultControlSocketPath({ RUNTIME_DIRECTORY: "/run/dmgw2:/run/x", DMGW_DATA: "/d" }),
      "/d/runtime/dmgw.sock",
    );
    assert.equal(
      defaultControlSocketPath({ RUNTIME_DIRECTORY: "/run/dmgw2:/run/x" }),
      "/run/dmgw2/dmgw.sock",
    );
    assert.equal(defaultControlSocketPath({}), "/run/dmgw/dmgw.sock");
  });

  it("creates the socket owner-only (0600)", () => {
    const st = fs.statSync(socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  it("answers status, devices and groups", async () => {
    const c = client!;
    const status = (await c.request("status")) as StatusResult;
    assert.equal(status.board, "sim");
    assert.equal(status.pid, process.pid);
    assert.equal(status.health.ok, true);
    assert.deepEqual(
      status.northbound?.servers.map((s) => s.serverId),
      [NB_SERVER_ID],
    );
    assert.deepEqual(status.devices["http"], { attached: 3, detached: 0, unreachable: 0 });
    assert.deepEqual(status.devices["mqtt"], { attached: 1, detached: 0, unreachable: 0 });
    assert.equal(status.outbox.count, gw!.parts.outbox.stats().count);
    assert.deepEqual(status.drivers, [{ transport: "http", state: "ready" }]);
    assert.deepEqual(status.jobs, []);

    const devices = (await c.request("devices")) as DeviceJson[];
    assert.deepEqual(
      devices.map((d) => [d.deviceId, d.transport, d.status]),
      [
        ["http-junk", "http", "attached"],
        ["http-ok", "http", "attached"],
        ["http-ok2", "http", "attached"],
        ["mqtt-1", "mqtt", "attached"],
      ],
    );
    const groups = (await c.request("groups")) as GroupJson[];
    assert.deepEqual(groups, [
      {
        node: "./GwMO/Config/Groups/g1",
        groupId: "g1",
        name: "everyone",
        members: ["http-ok", "http-ok2", "http-junk", "mqtt-1"],
      },
    ]);
  });

  it("starts a fan-out job, streams its progress per transport until it ends, and gives the results", async () => {
    const c = client!;
    const started = (await c.request("fanout.start", {
      name: "op1",
      commands: GET_MAN,
      group: "g1",
      correlator: "op1-corr",
      options: { Retries: 0, DeviceTimeout: 8000 },
    })) as FanoutStarted;
    assert.deepEqual(started, { job: "./GwMO/Fanout/op1", status: 202, serverId: NB_SERVER_ID });

    const events: JobProgress[] = [];
    const final = (await c.stream("fanout.watch", { job: "op1", intervalMs: 50 }, (e) => {
      events.push(e as JobProgress);
    })) as JobProgress;
    assert.ok(events.length >= 1);
    assert.equal(final.state, "finished");
    assert.equal(final.status, "PartiallyCompleted");
    assert.deepEqual(
      { ...final.byTransport["http"] },
      { total: 3, done: 3, succeeded: 2, failed: 1, pending: 0, dispatched: 0 },
    );
    assert.deepEqual(
      { ...final.byTransport["mqtt"] },
      { total: 1, done: 1, succeeded: 0, failed: 1, pending: 0, dispatched: 0 },
    );
    // The last event is the final progress; every event's counts only grow.
    assert.deepEqual(events.at(-1), final);
    for (let i = 1; i < events.length; i++)
      assert.ok((events[i]?.overall.done ?? 0) >= (events[i - 1]?.overall.done ?? 0));

    assert.deepEqual(await c.request("fanout.progress", { job: "./GwMO/Fanout/op1" }), final);
    const results = (await c.request("fanout.results", { job: "./GwMO/Fanout/op1" })) as FanoutResults;
    assert.equal(results.status, "PartiallyCompleted");
    const byId = new Map(results.devices.map((d) => [d.deviceId, d]));
    assert.equal(byId.get("http-ok")?.status, 200);
    assert.match(byId.get("http-ok")?.resultXml ?? "", /<Results>.*SimCo/s);
    assert.equal(byId.get("http-junk")?.status, 502);
    assert.match(byId.get("http-junk")?.resultXml ?? "", /<Data>502<\/Data>/);
    // No account for it (it was only seen): the gateway-made 401.
    assert.equal(byId.get("mqtt-1")?.status, 401);

    // As a server's job would: Status in the tree, the completion alert (with the Correlator) queued.
    assert.equal(gw!.parts.tree.read("./GwMO/Fanout/op1/Status")?.value, "PartiallyCompleted");
    const alert = gw!.parts.outbox.pending(NB_SERVER_ID).find((a) => a.correlator === "op1-corr");
    assert.equal(alert?.items[0]?.source?.locUri, "./GwMO/Fanout/op1");
    // The device that answered garbage counts as a codec error (status and metrics read it).
    const status = (await c.request("status")) as StatusResult;
    assert.ok(status.southbound.codecErrors >= 1, JSON.stringify(status.southbound));
    assert.ok(status.southbound.sessions >= 2);
    const jobs = (await c.request("fanout.jobs")) as JobProgress[];
    assert.deepEqual(
      jobs.map((j) => [j.job, j.status]),
      [["./GwMO/Fanout/op1", "PartiallyCompleted"]],
    );
  });

  it("refuses a job it cannot run and leaves nothing of it in the tree", async () => {
    const c = client!;
    const refused = async (params: Record<string, unknown>, code: ErrorCode): Promise<void> => {
      await assert.rejects(c.request("fanout.start", params), (e: unknown) => isGatewayError(e, code));
    };
    await refused({ name: "x1", commands: GET_MAN, group: "nope" }, ErrorCode.Control_NotFound);
    assert.equal(gw!.parts.tree.read("./GwMO/Fanout/x1"), undefined);
    await refused({ name: "x2", commands: "<Frob/>", group: "g1" }, ErrorCode.Control_BadRequest);
    await refused(
      { name: "x3", commands: GET_MAN, group: "g1", options: { Concurrency: "many" } },
      ErrorCode.Control_BadRequest,
    );
    await refused({ name: "../x", commands: GET_MAN, group: "g1" }, ErrorCode.Control_BadRequest);
    await refused({ commands: GET_MAN }, ErrorCode.Control_BadRequest);
    assert.deepEqual(gw!.parts.tree.childNames("./GwMO/Fanout"), []);
    // A name in use.
    await c.request("fanout.start", { name: "dup", commands: GET_MAN, group: "g1" });
    await refused({ name: "dup", commands: GET_MAN, group: "g1" }, ErrorCode.Control_Refused);
    await gw!.parts.engine.idle();
    await assert.rejects(c.request("fanout.progress", { job: "ghost" }), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_NotFound),
    );
  });

  it("reads the tree like a local admin but never returns a secret", async () => {
    const c = client!;
    const secret = (await c.request("tree.get", {
      uri: "./DMAcc/dmserver/AppAuth/ClientSide/AAuthSecret",
    })) as WireNode;
    assert.equal(secret.secret, true);
    assert.equal(secret.value, undefined);
    assert.equal(secret.size, undefined);
    const all = JSON.stringify(await c.request("tree.list", { uri: "." }));
    for (const s of [NB_CLCRED.secret, NB_SRVCRED.secret])
      assert.ok(!all.includes(s), `secret ${s} returned`);
    assert.match(all, /AAuthSecret/);
    const man = (await c.request("tree.get", { uri: "./DevInfo/Man" })) as WireNode;
    assert.equal(man.value, "ACME");
    const health = (await c.request("tree.get", { uri: "./DMGW/Health/Ok" })) as WireNode;
    assert.equal(health.value, "true");
    const shallow = (await c.request("tree.list", { uri: "./DevInfo", depth: 0 })) as WireNode[];
    assert.deepEqual(
      shallow.map((n) => n.path),
      ["./DevInfo"],
    );
    await assert.rejects(c.request("tree.get", { uri: "./Nope" }), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_NotFound),
    );
    await assert.rejects(c.request("tree.get", { uri: "./DevInfo?prop=ACL" }), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_BadRequest),
    );
    // set: a new leaf, then refusals as offline.
    await c.request("tree.set", { uri: "./Vendor/Note", value: "hello" });
    assert.equal(gw!.parts.tree.read("./Vendor/Note")?.value, "hello");
    await assert.rejects(c.request("tree.set", { uri: "./DMGW/Uptime", value: "1" }), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_Refused),
    );
    await assert.rejects(
      c.request("tree.set", { uri: "./Vendor/N", value: "x", format: "int" }),
      (e: unknown) => isGatewayError(e, ErrorCode.Control_BadRequest),
    );
    // A set secret never comes back either.
    await c.request("tree.set", {
      uri: "./DMAcc/dmserver/AppAuth/ClientSide/AAuthData",
      value: "c2VjcmV0ZGF0YQ==",
      format: "b64",
    });
    const data = (await c.request("tree.get", {
      uri: "./DMAcc/dmserver/AppAuth/ClientSide/AAuthData",
    })) as WireNode;
    assert.equal(data.value, undefined);
    assert.ok(!log.dump().includes("c2VjcmV0ZGF0YQ=="));
  });

  it("answers hostile input with typed errors and keeps serving", async () => {
    const outboxBefore = gw!.parts.outbox.stats();
    const raw = await rawConnection(socketPath);
    raw.socket.write(`{"id":"1","method":"frob"}\n`);
    raw.socket.write(`this is not json\n`);
    raw.socket.write(`[1,2,3]\n`);
    raw.socket.write(`{"id":"2"}\n`);
    raw.socket.write(`{"id":"3","method":"status","params":"x"}\n`);
    raw.socket.write(`{"id":"4","method":"__proto__"}\n`);
    raw.socket.write(`{"id":"5","method":"status"}\n`);
    await waitFor("seven answers", () => raw.lines().length >= 7);
    const codes = raw.lines().map(errorCode);
    assert.deepEqual(codes, [
      ErrorCode.Control_UnknownMethod,
      ErrorCode.Control_BadRequest,
      ErrorCode.Control_BadRequest,
      ErrorCode.Control_BadRequest,
      ErrorCode.Control_BadRequest,
      ErrorCode.Control_UnknownMethod,
      undefined,
    ]);
    assert.equal((raw.lines()[6] as { ok: boolean }).ok, true);

    // A hostile 10 MB line: an error, the connection closed, nothing changed.
    const big = Buffer.alloc(10 * 1024 * 1024, 0x61);
    const huge = await rawConnection(socketPath);
    huge.socket.write(big);
    await huge.closed;
    assert.ok(big.length > MAX_LINE_BYTES);
    assert.deepEqual(huge.lines().map(errorCode), [ErrorCode.Control_TooLarge]);
    raw.socket.destroy();
    await raw.closed;

    // Still serving, on the old client connection and on new ones.
    const status = (await client!.request("status")) as StatusResult;
    assert.equal(status.health.ok, true);
    const again = await connectControl(socketPath);
    try {
      assert.ok(Array.isArray(await again.request("devices")));
    } finally {
      again.close();
    }
    assert.deepEqual(gw!.parts.outbox.stats(), outboxBefore);
    assert.match(log.dump(), /over the size limit/);
  });

  it("refuses to start a second service on a live socket, and replaces a stale one", async () => {
    await assert.rejects(startControlServer({ path: socketPath, parts: gw!.parts, log }), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_InUse),
    );
    // The first one still answers.
    assert.equal(((await client!.request("status")) as StatusResult).pid, process.pid);

    // A socket left by a killed process: nobody answers, so it is replaced.
    const stale = path.join(dir, "runtime", "stale.sock");
    const child = spawn(
      process.execPath,
      ["-e", "require('net').createServer().listen(process.argv[1], () => console.log('up'))", stale],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve) =>
      child.stdout.once("data", () => {
        resolve();
      }),
    );
    const exited = new Promise<void>((resolve) =>
      child.once("exit", () => {
        resolve();
      }),
    );
    child.kill("SIGKILL");
    await exited;
    assert.ok(fs.lstatSync(stale).isSocket());
    const second = await startControlServer({ path: stale, parts: gw!.parts, log });
    try {
      const c2 = await connectControl(stale);
      assert.equal(((await c2.request("status")) as StatusResult).board, "sim");
      c2.close();
    } finally {
      await second.close();
    }
    // A path that is not a socket is not ours to remove.
    const file = path.join(dir, "runtime", "file.sock");
    fs.writeFileSync(file, "x");
    await assert.rejects(startControlServer({ path: file, parts: gw!.parts, log }), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_ListenFailed),
    );
    assert.equal(fs.readFileSync(file, "utf8"), "x");
  });

  it("ends a watch when its client goes, and close() leaves no socket file and no handle", async () => {
    // A job that stays running: its device never answers within the watch.
    gw!.parts.south.registry.seen({
      deviceId: "slow",
      transport: "http",
      mode: "proxy",
      address: "udp://127.0.0.1:9",
    });
    await client!.request("fanout.start", {
      name: "long",
      commands: GET_MAN,
      group: "./GwMO/Config/Groups/g1",
      options: { Retries: 0 },
    });
    const watcher = await connectControl(socketPath);
    const events: unknown[] = [];
    const watching = watcher.stream("fanout.watch", { job: "long", intervalMs: 50 }, (e) => events.push(e));
    await waitFor("a progress event", () => events.length > 0);
    watcher.close();
    await assert.rejects(watching, (e: unknown) => isGatewayError(e, ErrorCode.Control_Unavailable));
    await gw!.parts.engine.idle();

    client!.close();
    client = undefined;
    await server!.close();
    server = undefined;
    assert.equal(fs.existsSync(socketPath), false);
    await waitFor("the pipe handles to go", () => pipeHandles() <= pipesBefore, 3000);
    await assert.rejects(connectControl(socketPath), (e: unknown) =>
      isGatewayError(e, ErrorCode.Control_Unavailable),
    );
  });
});

describe("metrics endpoint", function () {
  this.timeout(30_000);
  let dir: string;
  let gw: TestGateway | undefined;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-metrics-"));
    gw = await openTestGateway({ file: path.join(dir, "dmgw.db") });
  });
  afterEach(async () => {
    await gw?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const fetchText = (
    port: number,
    urlPath: string,
    method = "GET",
  ): Promise<{ status: number; type: string; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path: urlPath, method, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body });
        });
      });
      req.on("error", reject);
      req.end();
    });

  it("serves /metrics on loopback as text 0.0.4, 404 elsewhere, and leaves no handle after close", async () => {
    const before = process.getActiveResourcesInfo().filter((k) => k.startsWith("TCP")).length;
    gw!.parts.south.registry.seen({ deviceId: "b1", transport: "ble", mode: "adaptation", address: "AA:BB" });
    const m = await startMetricsServer({ host: "127.0.0.1", port: 0, parts: gw!.parts });
    try {
      assert.ok(m.port > 0);
      const r = await fetchText(m.port, "/metrics");
      assert.equal(r.status, 200);
      assert.equal(r.type, METRICS_CONTENT_TYPE);
      assert.match(r.body, /^# HELP dmgw_health_ok /m);
      assert.match(r.body, /^dmgw_devices\{transport="ble",status="attached"\} 1$/m);
      assert.match(r.body, /^dmgw_northbound_sessions_total\{server="dmsrv"\} 0$/m);
      assert.equal((await fetchText(m.port, "/")).status, 404);
      assert.equal((await fetchText(m.port, "/metrics/x")).status, 404);
      assert.equal((await fetchText(m.port, "/metrics", "POST")).status, 405);
    } finally {
      await m.close();
    }
    await waitFor(
      "the TCP handles to go",
      () => process.getActiveResourcesInfo().filter((k) => k.startsWith("TCP")).length <= before,
      3000,
    );
  });
});
