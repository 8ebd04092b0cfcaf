/**
 * The composition root on loopback (issue #8): `startGateway` on the sim board with the HTTP and
 * CoAP drivers, the DM Server simulator as its server, the control socket and the metrics endpoint;
 * a server-initiated session over a UDP Pkg#0, a device's attach alert delivered in a session the
 * gateway opens itself; then `stop()` leaves no handle behind. A failing step stops what started.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Lwm2mClientSim } from "../../drivers/coap/sim.js";
import { parseConfig, type GatewayConfig } from "../../src/config/schema.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import { MemoryLogger } from "../../src/core/log.js";
import { startGateway, type RunningGateway } from "../../src/runtime/gateway.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import { Store } from "../../src/tree/store.js";
import { activeHandles, assertNoHandlesLeft, handleBaseline } from "../helpers/handles.js";
import { waitFor } from "../helpers/wait.js";

const DEV_ID = "IMEI:490154203237518";
const SERVER_ID = "dmsrv";
const CLIENT = { name: "gw", secret: "client-secret-42" };
const SERVER = { name: SERVER_ID, secret: "server-secret-42" };
const NONCES = { client: Uint8Array.from([1, 2, 3, 4]), server: Uint8Array.from([5, 6, 7, 8]) };
const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");

/** The sim board on loopback, every listener on port 0, state and runtime in `dir`. */
function loopbackConfig(dir: string, url: string, extra: Record<string, unknown> = {}): GatewayConfig {
  return parseConfig(
    {
      board: "sim",
      paths: { state: path.join(dir, "state"), runtime: path.join(dir, "run") },
      identity: { devId: DEV_ID, man: "ACME" },
      servers: [
        {
          serverId: SERVER_ID,
          uri: url,
          clientAuth: { scheme: "md5", ...CLIENT, nonce: b64(NONCES.client) },
          serverAuth: { scheme: "md5", ...SERVER, nonce: b64(NONCES.server) },
          checkInSeconds: 0,
        },
      ],
      northbound: {
        udpPush: { host: "127.0.0.1", port: 0 },
        timeoutMs: 5000,
        retry: { initialMs: 200, maxMs: 1000 },
      },
      southbound: {
        drivers: {
          http: { host: "127.0.0.1", port: 0 },
          coap: { host: "127.0.0.1", port: 0, devInfoTimeoutMs: 2000 },
        },
      },
      metrics: { port: 0 },
      ...extra,
    },
    { env: {} },
  );
}

describe("startGateway (runtime/gateway.ts)", function () {
  this.timeout(30_000);
  let dir: string;
  let sim: DmServerSimulator;
  let url: string;
  let gateway: RunningGateway | undefined;
  let coapClient: Lwm2mClientSim | undefined;
  let before: Map<string, number>;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-runtime-"));
    sim = new DmServerSimulator();
    ({ url } = await sim.start());
    sim.addDevice(DEV_ID, {
      clientAuth: { scheme: "md5", ...CLIENT },
      serverAuth: { scheme: "md5", ...SERVER },
      clientNonce: NONCES.client,
      serverNonce: NONCES.server,
    });
    before = activeHandles();
  });

  afterEach(async () => {
    await coapClient?.stop();
    await gateway?.stop();
    coapClient = undefined;
    gateway = undefined;
    await sim.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("starts on the sim board, runs a notified session and delivers an attach alert, stops with no handle left", async () => {
    const baseline = await handleBaseline(before);
    const log = new MemoryLogger();
    const gw = await startGateway(loopbackConfig(dir, url), { log, env: {} });
    gateway = gw;
    assert.equal(gw.board.name, "sim");
    assert.equal(gw.parts.board, "sim");
    assert.ok(gw.parts.northbound !== undefined);
    for (const key of ["http", "coap", "udpPush", "metrics"] as const) {
      assert.equal(typeof gw.endpoints[key], "number", key);
      assert.ok((gw.endpoints[key] ?? 0) > 0, key);
    }
    assert.equal(gw.endpoints.control, path.join(dir, "run", "dmgw.sock"));
    assert.ok(fs.existsSync(path.join(dir, "state", "dmgw.db")));
    assert.ok(log.records.some((r) => r.text === "ready"));

    // A server-initiated session: Pkg#0 over UDP, then the server's Get.
    sim.queue(DEV_ID, [{ kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] }]);
    const sent = await sim.notify(DEV_ID, { host: "127.0.0.1", port: gw.endpoints.udpPush ?? 0 });
    await waitFor("the notified session", () => sim.sessions(DEV_ID).length >= 1, 10_000);
    await gw.parts.northbound.idle();
    const session = sim.sessions(DEV_ID)[0];
    assert.ok(session !== undefined);
    assert.equal(session.error, undefined, session.error?.reason);
    assert.equal(session.initiatedBy, "server");
    assert.equal(session.sessionId, sent.sessionId);
    assert.equal(session.commands[0]?.status, 200);
    const man = session.commands[0].results[0]?.items[0]?.data;
    assert.deepEqual(man, { kind: "text", text: "ACME" });

    // A CoAP (LwM2M) device registers: it enters the inventory and its attach alert reaches the server.
    coapClient = await Lwm2mClientSim.start({
      endpoint: "coap-dev-1",
      server: { address: "127.0.0.1", port: gw.endpoints.coap ?? 0 },
    });
    await waitFor(
      "the device in the inventory",
      () => gw.parts.south.registry.get("coap-dev-1") !== undefined,
      10_000,
    );
    await waitFor(
      "the attach alert at the server",
      () => sim.alerts().some((a) => a.alert.items[0]?.source === "./GwMO/Inventory/Devices/coap-dev-1"),
      10_000,
    );
    assert.ok(gw.parts.tree.read("./GwMO/Inventory/Devices/coap-dev-1/Transport") !== undefined);

    // The metrics endpoint answers.
    const res = await fetch(`http://127.0.0.1:${gw.endpoints.metrics ?? 0}/metrics`);
    assert.equal(res.status, 200);
    await res.text();

    await coapClient.stop();
    coapClient = undefined;
    const report = await gw.stop();
    gateway = undefined;
    assert.deepEqual(report, { ok: true, failed: [] });
    // Stopping again is harmless and reports the same.
    assert.deepEqual(await gw.stop(), report);
    assert.ok(!fs.existsSync(path.join(dir, "run", "dmgw.sock")), "the control socket is removed");
    // fetch's keep-alive socket to the (closed) metrics server goes with the server.
    await assertNoHandlesLeft(baseline);
    // No secret in any log line.
    const dump = log.dump();
    for (const secret of [CLIENT.secret, SERVER.secret])
      assert.ok(!dump.includes(secret), "a secret was logged");
  });

  it("starts again on the same state directory (the tree is seeded once)", async () => {
    const config = loopbackConfig(dir, url);
    const first = await startGateway(config, { env: {} });
    const report = await first.stop();
    assert.ok(report.ok, JSON.stringify(report));
    const gw = await startGateway(config, { env: {} });
    gateway = gw;
    assert.equal(gw.parts.tree.read("./DMAcc/dmsrv/ServerID")?.value, SERVER_ID);
    assert.ok((await gw.stop()).ok);
    gateway = undefined;
  });

  it("a failing step names itself and stops what had started", async () => {
    const baseline = await handleBaseline(before);
    // The metrics endpoint refuses an address that is not loopback: the last step before READY.
    const config = loopbackConfig(dir, url, { metrics: { host: "0.0.0.0", port: 0 } });
    await assert.rejects(startGateway(config, { env: {} }), (e: unknown) => {
      assert.ok(isGatewayError(e, ErrorCode.Runtime_StartFailed), String(e));
      assert.equal(e.context?.["step"], "metrics");
      assert.ok(isGatewayError(e.cause, ErrorCode.Metrics_NotLoopback));
      return true;
    });
    await assertNoHandlesLeft(baseline);
    // The store was closed: the file opens again.
    Store.open(path.join(dir, "state", "dmgw.db")).close();
  });

  it("a board auto cannot detect fails at the board step with a Config error", async () => {
    fs.writeFileSync(path.join(dir, "model"), "Banana Board 9000\0");
    const auto = loopbackConfig(dir, url, { board: "auto" });
    await assert.rejects(
      startGateway(auto, { env: {}, modelPath: path.join(dir, "model") }),
      (e: unknown) => {
        assert.ok(isGatewayError(e, ErrorCode.Runtime_StartFailed));
        assert.equal(e.context?.["step"], "board");
        assert.ok(isGatewayError(e.cause, ErrorCode.Config_BoardProfile));
        return true;
      },
    );
  });
});
