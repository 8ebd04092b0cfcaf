/**
 * The BLE device simulator (design.md section 3): devices on the fake BlueZ (fake-bluez.ts), each
 * either a DM-client device on the DM transport service (a `SimulatedDevice`, src/sim/dm-device.ts,
 * the real client session code) or a GATT-only device with Device Information and Battery.
 *
 *   gateway WriteValue(segments) -> Reassembler -> envelope
 *     Pkg#0 -> device.onPackage0(pkg0, send)
 *     DM message -> the answer `send` waits for
 *   send(message) = envelope -> segments -> notifications (each a PropertiesChanged(Value)),
 *                   then the gateway's next DM message, or undefined after `answerTimeoutMs`
 *
 * Run as a script (bench, demo) on the bus DBUS_SYSTEM_BUS_ADDRESS names:
 *   node --import tsx drivers/ble/sim.ts --proxy 100 --gatt 20 --server-id dmgw --latency-ms 5
 */
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { AuthConfig } from "../../src/dm/auth.js";
import {
  SimulatedDevice,
  type DeviceSessionReport,
  type SimulatedDeviceOptions,
} from "../../src/sim/dm-device.js";
import { FakeBluez, type FakeBluezOptions, type FakeDevice } from "./fake-bluez.js";
import {
  BATTERY_LEVEL_UUID,
  BATTERY_SERVICE_UUID,
  DEVICE_INFORMATION_SERVICE_UUID,
  DM_TRANSPORT_NOTIFY_UUID,
  DM_TRANSPORT_SERVICE_UUID,
  DM_TRANSPORT_WRITE_UUID,
  FIRMWARE_REVISION_UUID,
  HARDWARE_REVISION_UUID,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  Reassembler,
  SERIAL_NUMBER_UUID,
  SOFTWARE_REVISION_UUID,
  contentTypeOfKind,
  decodeEnvelope,
  encodeEnvelope,
  kindOfContentType,
  segment,
} from "./segment.js";

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** The MAC of simulated device `n` (1-based) in block `block`: `D0:<block>:00:00:<hi>:<lo>`. */
export function simMac(block: number, n: number): string {
  const h = (v: number): string => (v & 0xff).toString(16).padStart(2, "0").toUpperCase();
  return `D0:${h(block)}:00:00:${h(n >> 8)}:${h(n)}`;
}

export interface GattDeviceOptions {
  readonly address: string;
  readonly name?: string;
  readonly man?: string;
  readonly mod?: string;
  readonly fwV?: string;
  readonly swV?: string;
  readonly hwV?: string;
  readonly serial?: string;
  /** Battery level 0..100; omit for a device without the Battery service. */
  readonly battery?: number;
  /** Without the Device Information service. */
  readonly noDevInfo?: boolean;
  readonly latencyMs?: number;
}

/** A GATT-only device: Device Information (0x180A) and Battery (0x180F). */
export function addGattDevice(fake: FakeBluez, o: GattDeviceOptions): FakeDevice {
  const services = [];
  if (o.noDevInfo !== true) {
    const chr = (uuid: string, text: string) => ({ uuid, flags: ["read"], value: utf8(text) });
    services.push({
      uuid: DEVICE_INFORMATION_SERVICE_UUID,
      characteristics: [
        chr(MANUFACTURER_NAME_UUID, o.man ?? "SimCo"),
        chr(MODEL_NUMBER_UUID, o.mod ?? "BLE-SENSOR"),
        chr(FIRMWARE_REVISION_UUID, o.fwV ?? "1.0.0"),
        chr(SOFTWARE_REVISION_UUID, o.swV ?? "1.0.0"),
        chr(HARDWARE_REVISION_UUID, o.hwV ?? "A"),
        chr(SERIAL_NUMBER_UUID, o.serial ?? o.address.replace(/:/g, "")),
      ],
    });
  }
  if (o.battery !== undefined) {
    services.push({
      uuid: BATTERY_SERVICE_UUID,
      characteristics: [
        { uuid: BATTERY_LEVEL_UUID, flags: ["read", "notify"], value: Uint8Array.of(o.battery) },
      ],
    });
  }
  return fake.addDevice({
    address: o.address,
    name: o.name ?? `gatt-${o.address.slice(-5)}`,
    services,
    ...(o.latencyMs !== undefined && { latencyMs: o.latencyMs }),
  });
}

export interface ProxyDeviceOptions {
  readonly address: string;
  /** The DM client (its DevId is the device id the gateway holds an account for). */
  readonly device: SimulatedDeviceOptions | SimulatedDevice;
  /** ATT MTU; default 23. */
  readonly mtu?: number;
  readonly latencyMs?: number;
  /** How long the device waits for the gateway's answer, ms; default 10000. */
  readonly answerTimeoutMs?: number;
  /** Each session's report; undefined when the session failed without one. */
  readonly onReport?: (report: DeviceSessionReport | undefined) => void;
}

/** A DM-client device on the DM transport service; returns the fake device and its client. */
export function addProxyDevice(
  fake: FakeBluez,
  o: ProxyDeviceOptions,
): {
  readonly fake: FakeDevice;
  readonly client: SimulatedDevice;
  readonly reports: (DeviceSessionReport | undefined)[];
  /** Resolves once the device is in no session (none running, none waiting to start). */
  readonly idle: () => Promise<void>;
} {
  const client = o.device instanceof SimulatedDevice ? o.device : new SimulatedDevice(o.device);
  const reassembler = new Reassembler();
  const reports: (DeviceSessionReport | undefined)[] = [];
  let waiter:
    | {
        resolve: (m: Parameters<Parameters<SimulatedDevice["onPackage0"]>[1]>[0] | undefined) => void;
        timer: NodeJS.Timeout;
      }
    | undefined;
  let session: Promise<void> | undefined;
  let idleWaiters: (() => void)[] = [];
  const answer = (m: Parameters<Parameters<SimulatedDevice["onPackage0"]>[1]>[0] | undefined): void => {
    const w = waiter;
    waiter = undefined;
    if (w === undefined) return;
    clearTimeout(w.timer);
    w.resolve(m);
  };
  const mtu = o.mtu ?? 23;
  // eslint-disable-next-line prefer-const -- assigned once the device exists; the hooks below close over it
  let dev: FakeDevice;
  const onMessage = (bytes: Uint8Array): void => {
    const env = decodeEnvelope(bytes);
    if (!env.ok) return;
    if (env.value.kind === "package0") {
      if (session !== undefined) {
        // The previous session still waits for an answer after its last message: a new Pkg#0
        // means the gateway is done with it. Run the new one once the old one has returned.
        pending = env.value.body;
        answer(undefined);
        return;
      }
      startSession(env.value.body);
      return;
    }
    answer({
      body: env.value.body,
      contentType: contentTypeOfKind(env.value.kind),
      headers: env.value.headers,
    });
  };
  let pending: Uint8Array | undefined;
  const startSession = (pkg0: Uint8Array): void => {
    {
      session = client
        .onPackage0(pkg0, async (message) => {
          const framed = encodeEnvelope({
            kind: kindOfContentType(message.contentType),
            headers: message.headers,
            body: message.body,
          });
          const next = new Promise<Parameters<typeof answer>[0]>((resolve) => {
            answer(undefined);
            waiter = {
              resolve,
              timer: setTimeout(() => {
                waiter = undefined;
                resolve(undefined);
              }, o.answerTimeoutMs ?? 10_000),
            };
          });
          for (const s of segment(framed, mtu)) {
            if (!dev.notify(DM_TRANSPORT_NOTIFY_UUID, s)) {
              answer(undefined);
              throw new Error("not connected");
            }
          }
          return next;
        })
        .then(
          (report) => {
            reports.push(report);
            o.onReport?.(report);
          },
          () => {
            reports.push(undefined);
            o.onReport?.(undefined);
          },
        )
        .finally(() => {
          session = undefined;
          const next = pending;
          pending = undefined;
          if (next !== undefined) {
            startSession(next);
            return;
          }
          const waiters = idleWaiters;
          idleWaiters = [];
          for (const w of waiters) w();
        });
    }
  };
  dev = fake.addDevice({
    address: o.address,
    name: `dm-${o.address.slice(-5)}`,
    mtu,
    services: [
      {
        uuid: DM_TRANSPORT_SERVICE_UUID,
        characteristics: [
          { uuid: DM_TRANSPORT_WRITE_UUID, flags: ["write"] },
          { uuid: DM_TRANSPORT_NOTIFY_UUID, flags: ["notify"] },
        ],
      },
    ],
    ...(o.latencyMs !== undefined && { latencyMs: o.latencyMs }),
    onWrite: (uuid, value) => {
      if (uuid !== DM_TRANSPORT_WRITE_UUID) return;
      for (const m of reassembler.push(value).messages) onMessage(m);
    },
    onDisconnect: () => {
      reassembler.reset();
      answer(undefined);
    },
  });
  const idle = (): Promise<void> =>
    session === undefined
      ? Promise.resolve()
      : new Promise((resolve) => {
          idleWaiters.push(resolve);
        });
  return { fake: dev, client, reports, idle };
}

export interface BleFleetOptions extends FakeBluezOptions {
  readonly proxy: number;
  readonly gatt: number;
  readonly account: (
    deviceId: string,
  ) => Pick<SimulatedDeviceOptions, "serverId" | "clientAuth" | "serverAuth">;
  readonly latencyMs?: number;
  readonly mtu?: number;
  /** How long a device waits for the gateway's answer, ms; default 10000 (addProxyDevice). */
  readonly answerTimeoutMs?: number;
  /** Each DM device's session report (undefined: the session failed before it had one). */
  readonly onReport?: (deviceId: string, report: DeviceSessionReport | undefined) => void;
}

/** A fake BlueZ with `proxy` DM devices (ids `ble-<n>`, MACs simMac(1, n)) and `gatt` GATT devices. */
export async function startBleFleet(o: BleFleetOptions): Promise<{
  readonly fake: FakeBluez;
  readonly proxyIds: readonly { readonly deviceId: string; readonly mac: string }[];
  readonly clients: readonly SimulatedDevice[];
  /** Resolves once no DM device is in a session. */
  idle(): Promise<void>;
  stop(): Promise<void>;
}> {
  const fake = new FakeBluez(o);
  await fake.start();
  const proxyIds: { deviceId: string; mac: string }[] = [];
  const clients: SimulatedDevice[] = [];
  const idles: (() => Promise<void>)[] = [];
  const width = String(o.proxy).length;
  for (let n = 1; n <= o.proxy; n++) {
    const deviceId = `ble-${String(n).padStart(width, "0")}`;
    const mac = simMac(1, n);
    const onReport = o.onReport;
    const { client, idle } = addProxyDevice(fake, {
      address: mac,
      device: { deviceId, ...o.account(deviceId) },
      ...(o.mtu !== undefined && { mtu: o.mtu }),
      ...(o.answerTimeoutMs !== undefined && { answerTimeoutMs: o.answerTimeoutMs }),
      ...(onReport !== undefined && {
        onReport: (report: DeviceSessionReport | undefined) => {
          onReport(deviceId, report);
        },
      }),
    });
    clients.push(client);
    idles.push(idle);
    proxyIds.push({ deviceId, mac });
  }
  for (let n = 1; n <= o.gatt; n++) addGattDevice(fake, { address: simMac(2, n), battery: 50 + (n % 50) });
  return {
    fake,
    proxyIds,
    clients,
    idle: async () => {
      await Promise.all(idles.map((f) => f()));
    },
    stop: async () => {
      await fake.stop();
      for (const c of clients) c.close();
    },
  };
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      proxy: { type: "string", default: "10" },
      gatt: { type: "string", default: "5" },
      "server-id": { type: "string", default: "dmgw" },
      "client-secret": { type: "string", default: "client-secret" },
      "server-secret": { type: "string", default: "server-secret" },
      "latency-ms": { type: "string", default: "0" },
      "max-connections": { type: "string" },
    },
  });
  const serverId = values["server-id"];
  const auth = (name: string, secret: string): AuthConfig => ({ scheme: "md5", name, secret });
  const fleet = await startBleFleet({
    proxy: Number(values.proxy),
    gatt: Number(values.gatt),
    latencyMs: Number(values["latency-ms"]),
    ...(values["max-connections"] !== undefined && { maxConnections: Number(values["max-connections"]) }),
    account: (deviceId) => ({
      serverId,
      clientAuth: auth(deviceId, values["client-secret"]),
      serverAuth: auth(serverId, values["server-secret"]),
    }),
  });
  process.stdout.write(
    `fake org.bluez: ${values.proxy} DM devices, ${values.gatt} GATT devices; Ctrl-C stops\n`,
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await fleet.stop();
  return 0;
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await main(process.argv.slice(2));
}
