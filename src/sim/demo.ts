/**
 * `dmgw demo`'s scenario (issue #8): the flow of design.md section 1, on loopback, with no
 * configuration. Everything runs in this process except the peers a transport needs (socat,
 * dbus-daemon, mosquitto), which are started and stopped by PID.
 *
 *   DM Server simulator ─ gateway (startGateway, sim board, state in a temporary directory)
 *     southbound: HTTP + CoAP always; MQTT on mosquitto or the embedded broker; serial on socat
 *     pty pairs; BLE on the fake BlueZ on a private dbus-daemon
 *   devices: proxy DM clients (SimulatedDevice) on HTTP, MQTT, serial, BLE, provisioned through
 *     the running gateway (`south.provision`) with per-device credentials derived as enrolment
 *     derives them (`enrolledAccount`); LwM2M clients on CoAP (they register themselves)
 *   server, session 1 (Pkg#0): Add group of every device, Add job, Options, Exec Start + Correlator
 *     -> 202; the engine runs the job (progress from the journal, runtime/observe.ts)
 *   gateway: Generic Alert 1226 with the Correlator (the server acknowledges it: Status 200)
 *   server, session 2 (Pkg#0): Get <job>/Status, Get <job>/Results/<n>?list=StructData per device
 *   demo: each device's Statuses (and its FwV) from what the server read, then a look at each
 *     device: the setting holds the new value and the reboot ran
 *
 * One job on one group, so the commands are ones every device answers:
 *   Get ./DevDetail/FwV  proxy: the DevDetail MO; LwM2M: /3/0/3 through the DM<->LwM2M mapping
 *   Replace ./3/0/14     the UTC offset of the LwM2M Device object (3)
 *   Exec ./3/0/4         its Reboot
 * The demo's proxy devices model the same product as the LwM2M ones: their DM tree carries the
 * Device object's UTC offset and Reboot under `./3/0` (`deviceObjectPlugin`), while the LwM2M
 * devices get there through the gateway's adaptation.
 *
 * Cleanup: each thing started registers how to stop it; they stop in reverse order whatever
 * happened (a failure, an abort from SIGINT), and the temporary directory goes last.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceAddress } from "../../drivers/driver.js";
import type { Lwm2mFleet } from "../../drivers/coap/sim.js";
import type { HttpDeviceFleet } from "../../drivers/http/sim.js";
import type { MqttDeviceFleet } from "../../drivers/mqtt/sim.js";
import { parseConfig } from "../config/schema.js";
import type { Logger, LogLevel, LogText } from "../core/log.js";
import { openSerialLink } from "../core/byte-link.js";
import { startGateway, type RunningGateway } from "../runtime/gateway.js";
import { jobProgress, type JobProgress } from "../runtime/observe.js";
import { enrolledAccount, type Enrolment } from "../southbound/device-accounts.js";
import {
  decodeCommandFragment,
  type Command,
  type ResultsCommand,
  type StatusCommand,
} from "../syncml/index.js";
import type { MoPlugin } from "../tree/plugin.js";
import { dbusDaemonPath, DBUS_DAEMON_MISSING, startDbusDaemon, useSystemBus } from "./dbus-daemon.js";
import { SimulatedDevice, type SimulatedDeviceOptions } from "./dm-device.js";
import { DmServerSimulator } from "./dm-server.js";
import { findMosquitto, startMosquitto } from "./mosquitto.js";
import { startEmbeddedBroker } from "./mqtt-broker.js";
import { socatPath, startPtyPair } from "./pty.js";

export type DemoTransport = "http" | "coap" | "mqtt" | "serial" | "ble";
/** In the order devices are devices and tables printed. */
export const DEMO_TRANSPORTS: readonly DemoTransport[] = ["http", "coap", "mqtt", "serial", "ble"];

/** One pty pair (one socat) per serial device: a handful shows the transport without a process farm. */
export const MAX_SERIAL_DEVICES = 4;
/**
 * The fake BlueZ exports every device on one private bus and node-ble adds match rules per device;
 * dbus-daemon's limits make ~64 devices the ceiling, and BLE's small connection pool makes each one
 * slow anyway.
 */
export const MAX_BLE_DEVICES = 16;
export const DEFAULT_DEMO_DEVICES = 50;
export const MAX_DEMO_DEVICES = 2000;

/** Where the MQTT devices meet the gateway. */
export type BrokerChoice = "auto" | "mosquitto" | "embedded";

export interface TransportCheck {
  readonly transport: DemoTransport;
  /** Undefined when the transport can run; else why not and the package that enables it. */
  readonly missing: string | undefined;
  /** What carries it (`mosquitto`, `embedded broker`, `socat`, `dbus-daemon`, `loopback`). */
  readonly peer: string;
}

/** Which transports this machine can run (no process is started). */
export function checkTransports(broker: BrokerChoice = "auto"): TransportCheck[] {
  const mosquitto = broker === "embedded" ? undefined : findMosquitto();
  return DEMO_TRANSPORTS.map((transport): TransportCheck => {
    switch (transport) {
      case "http":
      case "coap":
        return { transport, missing: undefined, peer: "loopback" };
      case "mqtt":
        if (broker === "mosquitto" && mosquitto === undefined)
          return { transport, missing: "mosquitto not found (apt-get install mosquitto)", peer: "mosquitto" };
        return {
          transport,
          missing: undefined,
          peer: mosquitto !== undefined ? "mosquitto" : "embedded broker",
        };
      case "serial":
        return socatPath() === undefined
          ? { transport, missing: "socat not found (apt-get install socat)", peer: "socat" }
          : { transport, missing: undefined, peer: "socat pty pairs" };
      case "ble":
        return dbusDaemonPath() === undefined
          ? { transport, missing: "dbus-daemon not found (apt-get install dbus-daemon)", peer: "dbus-daemon" }
          : { transport, missing: undefined, peer: "fake BlueZ on a private dbus-daemon" };
    }
  });
}

/** The cap of one transport's devices, or undefined. */
export function transportCap(t: DemoTransport): number | undefined {
  return t === "serial" ? MAX_SERIAL_DEVICES : t === "ble" ? MAX_BLE_DEVICES : undefined;
}

/**
 * Spreads `total` devices over `transports` as evenly as the caps allow (serial and BLE take at
 * most their cap; the rest goes to the others). Every transport gets at least one device when
 * `total` allows.
 * @throws Error when the caps leave devices nowhere to go (only serial and/or BLE asked for).
 */
export function planDevices(total: number, transports: readonly DemoTransport[]): Map<DemoTransport, number> {
  const plan = new Map<DemoTransport, number>(transports.map((t) => [t, 0]));
  let left = total;
  let open = [...transports];
  while (left > 0 && open.length > 0) {
    const share = Math.max(1, Math.floor(left / open.length));
    const next: DemoTransport[] = [];
    for (const t of open) {
      if (left === 0) break;
      const have = plan.get(t) ?? 0;
      const cap = transportCap(t) ?? Number.POSITIVE_INFINITY;
      const give = Math.min(share, cap - have, left);
      plan.set(t, have + give);
      left -= give;
      if (have + give < cap) next.push(t);
    }
    open = next;
  }
  if (left > 0) {
    const caps = transports.map((t) => `${t} ${String(transportCap(t))}`).join(", ");
    throw new Error(`${total} devices do not fit on ${transports.join(", ")} (at most ${caps})`);
  }
  return plan;
}

export interface DemoOptions {
  /** Devices in all; default DEFAULT_DEMO_DEVICES. */
  readonly devices?: number;
  /** The transports asked for; default every available one. */
  readonly transports?: readonly DemoTransport[];
  readonly broker?: BrokerChoice;
  /** What the demo is doing, one line at a time (for people). */
  readonly onStep?: (line: string) => void;
  /** The job's progress, a few times a second while it runs, and once when it ended. */
  readonly onProgress?: (progress: JobProgress) => void;
  /** Aborted (SIGINT): the demo stops waiting, cleans up and rejects with DemoAborted. */
  readonly signal?: AbortSignal;
  /** The gateway's log; default: warnings and errors kept for the report only. */
  readonly log?: Logger;
}

/** One device's outcome, as the server read it and as the device itself shows it. */
export interface DemoDeviceOutcome {
  readonly deviceId: string;
  readonly transport: DemoTransport;
  /** The Status of each job command the device answered (cmdRef order), e.g. [200, 200, 200]. */
  readonly statuses: readonly number[];
  /** What the Get of the firmware version returned. */
  readonly fwV: string | undefined;
  /** The device holds the new setting and ran the reboot. */
  readonly applied: boolean;
  readonly ok: boolean;
}

export interface TransportSummary {
  readonly devices: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly peer: string;
}

export interface DemoReport {
  readonly devices: number;
  readonly succeeded: number;
  readonly failed: number;
  /** From the server's Pkg#0 of the job to the results read back, s. */
  readonly seconds: number;
  /** The completion alert reached the server (with the Correlator) and left the gateway's outbox. */
  readonly alertAcknowledged: boolean;
  /** The job's Status node as the server read it. */
  readonly jobStatus: string;
  readonly transports: ReadonlyMap<DemoTransport, TransportSummary>;
  /** Transports not run, and why (with the package that enables them). */
  readonly skipped: ReadonlyMap<DemoTransport, string>;
  readonly outcomes: readonly DemoDeviceOutcome[];
  /** The gateway's warnings and errors (the last ones), for a failed run. */
  readonly warnings: readonly string[];
}

/** The demo was interrupted (SIGINT): everything it started was stopped. */
export class DemoAborted extends Error {
  constructor() {
    super("interrupted");
    this.name = "DemoAborted";
  }
}

const GATEWAY_DEV_ID = "urn:dmgw:demo-gateway";
const SERVER_ID = "demo-dms";
const GATEWAY_SERVER_ID = "dmgw";
const JOB = "./GwMO/Fanout/demo";
const GROUP = "demo-all";
const CORRELATOR = "demo-job-1";
/** What the job's Replace writes: the devices' UTC offset. */
export const DEMO_UTC_OFFSET = "+01:00";
/** A device's deadline in the job: generous, a 2-core box runs devices and gateway at once. */
const DEVICE_TIMEOUT_MS = 20_000;
/** Devices the job drives at once (each transport's own limit applies below it). */
const JOB_CONCURRENCY = 200;
const STEP_TIMEOUT_MS = 120_000;
const POLL_MS = 100;

/** The job's commands (cmdIds 1..3 are what each device's Statuses refer to). */
const JOB_COMMANDS =
  `<Get><CmdID>1</CmdID><Item><Target><LocURI>./DevDetail/FwV</LocURI></Target></Item></Get>` +
  `<Replace><CmdID>2</CmdID><Item><Target><LocURI>./3/0/14</LocURI></Target>` +
  `<Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>${DEMO_UTC_OFFSET}</Data></Item></Replace>` +
  `<Exec><CmdID>3</CmdID><Item><Target><LocURI>./3/0/4</LocURI></Target></Item></Exec>`;
const JOB_COMMAND_COUNT = 3;

/**
 * The LwM2M Device object's UTC offset (/3/0/14) and Reboot (/3/0/4) in a DM device's tree, under
 * `./3/0`, for `serverId`; `reboots` counts the Execs.
 */
export function deviceObjectPlugin(serverId: string, reboots: { count: number }): MoPlugin {
  return {
    id: "demo-device-object",
    root: "./3",
    seed: () => [
      { path: "./3", format: "node", acl: `Get=${serverId}&Replace=${serverId}` },
      { path: "./3/0", format: "node" },
      { path: "./3/0/14", format: "chr", value: "+00:00" },
      { path: "./3/0/4", format: "null", acl: `Exec=${serverId}&Get=${serverId}` },
    ],
    exec: () => {
      reboots.count++;
      return { status: 200 };
    },
  };
}

interface PlannedDevice {
  readonly deviceId: string;
  readonly transport: DemoTransport;
  /** Proxy devices: the DM client; LwM2M devices: none. */
  device?: SimulatedDevice | undefined;
  readonly reboots: { count: number };
}

/**
 * Runs the demo and resolves with its report (whatever the devices did); stops everything it
 * started before it settles.
 * @throws DemoAborted on `signal`; Error when a step of the flow itself fails (the gateway does not
 *   start, the server's session fails, a wait times out).
 */
export async function runDemoScenario(options: DemoOptions = {}): Promise<DemoReport> {
  const total = options.devices ?? DEFAULT_DEMO_DEVICES;
  const step = options.onStep ?? (() => undefined);
  const signal = options.signal;
  const checks = checkTransports(options.broker ?? "auto");
  const asked = options.transports ?? DEMO_TRANSPORTS;
  const skipped = new Map<DemoTransport, string>();
  for (const c of checks)
    if (asked.includes(c.transport) && c.missing !== undefined) skipped.set(c.transport, c.missing);
  const running = checks.filter((c) => asked.includes(c.transport) && c.missing === undefined);
  if (running.length === 0) throw new Error("none of the transports asked for can run here");
  // A transport left without a device (fewer devices than transports) is not started at all.
  const plan = new Map(
    [
      ...planDevices(
        total,
        running.map((c) => c.transport),
      ),
    ].filter(([, n]) => n > 0),
  );
  const warnings = new WarningLog();
  const log = options.log ?? warnings;
  const cleanup = new Cleanup();
  const aborted = (): void => {
    if (signal?.aborted === true) throw new DemoAborted();
  };

  try {
    aborted();
    const dir = mkdtempSync(join(tmpdir(), "dmgw-demo-"));
    cleanup.add("the temporary directory", () => {
      rmSync(dir, { recursive: true, force: true });
    });

    // The DM Server, and the gateway's account on both sides (fresh secrets every run).
    const sim = new DmServerSimulator();
    const { url } = await sim.start();
    cleanup.add("the DM server simulator", () => sim.stop());
    const secret = (): string => randomBytes(12).toString("base64url");
    const client = { name: "demo-gw", secret: secret() };
    const server = { name: SERVER_ID, secret: secret() };
    const nonces = { client: new Uint8Array(randomBytes(4)), server: new Uint8Array(randomBytes(4)) };
    sim.addDevice(GATEWAY_DEV_ID, {
      clientAuth: { scheme: "md5", ...client },
      serverAuth: { scheme: "md5", ...server },
      clientNonce: nonces.client,
      serverNonce: nonces.server,
    });
    const enrolment: Enrolment = { secret: secret(), scheme: "hmac", serverId: GATEWAY_SERVER_ID };

    // Devices, named by transport.
    const devices: PlannedDevice[] = [];
    for (const [transport, n] of plan) {
      const width = String(n).length;
      for (let i = 1; i <= n; i++)
        devices.push({
          deviceId: `${transport}-${String(i).padStart(width, "0")}`,
          transport,
          reboots: { count: 0 },
        });
    }
    const ofTransport = (t: DemoTransport): PlannedDevice[] => devices.filter((d) => d.transport === t);
    const deviceOptions = (d: PlannedDevice): SimulatedDeviceOptions => {
      const account = enrolledAccount(d.deviceId, enrolment);
      return {
        deviceId: d.deviceId,
        serverId: account.serverId,
        clientAuth: account.clientAuth,
        serverAuth: account.serverAuth,
        plugins: [deviceObjectPlugin(account.serverId, d.reboots)],
      };
    };

    // The peers the drivers need, before the gateway starts its drivers.
    const drivers: Record<string, unknown> = {
      http: { host: "127.0.0.1", port: 0 },
      coap: { host: "127.0.0.1", port: 0, devInfoTimeoutMs: 5000 },
    };
    const peers = new Map<DemoTransport, string>(running.map((c) => [c.transport, c.peer]));
    let brokerUrl: string | undefined;
    if (plan.has("mqtt")) {
      if (peers.get("mqtt") === "mosquitto") {
        step("starting mosquitto");
        const broker = await startMosquitto({ ownProcessGroup: true });
        cleanup.add(`mosquitto (pid ${broker.pid})`, () => broker.stop());
        brokerUrl = broker.url;
      } else {
        step("starting the embedded MQTT broker (no mosquitto installed)");
        const broker = await startEmbeddedBroker();
        cleanup.add("the embedded MQTT broker", () => broker.stop());
        brokerUrl = broker.url;
      }
      drivers["mqtt"] = {
        url: brokerUrl,
        clientId: `dmgw-demo-${process.pid}`,
        reconnect: { initialMs: 100, maxMs: 1000 },
      };
    }
    aborted();
    const serialPorts: { path: string; deviceId: string }[] = [];
    if (plan.has("serial")) {
      const serial = ofTransport("serial");
      step(`starting ${serial.length} socat pty pair${serial.length === 1 ? "" : "s"}`);
      const { SerialDeviceSimulator } = await import("../../drivers/serial/sim.js");
      for (const d of serial) {
        const pair = await startPtyPair({ dir: join(dir, "tty", d.deviceId), ownProcessGroup: true });
        cleanup.add(`socat (pid ${pair.pid})`, () => pair.stop());
        const device = new SimulatedDevice(deviceOptions(d));
        d.device = device;
        cleanup.add(`the device ${d.deviceId}`, () => {
          device.close();
        });
        const link = await openSerialLink({ path: pair.b });
        const deviceSim = new SerialDeviceSimulator(link, { device });
        cleanup.add(`the serial line of ${d.deviceId}`, () => deviceSim.close());
        serialPorts.push({ path: pair.a, deviceId: d.deviceId });
      }
      drivers["serial"] = { ports: serialPorts, reconnect: { initialMs: 100, maxMs: 1000, jitter: 0.1 } };
    }
    aborted();
    if (plan.has("ble")) {
      step("starting a private dbus-daemon and the fake BlueZ");
      if (dbusDaemonPath() === undefined) throw new Error(DBUS_DAEMON_MISSING);
      mkdirSync(join(dir, "dbus"));
      const daemon = await startDbusDaemon({ dir: join(dir, "dbus"), ownProcessGroup: true });
      cleanup.add(`dbus-daemon (pid ${daemon.pid})`, () => daemon.stop({ keepDir: true }));
      const restoreBus = useSystemBus(daemon.address);
      cleanup.add("DBUS_SYSTEM_BUS_ADDRESS", restoreBus);
      const [{ FakeBluez }, { addProxyDevice }] = await Promise.all([
        import("../../drivers/ble/fake-bluez.js"),
        import("../../drivers/ble/sim.js"),
      ]);
      const fake = new FakeBluez({ discoveryDelayMs: 10 });
      await fake.start();
      // The fake first (its links down, then off the bus), then the daemon: a daemon that dies
      // first ends the fake's stream while calls may still be buffered for it, and dbus-next throws
      // when it answers one on an ended stream. daemon.stop() is idempotent.
      cleanup.add("the fake BlueZ", async () => {
        await fake.stop();
        await daemon.stop({ keepDir: true });
      });
      ofTransport("ble").forEach((d, i) => {
        const device = new SimulatedDevice(deviceOptions(d));
        d.device = device;
        cleanup.add(`the device ${d.deviceId}`, () => {
          device.close();
        });
        addProxyDevice(fake, { address: bleMac(i + 1), device, mtu: 247, answerTimeoutMs: 10_000 });
      });
      drivers["ble"] = {
        adapter: "hci0",
        discoveryIntervalMs: 200,
        sessionIdleMs: 300,
        linkIdleMs: 100,
        // Short: the fake answers in milliseconds, and an operation the driver abandons when it
        // stops keeps its deadline timer (and so this process) alive until it fires.
        callTimeoutMs: 2000,
        connectTimeoutMs: 3000,
        reconnect: { initialMs: 100, maxMs: 1000, jitter: 0.1 },
      };
    }
    aborted();

    // The gateway: the sim board, state in the temporary directory, every listener on port 0.
    step(`starting the gateway (board sim, state in ${dir})`);
    const config = parseConfig(
      {
        board: "sim",
        paths: { state: join(dir, "state"), runtime: join(dir, "run") },
        identity: { devId: GATEWAY_DEV_ID, man: "dmgw", mod: "demo" },
        servers: [
          {
            serverId: SERVER_ID,
            uri: url,
            clientAuth: { scheme: "md5", ...client, nonce: b64(nonces.client) },
            serverAuth: { scheme: "md5", ...server, nonce: b64(nonces.server) },
            checkInSeconds: 0,
          },
        ],
        northbound: {
          udpPush: { host: "127.0.0.1", port: 0 },
          timeoutMs: 20_000,
          retry: { initialMs: 200, maxMs: 2000 },
        },
        // No enrolment: the demo provisions every proxy device itself. (With an enrolment secret,
        // the serial driver's port presence would enter the inventory under the port's path.)
        southbound: { gatewayServerId: GATEWAY_SERVER_ID, drivers },
        control: false,
      },
      { env: {} },
    );
    const gw = await startGateway(config, { env: {}, log });
    cleanup.add("the gateway", () => gw.stop());
    aborted();

    // Proxy devices enter the inventory through the gateway, with their enrolment accounts.
    const south = gw.parts.south;
    const provision = (d: PlannedDevice, address: DeviceAddress): void => {
      south.provision({ deviceId: d.deviceId, address, account: enrolledAccount(d.deviceId, enrolment) });
    };
    if (plan.has("http")) {
      const { HttpDeviceFleet } = await import("../../drivers/http/sim.js");
      const http = ofTransport("http");
      const fleet: HttpDeviceFleet = new HttpDeviceFleet({
        gatewayUrl: `http://127.0.0.1:${String(gw.endpoints.http)}/dm`,
        devices: http.map(deviceOptions),
      });
      await fleet.start();
      cleanup.add("the HTTP devices", () => fleet.stop());
      for (const d of http) {
        d.device = fleet.device(d.deviceId);
        provision(d, fleet.address(d.deviceId));
      }
    }
    if (plan.has("mqtt") && brokerUrl !== undefined) {
      const { MqttDeviceFleet } = await import("../../drivers/mqtt/sim.js");
      const mqtt = ofTransport("mqtt");
      const byId = new Map(mqtt.map((d) => [d.deviceId, d]));
      for (const d of mqtt) provision(d, { transport: "mqtt", address: d.deviceId });
      const fleet: MqttDeviceFleet = new MqttDeviceFleet({
        url: brokerUrl,
        count: mqtt.length,
        idPrefix: "mqtt-",
        account: (id) => {
          const a = enrolledAccount(id, enrolment);
          return { serverId: a.serverId, clientAuth: a.clientAuth, serverAuth: a.serverAuth };
        },
        device: (_index, id) => {
          const d = byId.get(id);
          return d === undefined ? {} : { plugins: [deviceObjectPlugin(GATEWAY_SERVER_ID, d.reboots)] };
        },
        reconnectPeriodMs: 200,
      });
      await fleet.start();
      cleanup.add("the MQTT devices", () => fleet.stop());
      for (const d of mqtt) d.device = fleet.device(d.deviceId);
    }
    for (const d of ofTransport("serial"))
      provision(d, {
        transport: "serial",
        address: serialPorts.find((p) => p.deviceId === d.deviceId)?.path ?? "",
      });
    ofTransport("ble").forEach((d, i) => {
      provision(d, { transport: "ble", address: bleMac(i + 1) });
    });
    let coapFleet: Lwm2mFleet | undefined;
    if (plan.has("coap")) {
      const { Lwm2mFleet } = await import("../../drivers/coap/sim.js");
      const coap = ofTransport("coap");
      const fleet = new Lwm2mFleet({
        server: { address: "127.0.0.1", port: gw.endpoints.coap ?? 0 },
        count: coap.length,
        client: (i) => ({ endpoint: coap[i]?.deviceId ?? `coap-${String(i)}`, firmware: "1.0.0" }),
      });
      coapFleet = fleet;
      cleanup.add("the LwM2M devices", () => fleet.stop());
      await fleet.start();
    }
    step(
      `${devices.length} devices: ${[...plan].map(([t, n]) => `${t} ${n}`).join(", ")}` +
        (skipped.size > 0 ? ` (skipped: ${[...skipped.keys()].join(", ")})` : ""),
    );
    await waitUntil("every device in the gateway's inventory", signal, () =>
      devices.every((d) => south.registry.get(d.deviceId) !== undefined),
    );
    const northbound = gw.parts.northbound;
    if (northbound === undefined) throw new Error("the gateway started without its northbound");
    // The attach alerts go to the server first: a Pkg#0 while the gateway's own session runs would
    // find the server expecting another session.
    await settled(gw, signal);

    // Session 1: the server sets up the group and the job, and starts it.
    step(`the DM Server creates group ${GROUP} and job ${JOB}, and sends Package #0`);
    const setup: Command[] = [
      add("1", `./GwMO/Config/Groups/${GROUP}/GroupID`, "chr", GROUP),
      ...devices.map((d, i) =>
        add(String(100 + i), `./GwMO/Config/Groups/${GROUP}/Members/${i}/DeviceID`, "chr", d.deviceId),
      ),
      add("2", `${JOB}/FanOut/FanOutCommands`, "xml", JOB_COMMANDS),
      add("3", `${JOB}/FanOut/TargetGroupRef`, "chr", GROUP),
      replace("4", `${JOB}/Ext/Options/DeviceTimeout`, String(DEVICE_TIMEOUT_MS)),
      replace("5", `${JOB}/Ext/Options/Concurrency`, String(JOB_CONCURRENCY)),
      {
        kind: "Exec",
        cmdId: "6",
        correlator: CORRELATOR,
        items: [{ target: { locUri: `${JOB}/FanOut/Start` } }],
      },
    ];
    const startedMs = Date.now();
    const session1 = await serverSession(sim, gw, setup, signal);
    const refused = session1.commands.filter((c, i) => c.status !== (i === setup.length - 1 ? 202 : 200));
    if (refused.length > 0)
      throw new Error(
        `the gateway refused the job's setup: ${refused.map((c) => `${c.command.kind} ${String(c.status)}`).join(", ")}`,
      );
    step("the gateway accepted the job (202) and runs it");

    // The job runs: its progress, from the journal, until it finished.
    let last: JobProgress | undefined;
    await waitUntil(
      "the job's end",
      signal,
      () => {
        const p = jobProgress(gw.parts, JOB);
        if (p !== undefined && JSON.stringify(p) !== JSON.stringify(last)) {
          last = p;
          options.onProgress?.(p);
        }
        return p?.state === "finished";
      },
      DEVICE_TIMEOUT_MS * 3 + STEP_TIMEOUT_MS,
    );
    await waitUntil("the completion alert at the server", signal, () =>
      sim.alerts().some((a) => a.alert.correlator === CORRELATOR),
    );
    await settled(gw, signal);
    const alertAcknowledged =
      sim.alerts().some((a) => a.alert.correlator === CORRELATOR) && gw.parts.outbox.stats().count === 0;
    step(`the completion alert (1226, Correlator ${CORRELATOR}) reached the server`);

    // Session 2: the server reads the results.
    step("the DM Server sends Package #0 again and reads the results");
    // One Get per device (`Results/<n>?list=StructData`: its DeviceID and DevResultXML): a single
    // Get of `Results?list=StructData` answers one Results command that no message of a server's
    // usual MaxMsgSize holds once the job has a hundred devices or so.
    const read: Command[] = [
      { kind: "Get", cmdId: "1", items: [{ target: { locUri: `${JOB}/Status` } }] },
      ...devices.map((_, i): Command => ({
        kind: "Get",
        cmdId: String(i + 2),
        items: [{ target: { locUri: `${JOB}/Results/${String(i + 1)}?list=StructData` } }],
      })),
    ];
    const session2 = await serverSession(sim, gw, read, signal);
    const seconds = (Date.now() - startedMs) / 1000;
    const [statusRecord, ...resultRecords] = session2.commands;
    const failedGets = session2.commands.filter((c) => c.status !== 200);
    if (statusRecord === undefined || failedGets.length > 0)
      throw new Error(
        `the gateway answered ${failedGets.length} of the results' Gets with ${failedGets.map((c) => String(c.status)).join(", ")}`,
      );
    const jobStatus = textOf(statusRecord.results[0]?.items[0]?.data);
    const byDevice = resultsByDevice(resultRecords.flatMap((r) => r.results));

    // Each device: its statuses as the server read them, and its own state.
    const outcomes = devices.map((d): DemoDeviceOutcome => {
      const xml = byDevice.get(d.deviceId);
      const replies = xml === undefined ? undefined : decodeCommandFragment(xml, { allow: "replies" });
      const commands = replies?.ok === true ? replies.value : [];
      const statuses = commands
        .filter((c): c is StatusCommand => c.kind === "Status")
        .map((s) => Number(s.data));
      const fwV = commands
        .filter((c): c is ResultsCommand => c.kind === "Results" && c.cmdRef === "1")
        .map((r) => textOf(r.items[0]?.data))[0];
      const applied = deviceApplied(d, coapFleet);
      const ok =
        statuses.length === JOB_COMMAND_COUNT && statuses.every((s) => s >= 200 && s < 300) && applied;
      return { deviceId: d.deviceId, transport: d.transport, statuses, fwV, applied, ok };
    });
    const transports = new Map<DemoTransport, TransportSummary>();
    for (const [t] of plan) {
      const mine = outcomes.filter((o) => o.transport === t);
      const succeeded = mine.filter((o) => o.ok).length;
      transports.set(t, {
        devices: mine.length,
        succeeded,
        failed: mine.length - succeeded,
        peer: peers.get(t) ?? "",
      });
    }
    const succeeded = outcomes.filter((o) => o.ok).length;
    return {
      devices: outcomes.length,
      succeeded,
      failed: outcomes.length - succeeded,
      seconds,
      alertAcknowledged,
      jobStatus,
      transports,
      skipped,
      outcomes,
      warnings: warnings.lines(),
    };
  } finally {
    const failures = await cleanup.run();
    for (const f of failures) step(`cleanup: stopping ${f} failed`);
  }
}

/** Whether the device itself shows the job: the new UTC offset, and a reboot run. */
function deviceApplied(d: PlannedDevice, coap: Lwm2mFleet | undefined): boolean {
  if (d.transport === "coap") {
    const c = coap?.client(d.deviceId);
    return c !== undefined && c.get("/3/0/14") === DEMO_UTC_OFFSET && c.counters.reboots > 0;
  }
  const value = d.device?.tree.read("./3/0/14")?.value;
  return value === DEMO_UTC_OFFSET && d.reboots.count > 0;
}

/** `<job>/Results/<n>/DeviceID` and `.../DevResultXML` from a StructData Results: device -> XML. */
function resultsByDevice(results: readonly ResultsCommand[]): Map<string, string> {
  const ids = new Map<string, string>();
  const xml = new Map<string, string>();
  for (const r of results) {
    for (const item of r.items) {
      const path = item.source?.locUri ?? "";
      const m = /\/Results\/([^/]+)\/(DeviceID|DevResultXML)$/.exec(path);
      if (m === null) continue;
      const [, n = "", leaf] = m;
      (leaf === "DeviceID" ? ids : xml).set(n, textOf(item.data));
    }
  }
  const out = new Map<string, string>();
  for (const [n, id] of ids) out.set(id, xml.get(n) ?? "");
  return out;
}

/**
 * Queues `commands` for the gateway, sends Package #0 to its UDP push port and waits for the
 * server-initiated session that carries them to end.
 */
async function serverSession(
  sim: DmServerSimulator,
  gw: RunningGateway,
  commands: readonly Command[],
  signal: AbortSignal | undefined,
): Promise<NonNullable<ReturnType<DmServerSimulator["sessions"]>[number]>> {
  const before = sim.sessions(GATEWAY_DEV_ID).length;
  sim.queue(GATEWAY_DEV_ID, commands);
  const sent = await sim.notify(GATEWAY_DEV_ID, { host: "127.0.0.1", port: gw.endpoints.udpPush ?? 0 });
  let found: ReturnType<DmServerSimulator["sessions"]>[number] | undefined;
  await waitUntil("the server's session", signal, () => {
    found = sim
      .sessions(GATEWAY_DEV_ID)
      .slice(before)
      .find((s) => s.sessionId === sent.sessionId);
    return found !== undefined;
  });
  if (found === undefined) throw new Error("the server's session did not end");
  if (found.error !== undefined) throw new Error(`the server's session failed: ${found.error.reason}`);
  await gw.parts.northbound?.idle();
  return found;
}

/** Resolves once the gateway has no session running and no alert waiting. */
async function settled(gw: RunningGateway, signal: AbortSignal | undefined): Promise<void> {
  const nb = gw.parts.northbound;
  await waitUntil("the gateway's alerts delivered", signal, () => {
    const busy = nb?.stats().servers.some((s) => s.state !== "idle") ?? false;
    return !busy && gw.parts.outbox.stats().count === 0;
  });
}

/** Polls `done` until true; rejects on timeout (naming `what`) or abort. */
async function waitUntil(
  what: string,
  signal: AbortSignal | undefined,
  done: () => boolean,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<void> {
  const started = Date.now();
  for (;;) {
    if (signal?.aborted === true) throw new DemoAborted();
    if (done()) return;
    if (Date.now() - started > timeoutMs)
      throw new Error(`waiting for ${what} timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Things to stop, in reverse order of starting; each failure is named, none stops the rest. */
class Cleanup {
  readonly #steps: { readonly name: string; readonly run: () => unknown }[] = [];

  add(name: string, run: () => unknown): void {
    this.#steps.push({ name, run });
  }

  async run(): Promise<string[]> {
    const failed: string[] = [];
    for (const s of this.#steps.splice(0).reverse()) {
      try {
        await s.run();
      } catch {
        failed.push(s.name);
      }
    }
    return failed;
  }
}

/** A logger that keeps the gateway's last warnings and errors, for a failed run's report. */
class WarningLog implements Logger {
  readonly #lines: string[];
  readonly #namespace: string;

  constructor(namespace = "dmgw", lines: string[] = []) {
    this.#namespace = namespace;
    this.#lines = lines;
  }

  lines(): readonly string[] {
    return [...this.#lines];
  }

  error(text: LogText): void {
    this.#keep("error", text);
  }
  warn(text: LogText): void {
    this.#keep("warn", text);
  }
  info(): void {
    // Lifecycle lines: the demo prints its own.
  }
  debug(): void {
    // not kept
  }
  trace(): void {
    // not kept
  }
  enabled(level: LogLevel): boolean {
    return level === "error" || level === "warn";
  }
  child(namespace: string): Logger {
    return new WarningLog(`${this.#namespace}:${namespace}`, this.#lines);
  }

  #keep(level: LogLevel, text: LogText): void {
    this.#lines.push(`${level} ${this.#namespace}: ${typeof text === "function" ? text() : text}`);
    if (this.#lines.length > 50) this.#lines.splice(0, this.#lines.length - 50);
  }
}

function add(cmdId: string, uri: string, format: string, text: string): Command {
  return {
    kind: "Add",
    cmdId,
    items: [{ target: { locUri: uri }, meta: { format }, data: { kind: "text", text } }],
  };
}

function replace(cmdId: string, uri: string, text: string): Command {
  return { kind: "Replace", cmdId, items: [{ target: { locUri: uri }, data: { kind: "text", text } }] };
}

function textOf(data: { readonly kind: string; readonly text?: string } | undefined): string {
  return data !== undefined && data.kind === "text" && typeof data.text === "string" ? data.text : "";
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

/** The BLE MAC of demo device `n` (1-based). */
function bleMac(n: number): string {
  return `C0:DE:00:00:${((n >> 8) & 0xff).toString(16).padStart(2, "0").toUpperCase()}:${(n & 0xff).toString(16).padStart(2, "0").toUpperCase()}`;
}
