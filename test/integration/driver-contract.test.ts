/**
 * Runs the shared proxy-driver contract (test/helpers/driver-contract.ts) against every proxy
 * driver with its real peer: the http driver with HTTP devices on loopback, the serial driver over
 * socat pty pairs, the mqtt driver through Debian's mosquitto, the ble driver through node-ble on a
 * private dbus-daemon with the fake org.bluez (drivers/ble/fake-bluez.ts).
 */
import { BleDriver } from "../../drivers/ble/driver.js";
import { FakeBluez } from "../../drivers/ble/fake-bluez.js";
import { addProxyDevice } from "../../drivers/ble/sim.js";
import type { DeviceAddress, DriverState, ProxyDriver, ProxyDriverContext } from "../../drivers/driver.js";
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { MqttDriver } from "../../drivers/mqtt/driver.js";
import { MqttDeviceFleet } from "../../drivers/mqtt/sim.js";
import { SerialDriver } from "../../drivers/serial/driver.js";
import { SerialDeviceSimulator } from "../../drivers/serial/sim.js";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import { SILENT_LOGGER } from "../../src/core/log.js";
import type { AuthConfig } from "../../src/dm/auth.js";
import { SimulatedDevice, type DeviceFailure } from "../../src/sim/dm-device.js";
import { StoredDeviceAccounts } from "../../src/southbound/device-accounts.js";
import { ProxySessions } from "../../src/southbound/proxy-sessions.js";
import { Store } from "../../src/tree/store.js";
import { startDbusDaemon, useSystemBus } from "../helpers/dbus.js";
import { driverContract, type ContractHarness } from "../helpers/driver-contract.js";
import { startMosquitto } from "../helpers/mosquitto.js";
import { startPtyPair, type PtyPair } from "../helpers/pty.js";
import { waitFor } from "../helpers/wait.js";

const GW = "dmgw-contract";

function creds(id: string): { clientAuth: AuthConfig; serverAuth: AuthConfig } {
  return {
    clientAuth: { scheme: "hmac", name: id, secret: `dev-${id}` },
    serverAuth: { scheme: "hmac", name: GW, secret: `gw-${id}` },
  };
}

function deviceOptions(id: string, failure?: DeviceFailure) {
  return { deviceId: id, serverId: GW, ...creds(id), ...(failure !== undefined && { failure }) };
}

/** ProxySessions on an in-memory store holding the accounts of `ids`, and a driver context feeding it. */
function core(ids: readonly string[]): {
  store: Store;
  proxy: ProxySessions;
  states: DriverState[];
  ctx: ProxyDriverContext;
} {
  const store = Store.open(":memory:");
  const accounts = new StoredDeviceAccounts(store);
  for (const id of ids) accounts.put({ deviceId: id, serverId: GW, ...creds(id) });
  const proxy = new ProxySessions({ accounts });
  const states: DriverState[] = [];
  const ctx: ProxyDriverContext = {
    log: SILENT_LOGGER,
    signal: new AbortController().signal,
    onMessage: proxy.handler,
    onState: (s) => {
      states.push(s);
    },
    onDeviceSeen: () => undefined,
    onDeviceLost: () => undefined,
  };
  return { store, proxy, states, ctx };
}

driverContract("http", async (): Promise<ContractHarness> => {
  const { store, proxy, states, ctx } = core(["ok", "silent"]);
  const driver = new HttpDriver({ host: "127.0.0.1", port: 0 }, ctx);
  proxy.attach(driver);
  // The fleet needs the endpoint's URL, so the driver starts here (start() is idempotent).
  await driver.start();
  const fleet = new HttpDeviceFleet({
    gatewayUrl: driver.url,
    devices: [deviceOptions("ok"), deviceOptions("silent", "silent")],
  });
  await fleet.start();
  return {
    driver,
    proxy,
    states,
    target: (name) => ({ deviceId: name, address: fleet.address(name) }),
    close: async () => {
      proxy.close();
      await fleet.stop();
      store.close();
    },
  };
});

driverContract("serial", async (): Promise<ContractHarness> => {
  const { store, proxy, states, ctx } = core(["ok", "silent"]);
  const names = ["ok", "silent"] as const;
  const pairs = new Map<string, PtyPair>();
  const dirs = new Map<string, string>();
  const sims = new Map<string, { sim: SerialDeviceSimulator; link: ByteLink }>();
  const devices = new Map<string, SimulatedDevice>([
    ["ok", new SimulatedDevice(deviceOptions("ok"))],
    ["silent", new SimulatedDevice(deviceOptions("silent", "silent"))],
  ]);
  const attach = async (name: string): Promise<void> => {
    const pair = pairs.get(name);
    const device = devices.get(name);
    if (pair === undefined || device === undefined) throw new Error(`no pty for ${name}`);
    const link = await openSerialLink({ path: pair.b });
    sims.set(name, { sim: new SerialDeviceSimulator(link, { device }), link });
  };
  const detach = async (name: string): Promise<void> => {
    const s = sims.get(name);
    sims.delete(name);
    await s?.sim.close();
    await s?.link.close().catch(() => undefined);
  };
  for (const name of names) {
    const pair = await startPtyPair();
    pairs.set(name, pair);
    dirs.set(name, pair.dir);
    await attach(name);
  }
  const address = (name: string): DeviceAddress => ({
    transport: "serial",
    address: pairs.get(name)?.a ?? "",
  });
  const driver: ProxyDriver = new SerialDriver(
    {
      ports: names.map((n) => ({ path: address(n).address, deviceId: n })),
      reconnect: { initialMs: 100, maxMs: 500, jitter: 0.1 },
    },
    ctx,
  );
  proxy.attach(driver);
  return {
    driver,
    proxy,
    states,
    target: (name) => ({ deviceId: name, address: address(name) }),
    link: {
      // socat dies: both ends of the "cable" vanish, as when a USB adapter is pulled.
      cut: async () => {
        await detach("ok");
        await pairs.get("ok")?.stop();
      },
      restore: async () => {
        const pair = await startPtyPair({ dir: dirs.get("ok") ?? "" });
        pairs.set("ok", pair);
        await attach("ok");
      },
    },
    close: async () => {
      proxy.close();
      for (const name of names) await detach(name);
      for (const pair of pairs.values()) await pair.stop();
      for (const device of devices.values()) device.close();
      store.close();
    },
  };
});

driverContract("mqtt", async (): Promise<ContractHarness> => {
  const ids = { ok: "mq-1", silent: "mq-2" } as const;
  const { store, proxy, states, ctx } = core(Object.values(ids));
  let broker = await startMosquitto();
  const port = broker.port;
  const driver = new MqttDriver(
    { url: broker.url, clientId: `dmgw-contract-${process.pid}`, reconnect: { initialMs: 100, maxMs: 500 } },
    ctx,
  );
  proxy.attach(driver);
  const fleet = new MqttDeviceFleet({
    url: broker.url,
    count: 2,
    idPrefix: "mq-",
    account: (id) => ({ serverId: GW, ...creds(id) }),
    device: (index) => (index === 1 ? { failure: "silent" } : {}),
    reconnectPeriodMs: 100,
  });
  await fleet.start();
  return {
    driver,
    proxy,
    states,
    target: (name) => ({ deviceId: ids[name], address: { transport: "mqtt", address: ids[name] } }),
    link: {
      // The broker dies and comes back on the same port (a broker restart in the field).
      cut: async () => {
        await broker.stop({ abrupt: true });
      },
      restore: async () => {
        // The devices reconnect on their own schedule: wait until the fleet is back on the broker
        // (it re-subscribes and republishes its status), as the gateway waits for a device in the field.
        const before = fleet.onlineCount;
        broker = await startMosquitto({ port });
        await waitFor("the device fleet back online", () => fleet.onlineCount > before, 10_000);
      },
    },
    close: async () => {
      proxy.close();
      await fleet.stop();
      await broker.stop();
      store.close();
    },
  };
});

driverContract("ble", async (): Promise<ContractHarness> => {
  const macs = { ok: "C0:00:00:00:00:01", silent: "C0:00:00:00:00:02" } as const;
  const { store, proxy, states, ctx } = core(["ok", "silent"]);
  let daemon = await startDbusDaemon();
  const dir = daemon.socketPath.replace(/\/system_bus_socket$/, "");
  const restoreEnv = useSystemBus(daemon.address);
  const devices = {
    ok: new SimulatedDevice(deviceOptions("ok")),
    silent: new SimulatedDevice(deviceOptions("silent", "silent")),
  };
  const startFake = async (): Promise<FakeBluez> => {
    const fake = new FakeBluez({ discoveryDelayMs: 10 });
    await fake.start();
    addProxyDevice(fake, { address: macs.ok, device: devices.ok, answerTimeoutMs: 2000 });
    addProxyDevice(fake, { address: macs.silent, device: devices.silent, answerTimeoutMs: 2000 });
    return fake;
  };
  let fake = await startFake();
  const driver = new BleDriver(
    {
      discoveryIntervalMs: 50,
      sessionIdleMs: 300,
      linkIdleMs: 100,
      callTimeoutMs: 1000,
      reconnect: { initialMs: 100, maxMs: 500, jitter: 0.1 },
    },
    ctx,
  );
  proxy.attach(driver);
  return {
    driver,
    proxy,
    states,
    target: (name) => ({ deviceId: name, address: { transport: "ble", address: macs[name] } }),
    link: {
      // The system bus dies (dbus-daemon and BlueZ with it) and comes back on the same socket.
      cut: async () => {
        await fake.stop();
        await daemon.stop({ keepDir: true });
      },
      restore: async () => {
        daemon = await startDbusDaemon({ dir });
        fake = await startFake();
      },
    },
    close: async () => {
      proxy.close();
      await fake.stop();
      await daemon.stop();
      devices.ok.close();
      devices.silent.close();
      store.close();
      restoreEnv();
    },
  };
});
