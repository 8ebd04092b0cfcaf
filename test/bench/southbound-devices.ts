/**
 * The device side of the southbound bench (southbound.bench.ts), in a process of its own so that the
 * bench process holds the gateway side alone: simulated DM-client devices (`SimulatedDevice`, the
 * real client session code, shipped dist/ build) on one binding.
 *
 *   node --import tsx test/bench/southbound-devices.ts '<DevicesConfig as JSON>'
 *     stdout: one JSON line per device, {"deviceId","address":{"transport","address"}} (where the
 *             gateway notifies it), then {"ready":<devices>}; when stopped, {"done":{"ok","failed",
 *             "reasons"}} (the devices' own session reports)
 *     stops on stdin's end or SIGTERM/SIGINT
 *   node --import tsx test/bench/southbound-devices.ts '[<DevicesConfig>, ...]'
 *     several bindings in this one process (the fan-out bench's fleet); one ready line for all
 *
 * Each device's credentials are `enrolledAccount(deviceId, enrolment)`: the bench stores the same
 * accounts on the gateway side, so the two processes agree without exchanging secrets.
 *
 *   mqtt    MqttDeviceFleet (drivers/mqtt/sim.ts) on the broker at `url`, `connections` MQTT connections
 *   http    HttpDeviceFleet (drivers/http/sim.ts): a UDP socket per device for the WSP Push, POSTs
 *           to the gateway's endpoint over one keep-alive agent
 *   coap    Lwm2mFleet (drivers/coap/sim.ts): LwM2M clients registered with the gateway at `server`
 *   serial  a SerialDeviceSimulator (drivers/serial/sim.ts) per port, on the device end of a pty pair
 *   ble     a private dbus-daemon (test/helpers/dbus.ts, a child of this process, killed by PID on
 *           stop) and on it the fake org.bluez with `count` DM devices (startBleFleet,
 *           drivers/ble/sim.ts): the BlueZ stand-in and the devices at once. The ready line carries
 *           the bus address and the daemon's PID; the done line the most devices the fake saw
 *           connected at once and the connections it refused
 */
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import type * as BleSimModule from "../../drivers/ble/sim.js";
import type * as CoapSimModule from "../../drivers/coap/sim.js";
import type * as HttpSimModule from "../../drivers/http/sim.js";
import type * as MqttSimModule from "../../drivers/mqtt/sim.js";
import type * as SerialSimModule from "../../drivers/serial/sim.js";
import type { DeviceAddress } from "../../drivers/driver.js";
import type * as DeviceModule from "../../src/sim/dm-device.js";
import type { DeviceSessionReport } from "../../src/sim/dm-device.js";
import type * as AccountsModule from "../../src/southbound/device-accounts.js";
import type { Enrolment } from "../../src/southbound/device-accounts.js";
import { startDbusDaemon, useSystemBus } from "../helpers/dbus.js";
import { loadShipped } from "./shipped.js";

export type DevicesConfig = {
  readonly enrolment: Enrolment;
  /** mqtt, http, coap: delay before each message a device sends (each answer), ms; default 0. */
  readonly latencyMs?: number;
} & (
  | {
      readonly transport: "mqtt";
      readonly url: string;
      readonly count: number;
      readonly idPrefix: string;
      readonly connections: number;
    }
  | {
      readonly transport: "http";
      readonly gatewayUrl: string;
      readonly deviceIds: readonly string[];
      /** How long a device waits for the gateway's answer to a POST, ms; the simulator's default 10 s. */
      readonly requestTimeoutMs?: number;
    }
  | {
      readonly transport: "coap";
      readonly server: { readonly address: string; readonly port: number };
      readonly count: number;
      readonly prefix: string;
    }
  | {
      readonly transport: "ble";
      readonly count: number;
      /** Delay of every call to a device (Connect, ReadValue, WriteValue...), ms. */
      readonly latencyMs: number;
      /** Connect to ServicesResolved, ms. */
      readonly resolveDelayMs: number;
      /** ATT MTU of every device. */
      readonly mtu: number;
    }
  | {
      readonly transport: "serial";
      /** The device end of each pty pair; `address` is the gateway's end (what it notifies). */
      readonly ports: readonly {
        readonly deviceId: string;
        readonly path: string;
        readonly address: string;
      }[];
    }
);

/** The lines this process prints, one JSON object each. */
export type DevicesLine =
  | { readonly deviceId: string; readonly address: DeviceAddress }
  | {
      readonly ready: number;
      /** ble: the private system bus the gateway's BleDriver must use, and its dbus-daemon. */
      readonly dbus?: { readonly address: string; readonly pid: number };
    }
  | { readonly done: DevicesDone };

export interface DevicesDone {
  readonly ok: number;
  readonly failed: number;
  readonly reasons: readonly string[];
  /** ble: the most devices connected at once, and the Connects refused (controller limit). */
  readonly peakConnections?: number;
  readonly refusedConnections?: number;
}

/** dist/drivers/<relative>: `loadShipped` resolves below dist/src, the drivers are its sibling. */
function loadShippedDriver<T>(relative: string): Promise<T> {
  return loadShipped<T>(`../drivers/${relative}`);
}

interface Running {
  readonly addresses: readonly { readonly deviceId: string; readonly address: DeviceAddress }[];
  readonly dbus?: { readonly address: string; readonly pid: number };
  /** Figures of the device side for the done line (after stop). */
  readonly figures?: () => Pick<DevicesDone, "peakConnections" | "refusedConnections">;
  /** Resolves once no device is in a session. */
  readonly idle: () => Promise<void>;
  readonly stop: () => Promise<void>;
}

const stats: { ok: number; failed: number; reasons: string[] } = { ok: 0, failed: 0, reasons: [] };

function record(deviceId: string, report: DeviceSessionReport | undefined): void {
  if (report?.ok === true) {
    stats.ok++;
    return;
  }
  stats.failed++;
  if (stats.reasons.length < 5) stats.reasons.push(`${deviceId}: ${report?.reason ?? "ignored the Pkg#0"}`);
}

async function startDevices(config: DevicesConfig): Promise<Running> {
  const { enrolledAccount } = await loadShipped<typeof AccountsModule>("southbound/device-accounts.js");
  const account = (deviceId: string): AccountsModule.NewDeviceAccount =>
    enrolledAccount(deviceId, config.enrolment);
  switch (config.transport) {
    case "mqtt": {
      const { MqttDeviceFleet } = await loadShippedDriver<typeof MqttSimModule>("mqtt/sim.js");
      const fleet = new MqttDeviceFleet({
        url: config.url,
        count: config.count,
        idPrefix: config.idPrefix,
        connections: config.connections,
        ...(config.latencyMs !== undefined && { latencyMs: config.latencyMs }),
        account,
        onReport: record,
      });
      await fleet.start();
      return {
        addresses: fleet.ids.map((deviceId) => ({
          deviceId,
          address: { transport: "mqtt", address: deviceId },
        })),
        idle: () => fleet.idle(),
        stop: () => fleet.stop(),
      };
    }
    case "http": {
      const { HttpDeviceFleet } = await loadShippedDriver<typeof HttpSimModule>("http/sim.js");
      const fleet = new HttpDeviceFleet({
        gatewayUrl: config.gatewayUrl,
        ...(config.requestTimeoutMs !== undefined && { requestTimeoutMs: config.requestTimeoutMs }),
        devices: config.deviceIds.map((id) => {
          const a = account(id);
          return {
            deviceId: id,
            serverId: a.serverId,
            clientAuth: a.clientAuth,
            serverAuth: a.serverAuth,
            ...(config.latencyMs !== undefined && { latencyMs: config.latencyMs }),
          };
        }),
      });
      await fleet.start();
      return {
        addresses: config.deviceIds.map((deviceId) => ({ deviceId, address: fleet.address(deviceId) })),
        idle: () => fleet.idle(),
        stop: async () => {
          await fleet.stop();
          for (const deviceId of config.deviceIds) {
            for (const report of fleet.reports(deviceId)) record(deviceId, report);
          }
        },
      };
    }
    case "coap": {
      const { Lwm2mFleet } = await loadShippedDriver<typeof CoapSimModule>("coap/sim.js");
      const latencyMs = config.latencyMs;
      const fleet = new Lwm2mFleet({
        server: config.server,
        count: config.count,
        prefix: config.prefix,
        ...(latencyMs !== undefined && { client: () => ({ latencyMs }) }),
      });
      await fleet.start();
      return {
        addresses: fleet.clients.map((c) => ({
          deviceId: c.endpoint,
          address: { transport: "coap", address: c.endpoint },
        })),
        idle: () => Promise.resolve(),
        stop: () => fleet.stop(),
      };
    }
    case "ble": {
      const { startBleFleet } = await loadShippedDriver<typeof BleSimModule>("ble/sim.js");
      const daemon = await startDbusDaemon();
      // However this process ends (the 8 s bound below, a crash), the daemon must not outlive it.
      process.once("exit", () => {
        try {
          process.kill(daemon.pid, "SIGKILL");
        } catch {
          // already gone
        }
      });
      // The fake BlueZ connects to the bus DBUS_SYSTEM_BUS_ADDRESS names (dbus-next's systemBus()).
      const restore = useSystemBus(daemon.address);
      let fleet: Awaited<ReturnType<typeof startBleFleet>>;
      try {
        fleet = await startBleFleet({
          proxy: config.count,
          gatt: 0,
          latencyMs: config.latencyMs,
          resolveDelayMs: config.resolveDelayMs,
          discoveryDelayMs: 10,
          mtu: config.mtu,
          account,
          onReport: record,
        });
      } catch (e) {
        await daemon.stop();
        throw e;
      } finally {
        restore();
      }
      const fake = fleet.fake;
      return {
        addresses: fleet.proxyIds.map(({ deviceId, mac }) => ({
          deviceId,
          address: { transport: "ble", address: mac },
        })),
        dbus: { address: daemon.address, pid: daemon.pid },
        figures: () => ({ peakConnections: fake.connectedPeak, refusedConnections: fake.refusedConnections }),
        idle: () => fleet.idle(),
        stop: async () => {
          await fleet.stop();
          await daemon.stop();
        },
      };
    }
    case "serial": {
      const { SimulatedDevice } = await loadShipped<typeof DeviceModule>("sim/dm-device.js");
      const { openSerialDeviceSimulator } = await loadShippedDriver<typeof SerialSimModule>("serial/sim.js");
      const sims = await Promise.all(
        config.ports.map(async (port) => {
          const a = account(port.deviceId);
          const device = new SimulatedDevice({
            deviceId: port.deviceId,
            serverId: a.serverId,
            clientAuth: a.clientAuth,
            serverAuth: a.serverAuth,
          });
          const sim = await openSerialDeviceSimulator(port.path, {
            device,
            onReport: (report) => {
              record(port.deviceId, report);
            },
          });
          return { sim, device };
        }),
      );
      return {
        addresses: config.ports.map((p) => ({
          deviceId: p.deviceId,
          address: { transport: "serial", address: p.address },
        })),
        idle: async () => {
          await Promise.all(sims.map((s) => s.sim.idle()));
        },
        stop: async () => {
          await Promise.all(sims.map((s) => s.sim.close()));
          for (const s of sims) s.device.close();
        },
      };
    }
  }
}

function isList(c: DevicesConfig | readonly DevicesConfig[]): c is readonly DevicesConfig[] {
  return Array.isArray(c);
}

/** Several bindings' devices as one (a fleet of mixed transports). */
function combine(parts: readonly Running[]): Running {
  const [only] = parts;
  if (parts.length === 1 && only !== undefined) return only;
  const dbus = parts.find((p) => p.dbus !== undefined)?.dbus;
  return {
    addresses: parts.flatMap((p) => p.addresses),
    ...(dbus !== undefined && { dbus }),
    figures: () =>
      Object.assign({}, ...parts.map((p) => p.figures?.() ?? {})) as ReturnType<
        NonNullable<Running["figures"]>
      >,
    idle: async () => {
      await Promise.all(parts.map((p) => p.idle()));
    },
    stop: async () => {
      await Promise.all(parts.map((p) => p.stop()));
    },
  };
}

function print(line: DevicesLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function main(argv: readonly string[]): Promise<void> {
  const [json] = argv;
  if (json === undefined) {
    process.stderr.write("usage: southbound-devices.ts '<DevicesConfig JSON>' (see southbound.bench.ts)\n");
    process.exitCode = 2;
    return;
  }
  const parsed = JSON.parse(json) as DevicesConfig | readonly DevicesConfig[];
  const configs: readonly DevicesConfig[] = isList(parsed) ? parsed : [parsed];
  // Told to stop before the devices were up: stop right after they are.
  let stopRequested!: () => void;
  const stopping = new Promise<void>((resolve) => {
    stopRequested = resolve;
  });
  process.once("SIGTERM", stopRequested);
  process.once("SIGINT", stopRequested);
  createInterface({ input: process.stdin }).once("close", stopRequested);
  const running = combine(await Promise.all(configs.map((c) => startDevices(c))));
  for (const a of running.addresses) print(a);
  print({ ready: running.addresses.length, ...(running.dbus !== undefined && { dbus: running.dbus }) });
  await stopping;
  // Bounded: a device stuck in a session must not keep the process alive.
  setTimeout(() => process.exit(), 8000).unref();
  // The gateway's last answers may still be on their way: let the sessions finish (at most 3 s).
  await Promise.race([running.idle(), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
  const figures = running.figures?.();
  await running.stop();
  print({ done: { ...stats, ...figures } });
  process.exit();
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`southbound-devices: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
