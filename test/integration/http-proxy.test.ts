/**
 * Proxy mode over the OMA DM HTTP binding, end to end on loopback: ProxySessions (the gateway's DM
 * server side) + the http driver (southbound endpoint, Pkg#0 by UDP WAP Push) + simulated DM-client
 * devices (the real client session) with their failure mix. Accounts live in a real SQLite file.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import type { DeviceAddress, DriverState } from "../../drivers/driver.js";
import { MemoryLogger } from "../../src/core/log.js";
import type { AuthScheme } from "../../src/dm/auth.js";
import type { SessionOutcome } from "../../src/dm/server-session.js";
import type { DeviceFailure } from "../../src/sim/dm-device.js";
import { StoredDeviceAccounts } from "../../src/southbound/device-accounts.js";
import { ProxySessions, type DeviceOutcome } from "../../src/southbound/proxy-sessions.js";
import type { Command } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";

const GATEWAY_SERVER_ID = "dmgw-gw1";

const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const REPLACE: Command = {
  kind: "Replace",
  cmdId: "2",
  items: [
    { target: { locUri: "./Vendor/Setting1" }, meta: { format: "int" }, data: { kind: "text", text: "7" } },
  ],
};
const EXEC: Command = { kind: "Exec", cmdId: "3", items: [{ target: { locUri: "./Vendor/Reboot" } }] };

interface DeviceSpec {
  readonly id: string;
  readonly scheme?: AuthScheme;
  readonly failure?: DeviceFailure;
  readonly latencyMs?: number;
  readonly encoding?: "xml" | "wbxml";
  readonly maxMsgSize?: number;
}

function statuses(outcome: DeviceOutcome): (number | undefined)[] {
  if (outcome.kind === "failed") assert.fail(`failed ${outcome.status}: ${outcome.reason}`);
  return outcome.records.map((r) => r.status);
}

describe("proxy sessions over the HTTP binding", function () {
  this.timeout(30_000);
  let dir: string;
  let store: Store;
  let accounts: StoredDeviceAccounts;
  let proxy: ProxySessions;
  let driver: HttpDriver;
  let fleet: HttpDeviceFleet | undefined;
  let log: MemoryLogger;
  let states: DriverState[];
  let finished: { deviceId: string; outcome: SessionOutcome }[];

  async function startFleet(specs: readonly DeviceSpec[]): Promise<HttpDeviceFleet> {
    for (const spec of specs) {
      const scheme = spec.scheme ?? "md5";
      accounts.put({
        deviceId: spec.id,
        serverId: GATEWAY_SERVER_ID,
        clientAuth: { scheme, name: spec.id, secret: `dev-secret-${spec.id}` },
        serverAuth: { scheme, name: GATEWAY_SERVER_ID, secret: `gw-secret-${spec.id}` },
      });
    }
    fleet = new HttpDeviceFleet({
      gatewayUrl: driver.url,
      devices: specs.map((spec) => {
        const scheme = spec.scheme ?? "md5";
        return {
          deviceId: spec.id,
          serverId: GATEWAY_SERVER_ID,
          clientAuth: { scheme, name: spec.id, secret: `dev-secret-${spec.id}` },
          serverAuth: { scheme, name: GATEWAY_SERVER_ID, secret: `gw-secret-${spec.id}` },
          ...(spec.failure !== undefined && { failure: spec.failure }),
          ...(spec.latencyMs !== undefined && { latencyMs: spec.latencyMs }),
          ...(spec.encoding !== undefined && { encoding: spec.encoding }),
          ...(spec.maxMsgSize !== undefined && { maxMsgSize: spec.maxMsgSize }),
        };
      }),
    });
    await fleet.start();
    return fleet;
  }

  function target(id: string): { deviceId: string; address: DeviceAddress } {
    assert.ok(fleet !== undefined);
    return { deviceId: id, address: fleet.address(id) };
  }

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-http-proxy-"));
    store = Store.open(path.join(dir, "gw.db"));
    accounts = new StoredDeviceAccounts(store);
    log = new MemoryLogger();
    states = [];
    finished = [];
    proxy = new ProxySessions({
      accounts,
      log: log.child("proxy"),
      onSession: (deviceId, _transport, outcome) => {
        finished.push({ deviceId, outcome });
      },
    });
    driver = new HttpDriver(
      { host: "127.0.0.1", port: 0 },
      {
        log: log.child("drv:http"),
        signal: new AbortController().signal,
        onMessage: proxy.handler,
        onState: (s) => {
          states.push(s);
        },
        onDeviceSeen: () => undefined,
        onDeviceLost: () => undefined,
      },
    );
    proxy.attach(driver);
    await driver.start();
  });

  afterEach(async () => {
    proxy.close();
    await fleet?.stop();
    fleet = undefined;
    await driver.stop();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [scheme, encoding] of [
    ["md5", "wbxml"],
    ["hmac", "xml"],
    ["basic", "wbxml"],
  ] as const) {
    it(`${scheme}/${encoding}: Pkg#0 by UDP, the device's session runs Get, Replace and Exec; nonces stored`, async () => {
      const f = await startFleet([{ id: "dev-1", scheme, encoding }]);
      const outcome = await proxy.execute(target("dev-1"), [GET_MAN, REPLACE, EXEC], { timeoutMs: 5_000 });
      assert.deepEqual(statuses(outcome), [200, 200, 200]);
      assert.ok(outcome.kind === "replied");
      assert.deepEqual(outcome.records[0]?.results[0]?.items[0]?.data, { kind: "text", text: "SimCo" });
      const device = f.device("dev-1");
      await f.idle();
      assert.equal(device.tree.read("./Vendor/Setting1")?.value, "7");
      assert.equal(f.reports("dev-1")[0]?.execs[0], "./Vendor/Reboot");
      // The device's Package 1 DevInfo reached the gateway, and both sides agree on the nonces.
      assert.equal(finished[0]?.outcome.devInfo["Man"], "SimCo");
      const stored = accounts.get("dev-1");
      assert.deepEqual(stored?.nonces.client, device.nonces.client);
      assert.deepEqual(stored.nonces.server, device.nonces.server);
      // A second session authenticates on the rolled nonces.
      const again = await proxy.execute(target("dev-1"), [GET_MAN], { timeoutMs: 5_000 });
      assert.deepEqual(statuses(again), [200]);
    });
  }

  it("large objects both ways: a 100 KB Replace in chunks under the device's 2 KB MaxMsgSize, then a chunked Results", async () => {
    const f = await startFleet([{ id: "small", maxMsgSize: 2048 }]);
    const blob = Array.from({ length: 100 * 1024 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
    const replace: Command = {
      kind: "Replace",
      cmdId: "1",
      items: [
        { target: { locUri: "./Vendor/Blob" }, meta: { format: "chr" }, data: { kind: "text", text: blob } },
      ],
    };
    const put = await proxy.execute(target("small"), [replace], { timeoutMs: 20_000 });
    assert.deepEqual(statuses(put), [200]);
    await f.idle();
    assert.equal(f.device("small").tree.read("./Vendor/Blob")?.value, blob);
    const get: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./Vendor/Blob" } }] };
    const got = await proxy.execute(target("small"), [get], { timeoutMs: 20_000 });
    assert.deepEqual(statuses(got), [200]);
    assert.ok(got.kind === "replied");
    assert.deepEqual(got.records[0]?.results[0]?.items[0]?.data, { kind: "text", text: blob });
    await f.idle();
    // Toward the device, chunks fit its 2 KB; toward the gateway, its 64 KB MaxMsgSize.
    const [putReport, getReport] = f.reports("small");
    assert.ok(
      putReport !== undefined && putReport.messages > 50,
      `the Replace took ${putReport?.messages} messages`,
    );
    assert.ok(
      getReport !== undefined && getReport.messages >= 3,
      `the Results took ${getReport?.messages} messages`,
    );
  });

  it("the failure mix: each device gets its status within its timeout while the others carry on", async () => {
    await startFleet([
      { id: "ok-1" },
      { id: "silent", failure: "silent" },
      { id: "garbage", failure: "garbage" },
      { id: "dropper", failure: "drop-mid-session" },
      { id: "liar", failure: "wrong-credentials" },
      { id: "ok-2", scheme: "hmac" },
    ]);
    const timeoutMs = 1_500;
    const started = Date.now();
    const ids = ["ok-1", "silent", "garbage", "dropper", "liar", "ok-2"];
    const outcomes = await Promise.all(
      ids.map((id) => proxy.execute(target(id), [GET_MAN, REPLACE], { timeoutMs })),
    );
    const elapsed = Date.now() - started;
    const byId = new Map(ids.map((id, i) => [id, outcomes[i]]));
    const status = (id: string): number | string => {
      const o = byId.get(id);
      return o?.kind === "failed" ? o.status : "replied";
    };
    assert.equal(status("ok-1"), "replied");
    assert.equal(status("ok-2"), "replied");
    assert.equal(status("silent"), 504);
    assert.equal(status("garbage"), 502);
    assert.equal(status("dropper"), 504);
    assert.equal(status("liar"), 401);
    assert.ok(elapsed < timeoutMs + 500, `all settled in ${elapsed} ms`);
    assert.equal(proxy.active, 0, "no session left open");
  });

  it("a cancelled execute settles 514 at once and a late message from the device is refused", async () => {
    await startFleet([{ id: "slow", latencyMs: 300 }]);
    const controller = new AbortController();
    const running = proxy.execute(target("slow"), [GET_MAN], { timeoutMs: 5_000, signal: controller.signal });
    setTimeout(() => {
      controller.abort();
    }, 100);
    const started = Date.now();
    const outcome = await running;
    assert.ok(outcome.kind === "failed" && outcome.status === 514, JSON.stringify(outcome));
    assert.ok(Date.now() - started < 1_000);
    await fleet?.idle();
    const report = fleet?.reports("slow")[0];
    assert.ok(report !== undefined && !report.ok, "the device's session did not complete");
  });

  it("an unreachable device (nothing listens on its UDP port) times out 504; no driver for a transport is 503", async () => {
    accounts.put({
      deviceId: "ghost",
      serverId: GATEWAY_SERVER_ID,
      clientAuth: { scheme: "md5", name: "ghost", secret: "x" },
      serverAuth: { scheme: "md5", name: GATEWAY_SERVER_ID, secret: "y" },
    });
    const ghost = await proxy.execute(
      { deviceId: "ghost", address: { transport: "http", address: "udp://127.0.0.1:9" } },
      [GET_MAN],
      { timeoutMs: 300 },
    );
    assert.ok(ghost.kind === "failed" && ghost.status === 504, JSON.stringify(ghost));
    const noDriver = await proxy.execute(
      { deviceId: "ghost", address: { transport: "mqtt", address: "ghost" } },
      [GET_MAN],
      {
        timeoutMs: 300,
      },
    );
    assert.ok(noDriver.kind === "failed" && noDriver.status === 503, JSON.stringify(noDriver));
    const noAccount = await proxy.execute(
      { deviceId: "stranger", address: { transport: "http", address: "udp://127.0.0.1:9" } },
      [GET_MAN],
      { timeoutMs: 300 },
    );
    assert.ok(noAccount.kind === "failed" && noAccount.status === 401, JSON.stringify(noAccount));
  });

  it("a device may start a session itself; an unknown device's Package 1 is refused 403", async () => {
    const f = await startFleet([{ id: "talker" }]);
    const device = f.device("talker");
    const post = (body: Uint8Array, contentType: string) =>
      fetch(driver.url, { method: "POST", body, headers: { "content-type": contentType } });
    // The device's own client-initiated session, straight over HTTP.
    const report = await device.runSession({ kind: "client" }, async (m) => {
      const res = await fetch(m.url ?? driver.url, {
        method: "POST",
        body: m.body,
        headers: { ...m.headers, "content-type": m.contentType },
      });
      if (res.status !== 200) return undefined;
      const hmac = res.headers.get("x-syncml-hmac");
      return {
        body: new Uint8Array(await res.arrayBuffer()),
        contentType: res.headers.get("content-type") ?? "",
        headers: hmac === null ? {} : { "x-syncml-hmac": hmac },
      };
    });
    assert.ok(report.ok, report.reason);
    assert.equal(finished[0]?.deviceId, "talker");
    assert.equal(finished[0].outcome.initiatedBy, "client");

    accounts.remove("talker");
    const refused = await device.runSession({ kind: "client" }, async (m) => {
      const res = await post(m.body, m.contentType);
      assert.equal(res.status, 403);
      assert.match(await res.text(), /unknown device/);
      return undefined;
    });
    assert.ok(!refused.ok);
    assert.ok(log.records.some((r) => r.level === "warn" && /unknown device/.test(r.text)));
  });

  it("bad requests to the endpoint: 405, 404, 415, 413, 400 for garbage, 404 for a stale route", async () => {
    const url = driver.url;
    assert.equal((await fetch(url)).status, 405);
    assert.equal((await fetch(`${url}/nope`, { method: "POST" })).status, 404);
    assert.equal(
      (await fetch(url, { method: "POST", body: "x", headers: { "content-type": "text/plain" } })).status,
      415,
    );
    const big = new Uint8Array(200 * 1024);
    assert.equal(
      (
        await fetch(url, {
          method: "POST",
          body: big,
          headers: { "content-type": "application/vnd.syncml.dm+wbxml" },
        })
      ).status,
      413,
    );
    const garbage = await fetch(url, {
      method: "POST",
      body: "<html>hi</html>",
      headers: { "content-type": "application/vnd.syncml.dm+xml" },
    });
    assert.equal(garbage.status, 400);
    const stale = await fetch(`${url}/s/${"ab".repeat(16)}`, {
      method: "POST",
      body: "x",
      headers: { "content-type": "application/vnd.syncml.dm+xml" },
    });
    assert.equal(stale.status, 404);
    assert.deepEqual(states, ["starting", "ready"]);
  });

  it("fifty devices in parallel, one session each, all replied", async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `dev-${i}`);
    await startFleet(ids.map((id, i) => ({ id, scheme: i % 2 === 0 ? "md5" : "hmac" })));
    const outcomes = await Promise.all(
      ids.map((id) => proxy.execute(target(id), [GET_MAN, REPLACE], { timeoutMs: 10_000 })),
    );
    for (const o of outcomes) assert.deepEqual(statuses(o), [200, 200]);
  });

  it("stop() is idempotent, closes the port, and execute after it answers 503", async () => {
    await driver.stop();
    await driver.stop();
    assert.equal(driver.state, "stopped");
    await assert.rejects(fetch(driver.url, { method: "POST" }));
    accounts.put({
      deviceId: "late",
      serverId: GATEWAY_SERVER_ID,
      clientAuth: { scheme: "md5", name: "late", secret: "x" },
      serverAuth: { scheme: "md5", name: GATEWAY_SERVER_ID, secret: "y" },
    });
    const late = await proxy.execute(
      { deviceId: "late", address: { transport: "http", address: "udp://127.0.0.1:9" } },
      [GET_MAN],
      {
        timeoutMs: 500,
      },
    );
    assert.ok(late.kind === "failed" && late.status === 503, JSON.stringify(late));
  });
});
