/**
 * Runs the shared adaptation-driver contract (test/helpers/adaptation-contract.ts) against every
 * adaptation driver with its real peer: coap with LwM2M clients (drivers/coap/sim.ts) on loopback;
 * ble with GATT devices on the fake org.bluez (drivers/ble/sim.ts) through node-ble and a private
 * dbus-daemon.
 */
import { BleDriver } from "../../drivers/ble/driver.js";
import { FakeBluez } from "../../drivers/ble/fake-bluez.js";
import { addGattDevice } from "../../drivers/ble/sim.js";
import { CoapDriver } from "../../drivers/coap/driver.js";
import { Lwm2mClientSim } from "../../drivers/coap/sim.js";
import type { DeviceAddress, DriverContext, DriverState } from "../../drivers/driver.js";
import { SILENT_LOGGER } from "../../src/core/log.js";
import { adaptationContract, type AdaptationHarness } from "../helpers/adaptation-contract.js";
import { startDbusDaemon, useSystemBus } from "../helpers/dbus.js";

export type { AdaptationHarness };

adaptationContract("coap", (): Promise<AdaptationHarness> => {
  const states: DriverState[] = [];
  const seen = new Set<string>();
  const ctx: DriverContext = {
    log: SILENT_LOGGER,
    signal: new AbortController().signal,
    onState: (s) => {
      states.push(s);
    },
    onDeviceSeen: (device) => {
      seen.add(device.address);
    },
    onDeviceLost: () => undefined,
  };
  const driver = new CoapDriver(
    { host: "127.0.0.1", port: 0, ackTimeoutMs: 200, maxRetransmit: 2, devInfoTimeoutMs: 300 },
    ctx,
  );
  const sims: Lwm2mClientSim[] = [];
  return Promise.resolve({
    driver,
    states,
    manufacturer: "SimCo",
    replace: {
      command: {
        kind: "Replace",
        cmdId: "2",
        items: [{ target: { locUri: "./3/0/14" }, data: { kind: "text", text: "+05:00" } }],
      },
      status: 200,
    },
    device: async (name): Promise<DeviceAddress> => {
      const ep = `contract-${name}`;
      sims.push(
        await Lwm2mClientSim.start({
          endpoint: ep,
          server: { address: "127.0.0.1", port: driver.port },
          ...(name === "silent" && { failure: "silent" as const }),
        }),
      );
      const until = Date.now() + 2000;
      while (!seen.has(ep) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return { transport: "coap", address: ep };
    },
    close: async () => {
      for (const s of sims.splice(0)) await s.stop();
    },
  });
});

adaptationContract("ble", async (): Promise<AdaptationHarness> => {
  const states: DriverState[] = [];
  const seen = new Set<string>();
  const daemon = await startDbusDaemon();
  const restoreEnv = useSystemBus(daemon.address);
  const fake = new FakeBluez({ discoveryDelayMs: 10 });
  await fake.start();
  const macs = { ok: "C1:00:00:00:00:01", silent: "C1:00:00:00:00:02" } as const;
  const ctx = {
    log: SILENT_LOGGER,
    signal: new AbortController().signal,
    onMessage: () => Promise.resolve({ kind: "ended" as const }),
    onState: (s: DriverState) => {
      states.push(s);
    },
    onDeviceSeen: (device: DeviceAddress) => {
      seen.add(device.address);
    },
    onDeviceLost: () => undefined,
  };
  const driver = new BleDriver(
    {
      discoveryIntervalMs: 50,
      linkIdleMs: 100,
      connectTimeoutMs: 2000,
      callTimeoutMs: 2000,
      readDevInfoOnDiscovery: false,
    },
    ctx,
  );
  return {
    driver,
    states,
    manufacturer: "SimCo",
    replace: {
      command: {
        kind: "Replace",
        cmdId: "2",
        items: [{ target: { locUri: "./DevInfo/Man" }, data: { kind: "text", text: "x" } }],
      },
      // GATT Device Information is read-only.
      status: 405,
    },
    device: async (name): Promise<DeviceAddress> => {
      const mac = macs[name];
      // The silent device answers nothing within the contract's deadlines (each call takes 2 s).
      addGattDevice(fake, { address: mac, battery: 50, ...(name === "silent" && { latencyMs: 2000 }) });
      const until = Date.now() + 3000;
      while (!seen.has(mac) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return { transport: "ble", address: mac };
    },
    close: async () => {
      await fake.stop();
      await daemon.stop();
      restoreEnv();
    },
  };
});
