/**
 * The serial proxy driver on one end of socat pty pairs, the serial device simulator (a DM client on
 * the real client session code) on the other. The DM server side is a small handler running a
 * `ServerSession` per device (what src/southbound does for the gateway). socat is required.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type {
  DeviceAnswer,
  DeviceMessageHandler,
  DriverState,
  ProxyDriverContext,
} from "../../drivers/driver.js";
import { SerialDriver, type SerialDriverConfig } from "../../drivers/serial/driver.js";
import { SerialDeviceSimulator } from "../../drivers/serial/sim.js";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import { MemoryLogger } from "../../src/core/log.js";
import { buildPackage0, sessionIdText } from "../../src/dm/package0.js";
import { ServerSession, type SessionOutcome } from "../../src/dm/server-session.js";
import { SimulatedDevice, type DeviceFailure } from "../../src/sim/dm-device.js";
import type { Command } from "../../src/syncml/index.js";
import { startPtyPair, type PtyPair } from "../helpers/pty.js";

const SERVER_ID = "gw";
const CLIENT_SECRET = "client-secret";
const SERVER_SECRET = "server-secret";
const ZERO = new Uint8Array(4);

function ptyFds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith("/dev/pts/")) out.push(`${fd} -> ${target}`);
    } catch {
      // The descriptor readdir itself used.
    }
  }
  return out;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

type Outcome =
  | { readonly kind: "replied"; readonly outcome: SessionOutcome }
  | { readonly kind: "failed"; readonly status: number; readonly reason: string };

/** The DM server side: one ServerSession per port address, nonces kept per device. */
class TestCore {
  readonly #sessions = new Map<string, { session: ServerSession; done: (o: SessionOutcome) => void }>();
  readonly #nonces = new Map<string, { client: Uint8Array; server: Uint8Array }>();

  readonly handler: DeviceMessageHandler = (from, message): Promise<DeviceAnswer> => {
    const entry = this.#sessions.get(from.address);
    if (entry === undefined) return Promise.resolve({ kind: "refused", status: 404, reason: "no session" });
    const step = entry.session.receive(message.body, message.contentType, message.headers);
    if (step.kind === "reply") {
      return Promise.resolve({
        kind: "reply",
        message: { body: step.body, contentType: step.contentType, headers: step.headers },
      });
    }
    this.#sessions.delete(from.address);
    entry.done(step.outcome);
    return Promise.resolve(
      step.reply === undefined
        ? { kind: "ended" }
        : {
            kind: "reply",
            message: {
              body: step.reply.body,
              contentType: step.reply.contentType,
              headers: step.reply.headers,
            },
          },
    );
  };

  async execute(
    driver: SerialDriver,
    address: string,
    deviceId: string,
    commands: readonly Command[],
    timeoutMs: number,
  ): Promise<Outcome> {
    const n = 1 + (randomBytes(2).readUInt16BE(0) % 0xfffe);
    const nonces = this.#nonces.get(deviceId) ?? { client: ZERO, server: ZERO };
    const session = new ServerSession({
      serverUri: SERVER_ID,
      expectedDevice: deviceId,
      clientAuth: { scheme: "md5", name: deviceId, secret: CLIENT_SECRET },
      serverAuth: { scheme: "md5", name: SERVER_ID, secret: SERVER_SECRET },
      clientNonce: nonces.client,
      serverNonce: nonces.server,
      randomBytes: (k) => new Uint8Array(randomBytes(k)),
      initiation: { sessionId: sessionIdText(n) },
    });
    session.enqueue(commands);
    let timer: NodeJS.Timeout | undefined;
    const outcome = new Promise<Outcome>((resolve) => {
      this.#sessions.set(address, {
        session,
        done: (o) => {
          this.#nonces.set(deviceId, { client: o.nextClientNonce, server: o.nextServerNonce });
          if (o.error !== undefined) {
            const status =
              o.error.code === "auth-failed" || o.error.code === "server-auth-rejected" ? 401 : 502;
            resolve({ kind: "failed", status, reason: o.error.reason });
          } else resolve({ kind: "replied", outcome: o });
        },
      });
      timer = setTimeout(() => {
        this.#sessions.delete(address);
        resolve({ kind: "failed", status: 504, reason: "no answer in time" });
      }, timeoutMs);
    });
    const pkg0 = buildPackage0(
      {
        version: 11,
        uiMode: "not-specified",
        initiator: "server",
        sessionId: n,
        serverId: SERVER_ID,
        vendorSpecific: new Uint8Array(0),
      },
      { serverId: SERVER_ID, password: SERVER_SECRET, nonce: nonces.server },
    );
    try {
      await driver.notify({ transport: "serial", address }, pkg0);
    } catch (e) {
      clearTimeout(timer);
      this.#sessions.delete(address);
      return { kind: "failed", status: 503, reason: e instanceof Error ? e.message : String(e) };
    }
    const result = await outcome;
    clearTimeout(timer);
    return result;
  }
}

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
    readonly core: TestCore;
    readonly states: DriverState[];
    readonly log: MemoryLogger;
    readonly seen: string[];
    readonly lost: string[];
  }

  function rig(config: SerialDriverConfig): Rig {
    const core = new TestCore();
    const states: DriverState[] = [];
    const seen: string[] = [];
    const lost: string[] = [];
    const log = new MemoryLogger("dmgw:drv:serial");
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
      onMessage: core.handler,
    };
    const driver = new SerialDriver(config, ctx);
    cleanups.push(() => driver.stop());
    return { driver, core, states, log, seen, lost };
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
    const { driver, core, states, seen } = rig({ ports: [{ path: pty.a, deviceId: "sim-1" }] });
    const { sim } = await simOn(pty.b, device("sim-1"));
    await driver.start();
    assert.equal(driver.state, "ready");
    assert.equal(driver.concurrency, 1);
    assert.equal(driver.respUri(), undefined);
    assert.deepEqual(seen, [pty.a]);

    const started = Date.now();
    const r = await core.execute(driver, pty.a, "sim-1", [GET_MAN, REPLACE_SETTING], 10_000);
    const elapsed = Date.now() - started;
    if (r.kind === "failed") assert.fail(`${r.status}: ${r.reason}`);
    const [get, replace] = r.outcome.commands;
    assert.equal(get?.status, 200);
    assert.deepEqual(get.results[0]?.items[0]?.data, { kind: "text", text: "SimCo" });
    assert.equal(replace?.status, 200);
    assert.equal(sim.device.tree.read("./Vendor/Setting1")?.value, "42");
    await sim.idle();
    assert.equal(sim.reports[0]?.ok, true, sim.reports[0]?.reason);
    console.log(`      (session of ${sim.reports[0].messages} device messages in ${elapsed} ms)`);

    // A second session on the same port (nonces carried over).
    const again = await core.execute(driver, pty.a, "sim-1", [GET_MAN], 10_000);
    assert.equal(again.kind, "replied", again.kind === "failed" ? again.reason : "");
    assert.deepEqual(states, ["starting", "ready"]);
  });

  it("splits a large message over small OBEX packets (255 bytes) both ways", async () => {
    const pty = await pair();
    const { driver, core, log } = rig({ ports: [{ path: pty.a }], maxPacketLength: 255 });
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
    const r = await core.execute(driver, pty.a, "sim-big", [replace, GET_MAN], 15_000);
    if (r.kind === "failed") assert.fail(`${r.status}: ${r.reason}`);
    assert.ok(r.outcome.commands[0]?.status !== undefined);
    assert.equal(r.outcome.commands[1]?.status, 200);
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
      const { driver, core } = rig({ ports: [{ path: pty.a }], responseTimeoutMs: 2000 });
      await simOn(pty.b, device(`sim-${failure}`, failure));
      await driver.start();
      const started = Date.now();
      const r = await core.execute(driver, pty.a, `sim-${failure}`, [GET_MAN], 2500);
      assert.ok(r.kind === "failed", "expected a failure");
      assert.equal(r.status, status, r.reason);
      assert.ok(Date.now() - started < 3500);
    });
  }

  it("skips line garbage before the device's packets", async () => {
    const pty = await pair();
    const { driver, core, log } = rig({ ports: [{ path: pty.a }] });
    await driver.start();
    const noise = await openSerialLink({ path: pty.b });
    const w = noise.writable.getWriter();
    await w.write(Uint8Array.from([0x0d, 0x0a, 0x41, 0x54, 0x00, 0xa0, 0x00, 0x01, 0x55]));
    w.releaseLock();
    await noise.close();
    await simOn(pty.b, device("sim-noise"));
    const r = await core.execute(driver, pty.a, "sim-noise", [GET_MAN], 10_000);
    assert.equal(r.kind, "replied", r.kind === "failed" ? r.reason : "");
    await waitFor("the discard logged", () => log.records.some((x) => x.text.includes("discarded")));
  });

  it("goes degraded when the pty pair dies and ready again on a new link when it is back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dmgw-serial-"));
    cleanups.push(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const first = await pair(dir);
    const { driver, core, states, seen, lost } = rig({
      ports: [{ path: first.a }],
      reconnect: { initialMs: 50, maxMs: 200 },
      responseTimeoutMs: 1000,
    });
    const dev = device("sim-cable");
    const one = await simOn(first.b, dev);
    await driver.start();
    await first.stop();
    await waitFor("degraded", () => driver.state === "degraded");
    assert.deepEqual(lost, [first.a]);
    const down = await core.execute(driver, first.a, "sim-cable", [GET_MAN], 1000);
    assert.ok(down.kind === "failed" && down.status === 503);
    await one.sim.close();

    const second = await pair(dir);
    await waitFor("ready again", () => driver.state === "ready", 10_000);
    const link = await openSerialLink({ path: second.b });
    const sim2 = new SerialDeviceSimulator(link, { device: dev });
    cleanups.push(() => sim2.close());
    const r = await core.execute(driver, second.a, "sim-cable", [GET_MAN], 10_000);
    assert.equal(r.kind, "replied", r.kind === "failed" ? r.reason : "");
    assert.deepEqual(states, ["starting", "ready", "degraded", "ready"]);
    assert.deepEqual(seen, [first.a, first.a]);
  });

  it("stop() leaves no pty fd and no timer, and is idempotent", async () => {
    await new Promise((r) => setImmediate(r));
    const before = ptyFds();
    const resourcesBefore = process.getActiveResourcesInfo();
    const pty = await startPtyPair();
    const { driver, core } = rig({ ports: [{ path: pty.a }] });
    const dev = device("sim-stop");
    const link = await openSerialLink({ path: pty.b });
    const sim = new SerialDeviceSimulator(link, { device: dev });
    await driver.start();
    const r = await core.execute(driver, pty.a, "sim-stop", [GET_MAN], 10_000);
    assert.equal(r.kind, "replied");
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
