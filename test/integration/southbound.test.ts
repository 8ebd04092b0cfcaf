/**
 * The southbound side assembled (registry, accounts, proxy sessions, the http driver) against
 * simulated devices on loopback: the inventory follows what devices do, every attach and detach
 * puts a GwMO alert in the real outbox, enrolment with a shared secret, and all of it survives a
 * reopen of the SQLite file.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import type { AuthConfig } from "../../src/dm/auth.js";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import type { DeviceFailure } from "../../src/sim/dm-device.js";
import { enrolledAccount, type Enrolment } from "../../src/southbound/device-accounts.js";
import { Southbound } from "../../src/southbound/southbound.js";
import type { Command } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";

const GW = "dmgw-gw1";
const SERVERS = ["dmsrv-a", "dmsrv-b"];
const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const ENROLMENT: Enrolment = { secret: "site-enrolment-secret", scheme: "hmac", serverId: GW };

function creds(id: string): { client: AuthConfig; server: AuthConfig } {
  return {
    client: { scheme: "md5", name: id, secret: `dev-${id}` },
    server: { scheme: "md5", name: GW, secret: `gw-${id}` },
  };
}

describe("Southbound: inventory, alerts, enrolment", function () {
  this.timeout(30_000);
  let dir: string;
  let store: Store;
  let outbox: AlertOutbox;
  let south: Southbound;
  let driver: HttpDriver;
  let fleet: HttpDeviceFleet | undefined;

  async function open(enrolment?: Enrolment): Promise<void> {
    store = Store.open(path.join(dir, "gw.db"));
    outbox = new AlertOutbox(store, { maxCount: 1000, maxBytes: 1 << 20 });
    south = new Southbound({
      store,
      outbox,
      alertServers: () => SERVERS,
      ...(enrolment !== undefined && { enrolment }),
    });
    driver = new HttpDriver(
      { host: "127.0.0.1", port: 0 },
      south.driverContext("http", new AbortController().signal),
    );
    south.addDriver(driver);
    await driver.start();
  }

  async function close(): Promise<void> {
    await fleet?.stop();
    fleet = undefined;
    await south.stop();
    store.close();
  }

  async function devices(
    specs: readonly {
      id: string;
      failure?: DeviceFailure;
      auth?: { client: AuthConfig; server: AuthConfig };
    }[],
  ): Promise<HttpDeviceFleet> {
    fleet = new HttpDeviceFleet({
      gatewayUrl: driver.url,
      devices: specs.map((s) => {
        const c = s.auth ?? creds(s.id);
        return {
          deviceId: s.id,
          serverId: GW,
          clientAuth: c.client,
          serverAuth: c.server,
          ...(s.failure !== undefined && { failure: s.failure }),
        };
      }),
    });
    await fleet.start();
    return fleet;
  }

  function alertTypes(): string[] {
    return SERVERS.flatMap((s) =>
      outbox
        .pending(s)
        .map(
          (a) =>
            `${s} ${a.items[0]?.meta?.type ?? "?"} ${a.items[0]?.data?.kind === "text" ? a.items[0].data.text : "?"}`,
        ),
    );
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-southbound-"));
  });

  afterEach(async () => {
    await close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("a provisioned device attaches with one alert per server; a session stores its DevInfo", async () => {
    await open();
    const f = await devices([{ id: "dev-1" }]);
    const c = creds("dev-1");
    south.provision({
      deviceId: "dev-1",
      address: f.address("dev-1"),
      account: { deviceId: "dev-1", serverId: GW, clientAuth: c.client, serverAuth: c.server },
    });
    assert.deepEqual(alertTypes(), [
      "dmsrv-a urn:oma:at:oma-gwmo:deviceattached:1.0 dev-1",
      "dmsrv-b urn:oma:at:oma-gwmo:deviceattached:1.0 dev-1",
    ]);
    const device = south.endDevice("dev-1");
    assert.ok(device !== undefined);
    assert.equal(device.transport, "http");
    const outcome = await device.execute([GET_MAN], { timeoutMs: 5_000 });
    assert.equal(outcome.kind, "replied");
    const record = south.registry.get("dev-1");
    assert.equal(record?.status, "attached");
    assert.equal(record.devInfo["Man"], "SimCo");
    assert.ok(record.lastSeenMs !== undefined);
    assert.equal(alertTypes().length, 2, "an update raises no alert");
    assert.equal(south.endDevice("nobody"), undefined);
  });

  it("a device that stops answering becomes unreachable (no alert), then attached again when it answers", async () => {
    await open();
    const f = await devices([{ id: "flaky", failure: "silent" }]);
    const c = creds("flaky");
    south.provision({
      deviceId: "flaky",
      address: f.address("flaky"),
      account: { deviceId: "flaky", serverId: GW, clientAuth: c.client, serverAuth: c.server },
    });
    const device = south.endDevice("flaky");
    assert.ok(device !== undefined);
    const timedOut = await device.execute([GET_MAN], { timeoutMs: 300 });
    assert.ok(timedOut.kind === "failed" && timedOut.status === 504);
    assert.equal(south.registry.get("flaky")?.status, "unreachable");
    assert.equal(alertTypes().length, 2, "only the two attach alerts");
    // The same device id comes back healthy (a new simulated device on a new port).
    await fleet?.stop();
    const g = await devices([{ id: "flaky" }]);
    south.provision({
      deviceId: "flaky",
      address: g.address("flaky"),
      account: { deviceId: "flaky", serverId: GW, clientAuth: c.client, serverAuth: c.server },
    });
    const ok = await south.endDevice("flaky")?.execute([GET_MAN], { timeoutMs: 5_000 });
    assert.equal(ok?.kind, "replied");
    assert.equal(south.registry.get("flaky")?.status, "attached");
    assert.equal(alertTypes().length, 2, "coming back from unreachable raises no alert");
  });

  it("a device lost by its transport detaches with an alert; the inventory and accounts survive a reopen", async () => {
    await open();
    const f = await devices([{ id: "leaver" }]);
    const c = creds("leaver");
    south.provision({
      deviceId: "leaver",
      address: f.address("leaver"),
      account: { deviceId: "leaver", serverId: GW, clientAuth: c.client, serverAuth: c.server },
    });
    // What a driver reports when its transport says the device left: an MQTT last will names the
    // device by its id (HTTP has no presence; the registry keys presence by address = device id).
    const ctx = south.driverContext("mqtt", new AbortController().signal);
    ctx.onDeviceLost(
      { transport: "mqtt", address: "leaver" },
      new GatewayError("last will", ErrorCode.Driver_LinkLost),
    );
    assert.equal(south.registry.get("leaver")?.status, "detached");
    assert.deepEqual(alertTypes(), [
      "dmsrv-a urn:oma:at:oma-gwmo:deviceattached:1.0 leaver",
      "dmsrv-a urn:oma:at:oma-gwmo:devicedetached:1.0 leaver",
      "dmsrv-b urn:oma:at:oma-gwmo:deviceattached:1.0 leaver",
      "dmsrv-b urn:oma:at:oma-gwmo:devicedetached:1.0 leaver",
    ]);
    await close();
    await open();
    assert.equal(south.registry.get("leaver")?.status, "detached");
    assert.equal(south.accounts.get("leaver")?.serverId, GW);
    assert.equal(outbox.pending("dmsrv-a").length, 2, "the alerts are still in the outbox");
  });

  it("enrolment: a device with the derived credentials starts its own session, is stored and attaches", async () => {
    await open(ENROLMENT);
    const account = enrolledAccount("newcomer", ENROLMENT);
    const f = await devices([
      { id: "newcomer", auth: { client: account.clientAuth, server: account.serverAuth } },
      {
        id: "impostor",
        auth: { client: { scheme: "hmac", name: "impostor", secret: "guess" }, server: account.serverAuth },
      },
    ]);
    const report = await f.device("newcomer").runSession({ kind: "client" }, (m) => post(m, driver.url));
    assert.ok(report.ok, report.reason);
    assert.ok(south.accounts.get("newcomer") !== undefined, "the account was stored");
    assert.equal(south.registry.get("newcomer")?.status, "attached");
    assert.ok(alertTypes().includes("dmsrv-a urn:oma:at:oma-gwmo:deviceattached:1.0 newcomer"));
    // The stored account works for a server-initiated session (Pkg#0 at its source IP, port 2948 by
    // default: point the record at the simulator's real port first).
    south.registry.seen({
      deviceId: "newcomer",
      transport: "http",
      mode: "proxy",
      address: f.address("newcomer").address,
    });
    const outcome = await south.endDevice("newcomer")?.execute([GET_MAN], { timeoutMs: 5_000 });
    assert.equal(outcome?.kind, "replied");

    const refused = await f.device("impostor").runSession({ kind: "client" }, (m) => post(m, driver.url));
    assert.ok(!refused.ok);
    assert.equal(south.accounts.get("impostor"), undefined);
    assert.equal(south.registry.get("impostor"), undefined);
  });

  it("enrolment: presence adds an unknown MQTT device (its address is its id), never a serial port or a MAC", async () => {
    await open(ENROLMENT);
    const signal = new AbortController().signal;
    // Input: presence of addresses the gateway never saw. Expected: only the MQTT id becomes a record;
    // a port path would even break the Inventory MO's mirror (a node name with "/").
    south.driverContext("serial", signal).onDeviceSeen({ transport: "serial", address: "/dev/ttyUSB7" });
    south.driverContext("ble", signal).onDeviceSeen({ transport: "ble", address: "AA:BB:CC:DD:EE:FF" });
    south.driverContext("mqtt", signal).onDeviceSeen({ transport: "mqtt", address: "meter-42" });
    assert.equal(south.registry.get("/dev/ttyUSB7"), undefined);
    assert.equal(south.registry.get("AA:BB:CC:DD:EE:FF"), undefined);
    assert.equal(south.registry.get("meter-42")?.transport, "mqtt");
  });
});

async function post(
  m: { url?: string; body: Uint8Array; contentType: string; headers: Readonly<Record<string, string>> },
  url: string,
): Promise<{ body: Uint8Array; contentType: string; headers: Record<string, string> } | undefined> {
  const res = await fetch(m.url ?? url, {
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
}
