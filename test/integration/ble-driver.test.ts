/**
 * The BLE driver against the real node-ble and dbus-next, through a private dbus-daemon
 * (test/helpers/dbus.ts) and the fake org.bluez (drivers/ble/fake-bluez.ts): discovery with a UUID
 * filter, adaptation Get/Replace/Exec, proxy sessions through ProxySessions (messages over the MTU),
 * link loss, write errors, the connection pool.
 */
import assert from "node:assert/strict";
import { BleDriver, type BleDriverConfig } from "../../drivers/ble/driver.js";
import { FakeBluez } from "../../drivers/ble/fake-bluez.js";
import { sigUuid } from "../../drivers/ble/segment.js";
import { addGattDevice, addProxyDevice, simMac } from "../../drivers/ble/sim.js";
import type { DeviceAddress, DriverState, ProxyDriverContext } from "../../drivers/driver.js";
import { SILENT_LOGGER } from "../../src/core/log.js";
import type { AuthConfig } from "../../src/dm/auth.js";
import { StoredDeviceAccounts } from "../../src/southbound/device-accounts.js";
import { ProxySessions } from "../../src/southbound/proxy-sessions.js";
import type { Command } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { startDbusDaemon, useSystemBus, type DbusDaemon } from "../helpers/dbus.js";

const GW = "dmgw-ble";
const creds = (id: string): { clientAuth: AuthConfig; serverAuth: AuthConfig } => ({
  clientAuth: { scheme: "hmac", name: id, secret: `dev-${id}` },
  serverAuth: { scheme: "hmac", name: GW, secret: `gw-${id}` },
});

const get = (cmdId: string, ...uris: string[]): Command => ({
  kind: "Get",
  cmdId,
  items: uris.map((u) => ({ target: { locUri: u } })),
});

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Rig {
  readonly daemon: DbusDaemon;
  readonly fake: FakeBluez;
  readonly driver: BleDriver;
  readonly proxy: ProxySessions;
  readonly store: Store;
  readonly seen: { address: DeviceAddress; info: Readonly<Record<string, string>> | undefined }[];
  readonly lost: DeviceAddress[];
  readonly states: DriverState[];
  close(): Promise<void>;
}

async function rig(
  config: BleDriverConfig = {},
  fakeOptions: ConstructorParameters<typeof FakeBluez>[0] = {},
  ids: readonly string[] = [],
): Promise<{
  daemon: DbusDaemon;
  fake: FakeBluez;
  make: () => Rig;
  restore: () => void;
}> {
  const daemon = await startDbusDaemon();
  const restore = useSystemBus(daemon.address);
  const fake = new FakeBluez({ discoveryDelayMs: 20, ...fakeOptions });
  await fake.start();
  const make = (): Rig => {
    const store = Store.open(":memory:");
    const accounts = new StoredDeviceAccounts(store);
    for (const id of ids) accounts.put({ deviceId: id, serverId: GW, ...creds(id) });
    const proxy = new ProxySessions({ accounts });
    const seen: Rig["seen"] = [];
    const lost: DeviceAddress[] = [];
    const states: DriverState[] = [];
    const ctx: ProxyDriverContext = {
      log: SILENT_LOGGER,
      signal: new AbortController().signal,
      onMessage: proxy.handler,
      onState: (s: DriverState) => {
        states.push(s);
      },
      onDeviceSeen: (address, info) => {
        seen.push({ address, info });
      },
      onDeviceLost: (address) => {
        lost.push(address);
      },
    };
    const driver = new BleDriver(
      {
        discoveryIntervalMs: 50,
        linkIdleMs: 100,
        sessionIdleMs: 300,
        reconnect: { initialMs: 100, maxMs: 300 },
        ...config,
      },
      ctx,
    );
    proxy.attach(driver);
    return {
      daemon,
      fake,
      driver,
      proxy,
      store,
      seen,
      lost,
      states,
      close: async () => {
        proxy.close();
        await driver.stop();
        await fake.stop();
        await daemon.stop();
        store.close();
        restore();
      },
    };
  };
  return { daemon, fake, make, restore };
}

describe("BleDriver (node-ble + dbus-next + private dbus-daemon + fake org.bluez)", function () {
  this.timeout(20_000);
  let r: Rig | undefined;
  afterEach(async () => {
    await r?.close();
    r = undefined;
  });

  it("discovers with the UUID filter and reports DevInfo read from 0x180A", async () => {
    const base = await rig();
    addGattDevice(base.fake, {
      address: "AA:00:00:00:00:01",
      man: "Acme",
      mod: "T-1",
      fwV: "2.1",
      battery: 77,
    });
    addProxyDevice(base.fake, {
      address: "AA:00:00:00:00:02",
      device: { deviceId: "p1", serverId: GW, ...creds("p1") },
    });
    // A heart-rate monitor: not in the filter, never reported.
    base.fake.addDevice({
      address: "AA:00:00:00:00:03",
      services: [{ uuid: sigUuid(0x180d), characteristics: [] }],
    });
    r = base.make();
    await r.driver.start();
    await waitFor("two devices seen", () => r !== undefined && r.seen.length >= 2);
    await new Promise((res) => setTimeout(res, 200));
    const byMac = new Map(r.seen.map((s) => [s.address.address, s.info]));
    assert.equal(byMac.size, 2);
    assert.deepEqual(byMac.get("AA:00:00:00:00:01"), {
      Man: "Acme",
      Mod: "T-1",
      FwV: "2.1",
      SwV: "1.0.0",
      HwV: "A",
      DevId: "AA0000000001",
    });
    assert.equal(byMac.get("AA:00:00:00:00:02"), undefined);
    assert.ok(byMac.has("AA:00:00:00:00:02"));
    assert.equal(base.fake.device("AA:00:00:00:00:03")?.exported, false, "the fake applied the filter");
    base.fake.removeDevice("AA:00:00:00:00:01");
    await waitFor("device lost", () => r !== undefined && r.lost.length === 1);
    assert.equal(r.lost[0]?.address, "AA:00:00:00:00:01");
  });

  it("adaptation: Get maps to reads, Replace/Exec 405, unknown 404", async () => {
    const base = await rig({ readDevInfoOnDiscovery: false });
    addGattDevice(base.fake, { address: "AA:00:00:00:00:11", man: "Acme", battery: 42 });
    r = base.make();
    await r.driver.start();
    await waitFor("seen", () => r !== undefined && r.seen.length === 1);
    const out = await r.driver.execute(
      { transport: "ble", address: "AA:00:00:00:00:11" },
      [
        get("1", "./DevInfo/Man", "./Battery/Level"),
        {
          kind: "Replace",
          cmdId: "2",
          items: [{ target: { locUri: "./DevInfo/Man" }, data: { kind: "text", text: "x" } }],
        },
        { kind: "Exec", cmdId: "3", items: [{ target: { locUri: "./DevInfo/Man" } }] },
        get("4", "./Vendor/Nope"),
      ],
      { timeoutMs: 5000 },
    );
    assert.ok(out.kind === "replied", JSON.stringify(out));
    assert.deepEqual(
      out.results.map((x) => x.status),
      [200, 405, 405, 404],
    );
    assert.deepEqual(
      out.results[0]?.items.map((i) => [i.source?.locUri, i.data]),
      [
        ["./DevInfo/Man", { kind: "text", text: "Acme" }],
        ["./Battery/Level", { kind: "text", text: "42" }],
      ],
    );
    // A device without the Battery service: 404 for that Get.
    addGattDevice(base.fake, { address: "AA:00:00:00:00:12" });
    await waitFor("seen 2", () => r !== undefined && r.seen.length === 2);
    const nb = await r.driver.execute(
      { transport: "ble", address: "AA:00:00:00:00:12" },
      [get("1", "./Battery/Level")],
      {
        timeoutMs: 5000,
      },
    );
    assert.ok(nb.kind === "replied" && nb.results[0]?.status === 404, JSON.stringify(nb));
  });

  it("link loss: reported, the next execute 503, then recovery", async () => {
    const base = await rig({ readDevInfoOnDiscovery: false, linkIdleMs: 5000 });
    const dev = addGattDevice(base.fake, { address: "AA:00:00:00:00:21", battery: 9 });
    r = base.make();
    await r.driver.start();
    await waitFor("seen", () => r !== undefined && r.seen.length === 1);
    const addr = { transport: "ble" as const, address: "AA:00:00:00:00:21" };
    const first = await r.driver.execute(addr, [get("1", "./Battery/Level")], { timeoutMs: 3000 });
    assert.equal(first.kind, "replied");
    assert.equal(r.driver.connectedLinks, 1);
    dev.setReachable(false);
    dev.linkDown();
    await waitFor("link loss noticed", () => r !== undefined && r.driver.linkLosses === 1);
    assert.equal(r.driver.connectedLinks, 0);
    const down = await r.driver.execute(addr, [get("1", "./Battery/Level")], { timeoutMs: 3000 });
    assert.ok(down.kind === "failed" && (down.status === 503 || down.status === 504), JSON.stringify(down));
    dev.setReachable(true);
    const back = await r.driver.execute(addr, [get("1", "./Battery/Level")], { timeoutMs: 3000 });
    assert.ok(back.kind === "replied" && back.results[0]?.status === 200, JSON.stringify(back));
  });

  it("a slow device: 504 by the deadline", async () => {
    const base = await rig({ readDevInfoOnDiscovery: false });
    addGattDevice(base.fake, { address: "AA:00:00:00:00:31", battery: 1, latencyMs: 400 });
    r = base.make();
    await r.driver.start();
    await waitFor("seen", () => r !== undefined && r.seen.length === 1);
    const started = Date.now();
    const out = await r.driver.execute(
      { transport: "ble", address: "AA:00:00:00:00:31" },
      [get("1", "./Battery/Level")],
      {
        timeoutMs: 300,
      },
    );
    assert.ok(out.kind === "failed" && out.status === 504, JSON.stringify(out));
    assert.ok(Date.now() - started < 600);
  });

  it("proxy: a DM session over the DM transport service, messages larger than the MTU", async () => {
    const base = await rig({}, {}, ["p1"]);
    const p = addProxyDevice(base.fake, {
      address: "AA:00:00:00:00:41",
      device: { deviceId: "p1", serverId: GW, ...creds("p1"), encoding: "xml" },
    });
    r = base.make();
    await r.driver.start();
    await waitFor("seen", () => r !== undefined && r.seen.length === 1);
    const target = { deviceId: "p1", address: { transport: "ble" as const, address: "AA:00:00:00:00:41" } };
    const out = await r.proxy.execute(
      target,
      [
        get("1", "./DevInfo/Man"),
        {
          kind: "Replace",
          cmdId: "2",
          items: [
            {
              target: { locUri: "./Vendor/Setting1" },
              meta: { format: "int" },
              data: { kind: "text", text: "7" },
            },
          ],
        },
      ],
      { timeoutMs: 8000 },
    );
    if (out.kind === "failed") assert.fail(`${out.status}: ${out.reason}`);
    assert.deepEqual(
      out.records.map((x) => x.status),
      [200, 200],
    );
    assert.deepEqual(out.records[0]?.results[0]?.items[0]?.data, { kind: "text", text: "SimCo" });
    assert.ok(p.fake.writes > 10, `the gateway wrote ${p.fake.writes} segments (XML is far over 19 bytes)`);
    // A second session on the same device works too.
    const again = await r.proxy.execute(target, [get("1", "./DevInfo/Mod")], { timeoutMs: 8000 });
    assert.equal(again.kind, "replied", again.kind === "failed" ? again.reason : "");
    await waitFor("the device's report", () => p.reports.length >= 1);
    assert.equal(p.reports[0]?.ok, true, JSON.stringify(p.reports[0]));
  });

  it("a write error on the Pkg#0: notify fails, 503 mapped, the D-Bus error named", async () => {
    const base = await rig({}, {}, ["p2"]);
    const p = addProxyDevice(base.fake, {
      address: "AA:00:00:00:00:51",
      device: { deviceId: "p2", serverId: GW, ...creds("p2") },
    });
    r = base.make();
    await r.driver.start();
    await waitFor("seen", () => r !== undefined && r.seen.length === 1);
    p.fake.failWrites(1, "org.bluez.Error.InProgress");
    const target = { deviceId: "p2", address: { transport: "ble" as const, address: "AA:00:00:00:00:51" } };
    const out = await r.proxy.execute(target, [get("1", "./DevInfo/Man")], { timeoutMs: 3000 });
    assert.ok(out.kind === "failed" && out.status === 503, JSON.stringify(out));
    assert.match(out.reason, /InProgress|simulated write error/);
    const ok = await r.proxy.execute(target, [get("1", "./DevInfo/Man")], { timeoutMs: 8000 });
    assert.equal(ok.kind, "replied", ok.kind === "failed" ? ok.reason : "");
  });

  it("the pool: never more devices connected than poolSize, every execute answered", async () => {
    const base = await rig({ poolSize: 3, readDevInfoOnDiscovery: false, linkIdleMs: 50 }, { latencyMs: 5 });
    const macs = Array.from({ length: 10 }, (_, i) => simMac(3, i + 1));
    for (const mac of macs) addGattDevice(base.fake, { address: mac, battery: 10 });
    r = base.make();
    assert.equal(r.driver.concurrency, 3);
    await r.driver.start();
    await waitFor("all seen", () => r !== undefined && r.seen.length === 10);
    base.fake.resetPeak();
    const driver = r.driver;
    const outs = await Promise.all(
      macs.map((mac) =>
        driver.execute({ transport: "ble", address: mac }, [get("1", "./Battery/Level", "./DevInfo/Man")], {
          timeoutMs: 10_000,
        }),
      ),
    );
    assert.deepEqual(
      outs.map((o) => (o.kind === "replied" ? o.results[0]?.status : o.status)),
      macs.map(() => 200),
    );
    assert.ok(base.fake.connectedPeak <= 3, `peak ${base.fake.connectedPeak}`);
    assert.ok(r.driver.peakLinks <= 3 && r.driver.peakLinks >= 2, `driver peak ${r.driver.peakLinks}`);
  });

  it("the bus dies: degraded, then ready again on a new bus; stop() is idempotent", async () => {
    const base = await rig({ readDevInfoOnDiscovery: false });
    r = base.make();
    await r.driver.start();
    const dir = base.daemon.socketPath.replace(/\/system_bus_socket$/, "");
    await base.fake.stop();
    await base.daemon.stop({ keepDir: true });
    await waitFor("degraded", () => r?.driver.state === "degraded", 8000);
    const daemon2 = await startDbusDaemon({ dir });
    const fake2 = new FakeBluez({ discoveryDelayMs: 20 });
    await fake2.start();
    addGattDevice(fake2, { address: "AA:00:00:00:00:61", battery: 3 });
    await waitFor("ready", () => r?.driver.state === "ready", 8000);
    await waitFor(
      "seen on the new bus",
      () => r !== undefined && r.seen.some((s) => s.address.address === "AA:00:00:00:00:61"),
    );
    await r.driver.stop();
    await r.driver.stop();
    assert.equal(r.driver.state, "stopped");
    assert.deepEqual(r.states.slice(0, 3), ["starting", "ready", "degraded"]);
    await fake2.stop();
    await daemon2.stop();
  });
});
