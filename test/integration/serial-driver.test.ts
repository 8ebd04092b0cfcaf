/**
 * The serial proxy driver on one end of socat pty pairs, the serial device simulator (a DM client on
 * the real client session code) on the other. The DM server side is the gateway's southbound core:
 * ProxySessions with its device accounts in an in-memory store. socat is required.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceAddress, DriverState, ProxyDriverContext } from "../../drivers/driver.js";
import { SerialDriver, type SerialDriverConfig } from "../../drivers/serial/driver.js";
import { SerialDeviceSimulator } from "../../drivers/serial/sim.js";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import { MemoryLogger } from "../../src/core/log.js";
import type { SessionOutcome } from "../../src/dm/server-session.js";
import { SimulatedDevice, type DeviceFailure } from "../../src/sim/dm-device.js";
import { StoredDeviceAccounts } from "../../src/southbound/device-accounts.js";
import { ProxySessions, type DeviceOutcome } from "../../src/southbound/proxy-sessions.js";
import type { Command } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { startPtyPair, type PtyPair } from "../helpers/pty.js";
import { ptyFds, waitFor } from "../helpers/wait.js";

const SERVER_ID = "gw";
const CLIENT_SECRET = "client-secret";
const SERVER_SECRET = "server-secret";

function device(deviceId: string, failure: DeviceFailure = "none"): SimulatedDevice {
  return new SimulatedDevice({
    deviceId,
    serverId: SERVER_ID,
    clientAuth: { scheme: "md5", name: deviceId, secret: CLIENT_SECRET },
    serverAuth: { scheme: "md5", name: SERVER_ID, secret: SERVER_SECRET },
    failure,
  });
}

const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const REPLACE_SETTING: Command = {
  kind: "Replace",
  cmdId: "2",
  items: [
    { target: { locUri: "./Vendor/Setting1" }, meta: { format: "int" }, data: { kind: "text", text: "42" } },
  ],
};

describe("serial proxy driver over socat pty pairs", function () {
  this.timeout(30_000);

  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  interface Rig {
    readonly driver: SerialDriver;
    readonly proxy: ProxySessions;
    readonly states: DriverState[];
    readonly log: MemoryLogger;
    readonly seen: string[];
    readonly lost: string[];
    /** Every session ProxySessions finished: the device, the port it came from, its outcome. */
    readonly sessions: { deviceId: string; from: DeviceAddress; outcome: SessionOutcome }[];
    /** One session through the gateway's core with the device on `port`. */
    readonly execute: (
      port: string,
      deviceId: string,
      commands: readonly Command[],
      timeoutMs: number,
    ) => Promise<DeviceOutcome>;
  }

  /** The gateway side: the serial driver feeding ProxySessions, which holds accounts for `deviceIds`. */
  function rig(config: SerialDriverConfig, deviceIds: readonly string[] = []): Rig {
    const store = Store.open(":memory:");
    const accounts = new StoredDeviceAccounts(store);
    for (const deviceId of deviceIds) {
      accounts.put({
        deviceId,
        serverId: SERVER_ID,
        clientAuth: { scheme: "md5", name: deviceId, secret: CLIENT_SECRET },
        serverAuth: { scheme: "md5", name: SERVER_ID, secret: SERVER_SECRET },
      });
    }
    const sessions: Rig["sessions"] = [];
    const log = new MemoryLogger("dmgw:drv:serial");
    const proxy = new ProxySessions({
      accounts,
      serverUri: SERVER_ID,
      log: new MemoryLogger("dmgw:southbound:proxy"),
      onSession: (deviceId, from, outcome) => {
        sessions.push({ deviceId, from, outcome });
      },
    });
    const states: DriverState[] = [];
    const seen: string[] = [];
    const lost: string[] = [];
    const abort = new AbortController();
    const ctx: ProxyDriverContext = {
      log,
      signal: abort.signal,
      onState: (s) => {
        states.push(s);
      },
      onDeviceSeen: (d) => {
        seen.push(d.address);
      },
      onDeviceLost: (d) => {
        lost.push(d.address);
      },
      onMessage: proxy.handler,
    };
    const driver = new SerialDriver(config, ctx);
    proxy.attach(driver);
    cleanups.push(
      () => {
        store.close();
      },
      () => driver.stop(),
      () => {
        proxy.close();
      },
    );
    return {
      driver,
      proxy,
      states,
      log,
      seen,
      lost,
      sessions,
      execute: (port, deviceId, commands, timeoutMs) =>
        proxy.execute({ deviceId, address: { transport: "serial", address: port } }, commands, { timeoutMs }),
    };
  }

  async function pair(dir?: string): Promise<PtyPair> {
    const p = await startPtyPair(dir === undefined ? {} : { dir });
    cleanups.push(() => p.stop());
    return p;
  }

  async function simOn(
    path: string,
    dev: SimulatedDevice,
    maxPacketLength?: number,
  ): Promise<{ sim: SerialDeviceSimulator; link: ByteLink }> {
    const link = await openSerialLink({ path });
    const sim = new SerialDeviceSimulator(link, {
      device: dev,
      ...(maxPacketLength !== undefined && { maxPacketLength }),
    });
    cleanups.push(async () => {
      await sim.close();
      dev.close();
    });
    return { sim, link };
  }

  it("runs a full proxy session: Pkg#0 in an OBEX Put, Package 1..n as Put/Get, results back", async () => {
    const pty = await pair();
    const { driver, execute, states, seen, sessions } = rig({ ports: [{ path: pty.a, deviceId: "sim-1" }] }, [
      "sim-1",
    ]);
    const { sim } = await simOn(pty.b, device("sim-1"));
    await driver.start();
    assert.equal(driver.state, "ready");
    assert.equal(driver.concurrency, 1);
    assert.equal(driver.respUri(), undefined);
    assert.deepEqual(seen, [pty.a]);

    const started = Date.now();
    const r = await execute(pty.a, "sim-1", [GET_MAN, REPLACE_SETTING], 10_000);
    const elapsed = Date.now() - started;
    if (r.kind === "failed") assert.fail(`${r.status}: ${r.reason}`);
    const [get, replace] = r.records;
    assert.equal(get?.status, 200);
    assert.deepEqual(get.results[0]?.items[0]?.data, { kind: "text", text: "SimCo" });
    assert.equal(replace?.status, 200);
    assert.equal(sim.device.tree.read("./Vendor/Setting1")?.value, "42");
    await sim.idle();
    assert.equal(sim.reports[0]?.ok, true, sim.reports[0]?.reason);
    console.log(`      (session of ${sim.reports[0].messages} device messages in ${elapsed} ms)`);

    // A second session on the same port (nonces carried over).
    const again = await execute(pty.a, "sim-1", [GET_MAN], 10_000);
    assert.equal(again.kind, "replied", again.kind === "failed" ? again.reason : "");
    assert.deepEqual(states, ["starting", "ready"]);
    // What the core saw of both sessions: the device on its port, authenticated, its DevInfo.
    assert.deepEqual(
      sessions.map((x) => [x.deviceId, x.from, x.outcome.initiatedBy, x.outcome.authenticated]),
      [
        ["sim-1", { transport: "serial", address: pty.a }, "server", true],
        ["sim-1", { transport: "serial", address: pty.a }, "server", true],
      ],
    );
    assert.equal(sessions[0]?.outcome.devInfo["Man"], "SimCo");
  });

  it("splits a large message over small OBEX packets (255 bytes) both ways", async () => {
    const pty = await pair();
    const { driver, execute, log } = rig({ ports: [{ path: pty.a }], maxPacketLength: 255 }, ["sim-big"]);
    const { sim } = await simOn(pty.b, device("sim-big"), 255);
    await driver.start();
    const big = "7".repeat(3000);
    const replace: Command = {
      kind: "Replace",
      cmdId: "1",
      items: [
        {
          target: { locUri: "./Vendor/Setting2" },
          meta: { format: "chr" },
          data: { kind: "text", text: big },
        },
      ],
    };
    const r = await execute(pty.a, "sim-big", [replace, GET_MAN], 15_000);
    if (r.kind === "failed") assert.fail(`${r.status}: ${r.reason}`);
    assert.ok(r.records[0]?.status !== undefined);
    assert.equal(r.records[1]?.status, 200);
    await sim.idle();
    assert.equal(sim.reports[0]?.ok, true, sim.reports[0]?.reason);
    // Every packet either side wrote fits 255 bytes, and the big message took many of them.
    const written = log.records.filter((x) => x.text.startsWith("» ")).map((x) => (x.text.length - 2) / 2);
    assert.ok(written.length > 12, `only ${written.length} packets`);
    assert.ok(written.every((n) => n <= 255));
  });

  for (const [failure, status] of [
    ["silent", 504],
    ["garbage", 502],
    ["drop-mid-session", 504],
    ["wrong-credentials", 401],
  ] as const) {
    it(`a ${failure} device ends with ${status} within the timeout`, async () => {
      const pty = await pair();
      const { driver, execute, proxy } = rig({ ports: [{ path: pty.a }], responseTimeoutMs: 2000 }, [
        `sim-${failure}`,
      ]);
      await simOn(pty.b, device(`sim-${failure}`, failure));
      await driver.start();
      const started = Date.now();
      const r = await execute(pty.a, `sim-${failure}`, [GET_MAN], 2500);
      assert.ok(r.kind === "failed", "expected a failure");
      assert.equal(r.status, status, r.reason);
      assert.ok(Date.now() - started < 3500);
      assert.equal(proxy.active, 0, "the failed session is closed");
    });
  }

  it("skips line garbage before the device's packets", async () => {
    const pty = await pair();
    const { driver, execute, log } = rig({ ports: [{ path: pty.a }] }, ["sim-noise"]);
    await driver.start();
    const noise = await openSerialLink({ path: pty.b });
    const w = noise.writable.getWriter();
    await w.write(Uint8Array.from([0x0d, 0x0a, 0x41, 0x54, 0x00, 0xa0, 0x00, 0x01, 0x55]));
    w.releaseLock();
    await noise.close();
    await simOn(pty.b, device("sim-noise"));
    const r = await execute(pty.a, "sim-noise", [GET_MAN], 10_000);
    assert.equal(r.kind, "replied", r.kind === "failed" ? r.reason : "");
    // A partial packet is dropped after the response timeout (5 s) when nothing completes it.
    await waitFor("the discard logged", () => log.records.some((x) => x.text.includes("discarded")), 12_000);
  });

  it("goes degraded when the pty pair dies and ready again on a new link when it is back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dmgw-serial-"));
    cleanups.push(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const first = await pair(dir);
    const { driver, execute, states, seen, lost } = rig(
      {
        ports: [{ path: first.a }],
        reconnect: { initialMs: 50, maxMs: 200 },
        responseTimeoutMs: 1000,
      },
      ["sim-cable"],
    );
    const dev = device("sim-cable");
    const one = await simOn(first.b, dev);
    await driver.start();
    await first.stop();
    await waitFor("degraded", () => driver.state === "degraded");
    assert.deepEqual(lost, [first.a]);
    const down = await execute(first.a, "sim-cable", [GET_MAN], 1000);
    assert.ok(down.kind === "failed" && down.status === 503);
    await one.sim.close();

    const second = await pair(dir);
    await waitFor("ready again", () => driver.state === "ready", 10_000);
    const link = await openSerialLink({ path: second.b });
    const sim2 = new SerialDeviceSimulator(link, { device: dev });
    cleanups.push(() => sim2.close());
    const r = await execute(second.a, "sim-cable", [GET_MAN], 10_000);
    assert.equal(r.kind, "replied", r.kind === "failed" ? r.reason : "");
    assert.deepEqual(states, ["starting", "ready", "degraded", "ready"]);
    assert.deepEqual(seen, [first.a, first.a]);
  });

  it("stop() leaves no pty fd and no timer, and is idempotent", async () => {
    await new Promise((r) => setImmediate(r));
    const before = ptyFds();
    const resourcesBefore = process.getActiveResourcesInfo();
    const pty = await startPtyPair();
    const { driver, execute, proxy } = rig({ ports: [{ path: pty.a }] }, ["sim-stop"]);
    const dev = device("sim-stop");
    const link = await openSerialLink({ path: pty.b });
    const sim = new SerialDeviceSimulator(link, { device: dev });
    await driver.start();
    const r = await execute(pty.a, "sim-stop", [GET_MAN], 10_000);
    assert.equal(r.kind, "replied");
    assert.equal(proxy.active, 0);
    await Promise.all([driver.stop(), driver.stop()]);
    await driver.stop();
    assert.equal(driver.state, "stopped");
    await sim.close();
    dev.close();
    await pty.stop();
    assert.deepEqual(ptyFds(), before, "a serial port outlived stop()");
    const count = (kind: string, list: readonly string[]): number => list.filter((x) => x === kind).length;
    const leftovers = (): string[] => {
      const now = process.getActiveResourcesInfo();
      return ["ProcessWrap", "PipeWrap", "Timeout"].filter((k) => count(k, now) > count(k, resourcesBefore));
    };
    await waitFor("no handle left", () => leftovers().length === 0, 1000).catch(() => undefined);
    assert.deepEqual(leftovers(), []);
  });

  it("start() with no openable port throws Driver_StartFailed and leaves the driver stopped", async () => {
    const { driver, states } = rig({ ports: [{ path: join(tmpdir(), "dmgw-no-such-tty") }] });
    await assert.rejects(driver.start(), /Driver_StartFailed/);
    assert.equal(driver.state, "stopped");
    assert.deepEqual(states, ["starting", "stopped"]);
    await driver.stop();
  });
});
