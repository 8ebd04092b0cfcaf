import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createConnection, createServer, type Socket } from "node:net";
import { connectAsync, type IPublishPacket, type MqttClient } from "mqtt";
import { MqttDriver, type MqttDriverConfig } from "../../drivers/mqtt/driver.js";
import { MqttDeviceFleet, type MqttFleetOptions } from "../../drivers/mqtt/sim.js";
import type { DeviceAddress, DmMessage, DriverState, ProxyDriverContext } from "../../drivers/driver.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import { MemoryLogger } from "../../src/core/log.js";
import type { AuthConfig } from "../../src/dm/client-session.js";
import type { SessionOutcome } from "../../src/dm/server-session.js";
import { StoredDeviceAccounts } from "../../src/southbound/device-accounts.js";
import { ProxySessions, type DeviceOutcome } from "../../src/southbound/proxy-sessions.js";
import type { Command } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { startMosquitto, type Mosquitto } from "../helpers/mosquitto.js";
import { waitFor } from "../helpers/wait.js";

// The MQTT proxy driver against Debian's mosquitto and the project's device fleet (real DM client
// sessions). The server side is the gateway's southbound core: ProxySessions, with the device
// accounts in an in-memory store.

const SERVER_ID = "dmgw";
const CLIENT_SECRET = "client-secret";
const SERVER_SECRET = "server-secret";
const PASSWORD = "broker-password-never-logged";

/** md5 for odd devices, hmac for even ones (the HMAC travels as an MQTT 5 user property). */
function schemeFor(deviceId: string): "md5" | "hmac" {
  const n = Number(/(\d+)$/.exec(deviceId)?.[1] ?? "1");
  return n % 2 === 0 ? "hmac" : "md5";
}
function clientAuth(deviceId: string): AuthConfig {
  return { scheme: schemeFor(deviceId), name: deviceId, secret: CLIENT_SECRET };
}
function serverAuth(deviceId: string): AuthConfig {
  return { scheme: schemeFor(deviceId), name: SERVER_ID, secret: SERVER_SECRET };
}

const GET_DEVID: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/DevId" } }] };
function replaceSetting(value: string): Command {
  return {
    kind: "Replace",
    cmdId: "2",
    items: [
      {
        target: { locUri: "./Vendor/Setting1" },
        meta: { format: "int" },
        data: { kind: "text", text: value },
      },
    ],
  };
}

interface Gateway {
  readonly driver: MqttDriver;
  readonly proxy: ProxySessions;
  readonly log: MemoryLogger;
  /** Every session ProxySessions finished: the device, where its first message came from, the outcome. */
  readonly sessions: { deviceId: string; from: DeviceAddress; outcome: SessionOutcome }[];
  readonly states: DriverState[];
  readonly seen: string[];
  readonly lost: string[];
  /** One session with `deviceId` through ProxySessions (its account is stored on first use). */
  execute(deviceId: string, commands: readonly Command[], timeoutMs?: number): Promise<DeviceOutcome>;
}

const address = (deviceId: string): DeviceAddress => ({ transport: "mqtt", address: deviceId });

describe("MqttDriver (mosquitto)", function () {
  this.timeout(30_000);
  let broker: Mosquitto;
  let cleanups: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    broker = await startMosquitto();
  });

  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups = [];
    await broker.stop();
  });

  function uniqueId(tag: string): string {
    return `dmgw-test-${tag}-${randomBytes(4).toString("hex")}`;
  }

  function gateway(
    config: Partial<MqttDriverConfig> = {},
    onMessage?: ProxyDriverContext["onMessage"],
  ): Gateway {
    const log = new MemoryLogger("dmgw:drv:mqtt");
    // A fresh store per gateway: every test's fleet starts from zero nonces too.
    const store = Store.open(":memory:");
    const accounts = new StoredDeviceAccounts(store);
    const sessions: Gateway["sessions"] = [];
    const proxy = new ProxySessions({
      accounts,
      serverUri: SERVER_ID,
      log: log.child("proxy"),
      onSession: (deviceId, from, outcome) => {
        sessions.push({ deviceId, from, outcome });
      },
    });
    const states: DriverState[] = [];
    const seen: string[] = [];
    const lost: string[] = [];
    const abort = new AbortController();
    const driver = new MqttDriver(
      { url: broker.url, clientId: uniqueId("gw"), reconnect: { initialMs: 100, maxMs: 400 }, ...config },
      {
        log,
        signal: abort.signal,
        onState: (s) => states.push(s),
        onDeviceSeen: (d) => seen.push(d.address),
        onDeviceLost: (d) => lost.push(d.address),
        onMessage: onMessage ?? proxy.handler,
      },
    );
    proxy.attach(driver);
    cleanups.push(async () => {
      proxy.close();
      await driver.stop();
      store.close();
    });
    return {
      driver,
      proxy,
      log,
      sessions,
      states,
      seen,
      lost,
      execute: (deviceId, commands, timeoutMs = 10_000) => {
        if (accounts.get(deviceId) === undefined) {
          accounts.put({
            deviceId,
            serverId: SERVER_ID,
            clientAuth: clientAuth(deviceId),
            serverAuth: serverAuth(deviceId),
          });
        }
        return proxy.execute({ deviceId, address: address(deviceId) }, commands, { timeoutMs });
      },
    };
  }

  function fleet(options: Partial<MqttFleetOptions> & { count: number }): MqttDeviceFleet {
    const f = new MqttDeviceFleet({
      url: broker.url,
      account: (deviceId) => ({
        serverId: SERVER_ID,
        clientAuth: clientAuth(deviceId),
        serverAuth: serverAuth(deviceId),
      }),
      answerTimeoutMs: 5000,
      reconnectPeriodMs: 200,
      ...options,
    });
    cleanups.push(() => f.stop());
    return f;
  }

  async function observer(...topics: string[]): Promise<{ client: MqttClient; got: IPublishPacket[] }> {
    const client = await connectAsync(broker.url, { protocolVersion: 5, clientId: uniqueId("obs") });
    const got: IPublishPacket[] = [];
    client.on("message", (_t, _p, packet) => got.push(packet));
    if (topics.length > 0) await client.subscribeAsync(topics, { qos: 1 });
    cleanups.push(() => client.endAsync(true));
    return { client, got };
  }

  function assertReplied(outcome: DeviceOutcome, deviceId: string): void {
    assert.equal(outcome.kind, "replied", outcome.kind === "failed" ? `${deviceId}: ${outcome.reason}` : "");
    const [get, replace] = outcome.records;
    assert.equal(get?.status, 200);
    const data = get.results[0]?.items[0]?.data;
    assert.deepEqual(data, { kind: "text", text: deviceId });
    assert.equal(replace?.status, 200);
  }

  it("runs full proxy sessions for several devices at once (md5 and HMAC)", async () => {
    const gw = gateway();
    await gw.driver.start();
    assert.equal(gw.driver.state, "ready");
    assert.deepEqual(gw.states, ["starting", "ready"]);
    const devices = fleet({ count: 6, idPrefix: "dev" });
    await devices.start();
    await waitFor("all devices seen", () => gw.seen.length === 6);
    assert.deepEqual([...gw.seen].sort(), [...devices.ids]);

    const outcomes = await Promise.all(
      devices.ids.map((id) => gw.execute(id, [GET_DEVID, replaceSetting("42")])),
    );
    outcomes.forEach((o, i) => {
      assertReplied(o, devices.ids[i]!);
    });
    for (const id of devices.ids) {
      assert.equal(devices.device(id)?.tree.read("./Vendor/Setting1")?.value, "42");
    }
    // A second round: the nonces the first sessions settled on are used and accepted.
    const again = await Promise.all(
      devices.ids.map((id) => gw.execute(id, [GET_DEVID, replaceSetting("7")])),
    );
    again.forEach((o, i) => {
      assertReplied(o, devices.ids[i]!);
    });
    await devices.idle();
    for (const id of devices.ids) {
      assert.deepEqual(
        devices.reports(id).map((r) => r?.ok),
        [true, true],
      );
    }
    // The core saw each session come from the device's own topic, authenticated, with its DevInfo.
    assert.equal(gw.sessions.length, 12);
    for (const x of gw.sessions) {
      assert.deepEqual(x.from, address(x.deviceId));
      assert.equal(x.outcome.authenticated, true);
      assert.equal(x.outcome.initiatedBy, "server");
      assert.equal(x.outcome.devInfo["DevId"], x.deviceId);
    }
    assert.equal(gw.proxy.active, 0);
  });

  it("publishes Pkg#0 and the DM messages with their MQTT 5 content types, QoS 1", async () => {
    const gw = gateway();
    await gw.driver.start();
    const devices = fleet({ count: 1, idPrefix: "dev" });
    await devices.start();
    const [id] = devices.ids;
    const obs = await observer(`dmgw/${id}/dm/down`, `dmgw/${id}/dm/up`);
    const outcome = await gw.execute(id!, [GET_DEVID, replaceSetting("1")]);
    assertReplied(outcome, id!);
    await waitFor("observer copies", () => obs.got.length >= 4);
    const [pkg0, pkg1] = obs.got;
    assert.equal(pkg0?.topic, `dmgw/${id}/dm/down`);
    assert.equal(pkg0.properties?.contentType, "application/vnd.syncml.notification");
    assert.equal(pkg0.qos, 1);
    assert.equal(pkg1?.topic, `dmgw/${id}/dm/up`);
    assert.equal(pkg1.properties?.contentType, "application/vnd.syncml.dm+wbxml");
    const downs = obs.got.filter((p) => p.topic.endsWith("/dm/down")).slice(1);
    assert.ok(downs.length >= 1);
    for (const p of downs) assert.equal(p.properties?.contentType, "application/vnd.syncml.dm+wbxml");
  });

  it("carries x-syncml-hmac both ways on an HMAC device", async () => {
    const gw = gateway();
    await gw.driver.start();
    const devices = fleet({ count: 2, idPrefix: "hm" });
    await devices.start();
    const id = devices.ids.find((d) => schemeFor(d) === "hmac")!;
    const obs = await observer(`dmgw/${id}/dm/+`);
    assertReplied(await gw.execute(id, [GET_DEVID, replaceSetting("5")]), id);
    await waitFor("observer copies", () => obs.got.length >= 4);
    const dm = obs.got.filter((p) => p.properties?.contentType !== "application/vnd.syncml.notification");
    assert.ok(dm.length >= 3);
    for (const p of dm) {
      const hmac = p.properties?.userProperties?.["x-syncml-hmac"];
      assert.equal(typeof hmac, "string", `${p.topic} carries the HMAC`);
      assert.match(String(hmac), /algorithm=MD5/i);
    }
  });

  it("reports presence: retained online -> seen; the fleet's connection dies -> last will -> lost", async () => {
    const gw = gateway();
    await gw.driver.start();
    const devices = fleet({ count: 3, connections: 3, idPrefix: "pr" });
    await devices.start();
    await waitFor("seen", () => gw.seen.length === 3);
    assert.deepEqual(gw.lost, []);
    await devices.kill();
    await waitFor("lost by last will", () => gw.lost.length === 3);
    assert.deepEqual([...gw.lost].sort(), [...devices.ids]);
    // A device known offline is unreachable at once (503), not a 504 after the timeout.
    const started = Date.now();
    const outcome = await gw.execute(devices.ids[0]!, [GET_DEVID], 5000);
    assert.deepEqual(outcome.kind === "failed" && outcome.status, 503);
    assert.ok(Date.now() - started < 1000);
    await assert.rejects(gw.driver.notify(address(devices.ids[0]!), new Uint8Array(24)), (e) =>
      isGatewayError(e, ErrorCode.Driver_Unreachable),
    );
  });

  it("sees a device that comes back after its last will, and one that stops cleanly goes offline", async () => {
    const gw = gateway();
    await gw.driver.start();
    const first = fleet({ count: 1, idPrefix: "back" });
    await first.start();
    await waitFor("seen", () => gw.seen.length === 1);
    await first.kill();
    await waitFor("lost", () => gw.lost.length === 1);
    const second = fleet({ count: 1, idPrefix: "back" });
    await second.start();
    await waitFor("seen again", () => gw.seen.length === 2);
    assertReplied(await gw.execute(second.ids[0]!, [GET_DEVID, replaceSetting("3")]), second.ids[0]!);
    await second.stop();
    await waitFor("lost on clean stop", () => gw.lost.length === 2);
  });

  it("gives each failure of the mix its outcome within the timeout while the others carry on", async () => {
    const gw = gateway();
    await gw.driver.start();
    const failures = ["none", "silent", "garbage", "drop-mid-session", "wrong-credentials", "none"] as const;
    const devices = fleet({
      count: failures.length,
      idPrefix: "mix",
      device: (i) => ({ failure: failures[i] ?? "none", latencyMs: 20 }),
      answerTimeoutMs: 3000,
    });
    await devices.start();
    await waitFor("seen", () => gw.seen.length === failures.length);
    const timeoutMs = 2500;
    const started = Date.now();
    const outcomes = await Promise.all(
      devices.ids.map((id) => gw.execute(id, [GET_DEVID, replaceSetting("9")], timeoutMs)),
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed < timeoutMs + 500, `settled in ${elapsed} ms`);
    const byFailure = new Map(failures.map((f, i) => [`${f}#${i}`, outcomes[i]!]));
    assertReplied(byFailure.get("none#0")!, devices.ids[0]!);
    assertReplied(byFailure.get("none#5")!, devices.ids[5]!);
    const status = (key: string): number | undefined => {
      const o = byFailure.get(key);
      return o?.kind === "failed" ? o.status : undefined;
    };
    assert.equal(status("silent#1"), 504);
    assert.equal(status("garbage#2"), 502);
    assert.equal(status("drop-mid-session#3"), 504);
    assert.equal(status("wrong-credentials#4"), 401);
    assert.equal(gw.proxy.active, 0, "no failed session is left open");
    // The healthy devices still work afterwards.
    assertReplied(await gw.execute(devices.ids[0]!, [GET_DEVID, replaceSetting("10")]), devices.ids[0]!);
  });

  it("goes degraded when the broker dies and ready again when it is back on the same port", async () => {
    const gw = gateway();
    await gw.driver.start();
    const devices = fleet({ count: 2, idPrefix: "rs" });
    await devices.start();
    await waitFor("seen", () => gw.seen.length === 2);
    assertReplied(await gw.execute(devices.ids[0]!, [GET_DEVID, replaceSetting("1")]), devices.ids[0]!);
    // The device takes in the session's last message (and its nonces) before the broker dies.
    await devices.idle();

    const port = broker.port;
    await broker.stop({ abrupt: true });
    await waitFor("degraded", () => gw.driver.state === "degraded");
    await assert.rejects(gw.driver.notify(address(devices.ids[0]!), new Uint8Array(24)), (e) =>
      isGatewayError(e, ErrorCode.Driver_Unreachable),
    );
    // Down for a few reconnect attempts.
    await new Promise((r) => setTimeout(r, 600));
    const onlineBefore = devices.onlineCount;
    broker = await startMosquitto({ port });
    await waitFor("ready again", () => gw.driver.state === "ready");
    assert.deepEqual(gw.states.slice(0, 4), ["starting", "ready", "degraded", "ready"]);
    await waitFor("fleet back", () => devices.onlineCount >= onlineBefore + 1);
    for (const id of devices.ids) {
      assertReplied(await gw.execute(id, [GET_DEVID, replaceSetting("2")]), id);
    }
    assert.match(gw.log.dump(), /broker connection lost/);
  });

  it("delivers what a device sent while the gateway was away (persistent session)", async () => {
    const clientId = uniqueId("persist");
    const first = gateway({ clientId });
    await first.driver.start();
    await first.driver.stop();
    assert.equal(first.driver.state, "stopped");

    const device = await observer("dmgw/devq/dm/down");
    const body = Uint8Array.from([0x02, 0xa4, 0x01, 0x6a, 0x00, 0x6d]);
    await device.client.publishAsync("dmgw/devq/dm/up", Buffer.from(body), {
      qos: 1,
      properties: {
        contentType: "application/vnd.syncml.dm+wbxml",
        userProperties: { "x-syncml-hmac": "algorithm=MD5, username=devq, mac=AAAA" },
      },
    });

    const received: { from: DeviceAddress; message: DmMessage; route: string | undefined }[] = [];
    const second = gateway({ clientId }, (from, message, route) => {
      received.push({ from, message, route });
      return Promise.resolve({
        kind: "reply",
        message: {
          body: Uint8Array.from([1, 2, 3]),
          contentType: "application/vnd.syncml.dm+xml",
          headers: { "x-syncml-hmac": "algorithm=MD5, username=dmgw, mac=BBBB" },
        },
      });
    });
    await second.driver.start();
    await waitFor("the queued message", () => received.length === 1);
    const [got] = received;
    assert.deepEqual(got?.from, { transport: "mqtt", address: "devq" });
    assert.equal(got.route, undefined);
    assert.equal(Buffer.from(got.message.body).toString("hex"), Buffer.from(body).toString("hex"));
    assert.equal(got.message.contentType, "application/vnd.syncml.dm+wbxml");
    assert.deepEqual(got.message.headers, { "x-syncml-hmac": "algorithm=MD5, username=devq, mac=AAAA" });
    await waitFor("the reply", () => device.got.length === 1);
    const reply = device.got[0]!;
    assert.equal(reply.topic, "dmgw/devq/dm/down");
    assert.equal(Buffer.from(reply.payload).toString("hex"), "010203");
    assert.equal(reply.properties?.contentType, "application/vnd.syncml.dm+xml");
    assert.deepEqual(
      { ...reply.properties.userProperties },
      { "x-syncml-hmac": "algorithm=MD5, username=dmgw, mac=BBBB" },
    );
  });

  it("announces its own presence on <prefix>/gateway/status, retained", async () => {
    const gw = gateway({ prefix: "site/dmgw" });
    await gw.driver.start();
    const obs = await observer("site/dmgw/gateway/status");
    await waitFor("retained online", () => obs.got.length === 1);
    assert.equal(obs.got[0]?.retain, true);
    assert.equal(Buffer.from(obs.got[0].payload).toString(), '{"state":"online"}');
    assert.equal(obs.got[0].properties?.contentType, "application/json");
    await gw.driver.stop();
    await waitFor("offline", () => obs.got.length >= 2);
    assert.equal(Buffer.from(obs.got.at(-1)!.payload).toString(), '{"state":"offline"}');
  });

  it("publishes its last will when its connection dies, then resumes its session", async () => {
    const proxy = await cuttableProxy(broker.port);
    cleanups.push(() => proxy.close());
    const received: string[] = [];
    const gw = gateway({ url: `mqtt://127.0.0.1:${proxy.port}` }, (from, message) => {
      received.push(`${from.address}:${Buffer.from(message.body).toString("hex")}`);
      return Promise.resolve({ kind: "ended" });
    });
    await gw.driver.start();
    const obs = await observer("dmgw/gateway/status");
    await waitFor("online", () => obs.got.length === 1);

    proxy.pause(true);
    proxy.cut();
    await waitFor("degraded", () => gw.driver.state === "degraded");
    await waitFor("the last will", () => obs.got.length === 2);
    assert.equal(Buffer.from(obs.got[1]!.payload).toString(), '{"state":"offline"}');
    // Sent while the gateway is away: the broker queues it in the gateway's session.
    const device = await observer();
    await device.client.publishAsync("dmgw/devw/dm/up", Buffer.from([0xca, 0xfe]), {
      qos: 1,
      properties: { contentType: "application/vnd.syncml.dm+wbxml" },
    });
    assert.deepEqual(received, []);

    proxy.pause(false);
    await waitFor("ready again", () => gw.driver.state === "ready");
    await waitFor("the queued message", () => received.length === 1);
    assert.deepEqual(received, ["devw:cafe"]);
    await waitFor("online again", () => obs.got.length === 3);
    assert.equal(Buffer.from(obs.got[2]!.payload).toString(), '{"state":"online"}');
    assert.deepEqual(gw.states, ["starting", "ready", "degraded", "ready"]);
    assert.match(gw.log.dump(), /sessionPresent.*true/);
  });

  it("refuses to start on a bad prefix or an unreachable broker, and leaves nothing behind", async () => {
    const before = await baseline();
    const bad = gateway({ prefix: "a/+/b" });
    await assert.rejects(bad.driver.start(), (e) => isGatewayError(e, ErrorCode.Driver_StartFailed));
    assert.equal(bad.driver.state, "stopped");
    const closed = await startMosquitto();
    const url = closed.url;
    await closed.stop();
    const nobody = gateway({ url, connectTimeoutMs: 700 });
    await assert.rejects(nobody.driver.start(), (e) => isGatewayError(e, ErrorCode.Driver_StartFailed));
    assert.equal(nobody.driver.state, "stopped");
    await nobody.driver.stop();
    const after = await settledTo(before);
    assert.deepEqual(after, before);
  });

  it("stop() is idempotent, never throws, leaves no socket or timer, and never logs the password", async () => {
    const before = await baseline();
    const neverStarted = gateway();
    await neverStarted.driver.stop();
    const u = new URL(broker.url);
    u.username = "gwuser";
    u.password = "url-secret-never-logged";
    const gw = gateway({ url: u.toString(), username: "gwuser", password: PASSWORD });
    await Promise.all([gw.driver.start(), gw.driver.start()]);
    const devices = fleet({ count: 3, idPrefix: "st" });
    await devices.start();
    await waitFor("seen", () => gw.seen.length === 3);
    assertReplied(await gw.execute(devices.ids[0]!, [GET_DEVID, replaceSetting("4")]), devices.ids[0]!);
    await devices.stop();
    await Promise.all([gw.driver.stop(), gw.driver.stop()]);
    await gw.driver.stop();
    assert.equal(gw.driver.state, "stopped");
    assert.deepEqual(gw.states.slice(-2), ["stopping", "stopped"]);
    assert.deepEqual(await settledTo(before), before);
    const dump = gw.log.dump();
    assert.ok(!dump.includes(PASSWORD));
    assert.ok(!dump.includes("url-secret-never-logged"));
    // Started again after a stop, it works.
    await gw.driver.start();
    assert.equal(gw.driver.state, "ready");
  });
});

/** Sockets and timers once the test is under way (mocha's own timer armed, probe sockets gone). */
async function baseline(): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 50));
  return resources();
}

/** Waits (up to 2 s) until no more sockets and timers are alive than in `before`; returns the last look. */
async function settledTo(before: Record<string, number>): Promise<Record<string, number>> {
  const until = Date.now() + 2000;
  for (;;) {
    const now = resources();
    const above = Object.entries(now).some(([k, n]) => n > (before[k] ?? 0));
    if (!above || Date.now() > until) return now;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sockets and timers alive now (child-process pipes of the broker are excluded). */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (r !== "TCPSocketWrap" && r !== "Timeout" && r !== "TCPServerWrap") continue;
    counts[r] = (counts[r] ?? 0) + 1;
  }
  return counts;
}

/** A TCP relay to the broker that a test can cut (both sides destroyed, no DISCONNECT) and pause. */
async function cuttableProxy(targetPort: number): Promise<{
  readonly port: number;
  cut(): void;
  pause(paused: boolean): void;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let paused = false;
  const server = createServer((inbound) => {
    if (paused) {
      inbound.destroy();
      return;
    }
    const outbound = createConnection({ host: "127.0.0.1", port: targetPort });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on("close", () => {
        sockets.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
      s.on("error", () => undefined);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  const cut = (): void => {
    for (const s of sockets) s.destroy();
  };
  return {
    port,
    cut,
    pause: (p) => {
      paused = p;
    },
    close: () => {
      cut();
      return new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
