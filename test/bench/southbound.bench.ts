/**
 * Southbound bench (issue goals on 2 cores: >= 1,000 proxy sessions/s on MQTT, >= 500/s on HTTP,
 * serial limited only by the line speed): proxy sessions (`ProxySessions.execute`) per binding,
 * against simulated devices in a separate process (southbound-devices.ts), so that this process is
 * the gateway side alone and its CPU time and RSS are the gateway's.
 *
 *   gateway   this process: a Store in a temp dir (file, WAL, synchronous=FULL as shipped: every
 *             session's nonces are one fsynced commit), StoredDeviceAccounts holding every device's
 *             account (`enrolledAccount(id, enrolment)`, which the device process derives too),
 *             ProxySessions and the binding's driver, all from the tsc output in dist/
 *   devices   a child process (`node --import tsx test/bench/southbound-devices.ts <config>`), killed
 *             by its PID at the end; mosquitto (MQTT) and socat (serial ptys) are separate processes
 *   session   one server-initiated session per `execute`: Pkg#0, then 1 Get (./DevInfo/Man) + 1
 *             Replace (./Vendor/Setting1, int, a new value each session); MD5 digest both ways by
 *             default (`--auth hmac` for HMAC); every outcome must be `replied` with both statuses
 *             200 and the Get's value, or the bench aborts (no figures of failing sessions)
 *   window    sessions in flight at once: mqtt and http wide (many devices, each one session at a
 *             time), serial one session per port
 *   timing    a warm-up (every device at least twice, and a minimum time), then a timed run of at
 *             least MIN_MS and MIN_SESSIONS; CPU = `process.cpuUsage()` delta over the timed run /
 *             sessions; RSS = peak of `process.memoryUsage.rss()` sampled every 100 ms in the run
 *
 * Serial: ptys are not rate-limited, so the sessions/s there is what the gateway and the devices do
 * with an infinitely fast line; the bench counts the bytes on each line (both directions) and sets
 * them against the configured baud rate (8N1: baud / 10 bytes/s).
 *
 * CoAP (issue #6 goal: >= 1,000 adapted Get/Replace per second on loopback): no DM session; a
 * "session" is `CoapDriver.execute` on an LwM2M client (drivers/coap/sim.ts, in the device process):
 * Get ./DevInfo/Man (Read /3/0/0) + Replace ./3/0/14 (Write), two confirmable CoAP exchanges in turn.
 *
 * BLE (issue #6: bounded by the adapter pool, not by the gateway): proxy sessions as above through
 * the BleDriver (node-ble over dbus-next, tsc output) to DM devices on the DM transport service.
 * The device process runs a private dbus-daemon and on it the fake org.bluez with the simulated
 * devices (drivers/ble/sim.ts: the BlueZ stand-in and the devices in one); it prints the bus address,
 * which this process puts in DBUS_SYSTEM_BUS_ADDRESS while its driver runs. Every call to a device
 * waits PLAN.ble.latencyMs (an ATT round trip), ServicesResolved comes resolveDelayMs after Connect,
 * ATT MTU 23. Run at the default pool (5) and at a wider one (10), window = the pool (with more in
 * flight, a request waiting in the driver for a slot can lose it to a newer one and time out); the fake
 * counts the most devices connected at once, which must not exceed the pool.
 *
 * Args: `--auth md5|hmac`, and binding names (`mqtt`, `http`, `serial`, `coap`, `ble`) to run only those.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as BleDriverModule from "../../drivers/ble/driver.js";
import type * as CoapDriverModule from "../../drivers/coap/driver.js";
import type {
  AdaptationDriver,
  AdaptedOutcome,
  DeviceAddress,
  DriverContext,
  DriverState,
  ProxyDriver,
  ProxyDriverContext,
} from "../../drivers/driver.js";
import type * as HttpDriverModule from "../../drivers/http/driver.js";
import type * as MqttDriverModule from "../../drivers/mqtt/driver.js";
import type * as SerialDriverModule from "../../drivers/serial/driver.js";
import type * as ByteLinkModule from "../../src/core/byte-link.js";
import type { ByteLink } from "../../src/core/byte-link.js";
import type * as LogModule from "../../src/core/log.js";
import type { AuthScheme } from "../../src/dm/auth.js";
import type * as AccountsModule from "../../src/southbound/device-accounts.js";
import type { Enrolment } from "../../src/southbound/device-accounts.js";
import type * as ProxyModule from "../../src/southbound/proxy-sessions.js";
import type { ProxySessions, ProxyTarget } from "../../src/southbound/proxy-sessions.js";
import type { Command } from "../../src/syncml/index.js";
import type * as StoreModule from "../../src/tree/store.js";
import { useSystemBus } from "../helpers/dbus.js";
import { startMosquitto, type Mosquitto } from "../helpers/mosquitto.js";
import { startPtyPair, type PtyPair } from "../helpers/pty.js";
import { BenchError, formatTable, type BenchContext, type BenchReport } from "./common.js";
import { DeviceProcess, processCpuMs } from "./device-process.js";
import { loadShipped } from "./shipped.js";
import type { DevicesConfig, DevicesDone } from "./southbound-devices.js";

const { Store } = await loadShipped<typeof StoreModule>("tree/store.js");
const { StoredDeviceAccounts, enrolledAccount } = await loadShipped<typeof AccountsModule>(
  "southbound/device-accounts.js",
);
const { ProxySessions: ShippedProxySessions } = await loadShipped<typeof ProxyModule>(
  "southbound/proxy-sessions.js",
);
const { SILENT_LOGGER } = await loadShipped<typeof LogModule>("core/log.js");
const { serialLinkFactory } = await loadShipped<typeof ByteLinkModule>("core/byte-link.js");
// dist/drivers is dist/src's sibling.
const { HttpDriver } = await loadShipped<typeof HttpDriverModule>("../drivers/http/driver.js");
const { MqttDriver } = await loadShipped<typeof MqttDriverModule>("../drivers/mqtt/driver.js");
const { SerialDriver } = await loadShipped<typeof SerialDriverModule>("../drivers/serial/driver.js");
const { CoapDriver } = await loadShipped<typeof CoapDriverModule>("../drivers/coap/driver.js");
const { BleDriver, DEFAULT_BLE_POOL_SIZE } =
  await loadShipped<typeof BleDriverModule>("../drivers/ble/driver.js");

type Transport = "mqtt" | "http" | "serial" | "coap" | "ble";
const TRANSPORTS: readonly Transport[] = ["mqtt", "http", "serial", "coap", "ble"];

export interface BindingFigures {
  readonly transport: Transport;
  readonly sessionsPerSecond: number;
  readonly gatewayCpuMsPerSession: number;
  /** Peak RSS of this process during the timed run. */
  readonly gatewayRssMB: number;
  /** Serial: bytes/s on all lines together (both directions), and the configured baud rate. */
  readonly bytesPerSecond?: number;
  readonly baudRate?: number;
  /** BLE: the driver's pool (devices connected at once on the adapter) of this row. */
  readonly poolSize?: number;
}

export interface SouthboundReport extends BenchReport {
  readonly bench: "southbound";
  readonly bindings: readonly BindingFigures[];
}

const GOALS = { mqtt: 1000, http: 500, coap: 1000 } as const;

const SERVER_ID = "dmgw-bench";
const SESSION_TIMEOUT_MS = 15_000;
const WARMUP_MS = 2_000;
const MIN_MS = 5_000;
const MIN_SESSIONS = 1_000;
const RSS_SAMPLE_MS = 100;

const PLAN = {
  mqtt: { devices: 512, window: 256, deviceConnections: 4 },
  http: { devices: 512, window: 256 },
  serial: { ports: 4, baudRate: 115_200 },
  coap: { devices: 256, window: 256 },
  ble: {
    devices: 24,
    /** Slow: a timed run of this long, after a warm-up of one session per device. */
    minMs: 15_000,
    /** The default pool (the JSON row), then a wider one: throughput should follow the pool. */
    pools: [DEFAULT_BLE_POOL_SIZE, 2 * DEFAULT_BLE_POOL_SIZE],
    /** Sessions in flight per pool slot (2 made notifies starve for a slot: the driver's wait is not FIFO). */
    windowPerSlot: 1,
    latencyMs: 7.5,
    resolveDelayMs: 50,
    mtu: 23,
  },
} as const;

const MAN = "SimCo"; // SimulatedDevice's DevInfo/Man

function sessionCommands(value: number, transport: Transport): Command[] {
  // LwM2M has no ./Vendor/Setting1: the coap row writes the Device object's UTC Offset (RW string).
  const target = transport === "coap" ? "./3/0/14" : "./Vendor/Setting1";
  return [
    { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] },
    {
      kind: "Replace",
      cmdId: "2",
      items: [
        {
          target: { locUri: target },
          meta: { format: transport === "coap" ? "chr" : "int" },
          data: { kind: "text", text: String(value) },
        },
      ],
    },
  ];
}

/** What is wrong with an outcome, or undefined when both commands were answered 200. */
function problemOf(outcome: AdaptedOutcome): string | undefined {
  if (outcome.kind === "failed") return `failed ${outcome.status}: ${outcome.reason}`;
  const [get, replace] = outcome.results;
  if (outcome.results.length !== 2 || get === undefined || replace === undefined) {
    return `${outcome.results.length} results, not 2`;
  }
  if (get.status !== 200 || replace.status !== 200) {
    return `statuses Get ${String(get.status)}, Replace ${String(replace.status)}`;
  }
  const data = get.items[0]?.data;
  const man = data?.kind === "text" ? data.text : undefined;
  if (man !== MAN) return `the Get answered ${String(man)}, not ${MAN}`;
  return undefined;
}

// ---- one binding ----------------------------------------------------------------------------------

interface Gateway {
  /** One session (proxy) or one `execute` (adaptation) on `target`. */
  readonly execute: (target: ProxyTarget, commands: readonly Command[]) => Promise<AdaptedOutcome>;
  readonly driver: ProxyDriver | AdaptationDriver;
  readonly targets: readonly ProxyTarget[];
  readonly window: number;
  /** Other processes whose CPU the bench reports: the devices, and the broker or socat. */
  readonly peers: readonly { readonly name: string; readonly pids: readonly (number | undefined)[] }[];
  /** Serial: bytes on all lines so far. */
  readonly lineBytes?: () => number;
  /** After the timed run: waits until the last answers reached the devices (ble: every link released). */
  readonly settle?: () => Promise<void>;
  /** Waits, after a session, until the target may take the next one (serial: its OBEX Disconnect). */
  readonly afterSession?: (target: ProxyTarget) => Promise<void>;
}

interface Run {
  readonly sessions: number;
  readonly ms: number;
  readonly cpuMs: number;
  readonly peakRssMB: number;
  readonly peerCpuMs: ReadonlyMap<string, number | undefined>;
  readonly lineBytes: number | undefined;
}

/**
 * Keeps `window` sessions in flight over the targets (a device is taken from the free list for one
 * session and put back after it), until `minMs` and `minSessions` are both reached. The first
 * failing session stops the run and is thrown once the sessions in flight have settled.
 */
async function drive(g: Gateway, minMs: number, minSessions: number, next: () => number): Promise<Run> {
  const free = [...g.targets];
  let done = 0;
  let failure: Error | undefined;
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, RSS_SAMPLE_MS);
  const peerCpu = (): Map<string, number | undefined> =>
    new Map(
      g.peers.map((p) => {
        const each = p.pids.map(processCpuMs);
        return [
          p.name,
          each.includes(undefined) ? undefined : each.reduce<number>((a, b) => a + (b ?? 0), 0),
        ];
      }),
    );
  const peers0 = peerCpu();
  const bytes0 = g.lineBytes?.();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const elapsedMs = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
  const worker = async (): Promise<void> => {
    while (failure === undefined && (done < minSessions || elapsedMs() < minMs)) {
      const target = free.shift();
      if (target === undefined) throw new Error("no free device: the window is wider than the fleet");
      const outcome = await g.execute(target, sessionCommands(next(), target.address.transport));
      const problem = problemOf(outcome);
      if (problem !== undefined) {
        failure ??= new Error(`${target.address.transport} session with ${target.deviceId}: ${problem}`);
        return;
      }
      await g.afterSession?.(target);
      done++;
      free.push(target);
    }
  };
  try {
    await Promise.all(Array.from({ length: g.window }, worker));
  } finally {
    clearInterval(sampler);
  }
  const ms = elapsedMs();
  const cpu = process.cpuUsage(cpu0);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  if (failure !== undefined) throw failure;
  const peers1 = peerCpu();
  const peerCpuMs = new Map<string, number | undefined>();
  for (const [name, before] of peers0) {
    const after = peers1.get(name);
    peerCpuMs.set(name, before === undefined || after === undefined ? undefined : after - before);
  }
  const bytes1 = g.lineBytes?.();
  return {
    sessions: done,
    ms,
    cpuMs: (cpu.user + cpu.system) / 1e3,
    peakRssMB: peakRss / (1 << 20),
    peerCpuMs,
    lineBytes: bytes0 === undefined || bytes1 === undefined ? undefined : bytes1 - bytes0,
  };
}

interface Core {
  readonly store: StoreModule.Store;
  readonly proxy: ProxySessions;
  readonly ctx: ProxyDriverContext;
  readonly states: DriverState[];
}

/** The gateway's store (a file in `dir`), the accounts of `deviceIds`, ProxySessions, a driver context. */
function openCore(dir: string, name: string, deviceIds: readonly string[], enrolment: Enrolment): Core {
  const store = Store.open(join(dir, `${name}.sqlite`));
  const accounts = new StoredDeviceAccounts(store);
  store.db.transaction(() => {
    for (const id of deviceIds) accounts.put(enrolledAccount(id, enrolment));
  })();
  const proxy = new ShippedProxySessions({ accounts });
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
  return { store, proxy, ctx, states };
}

function targetsOf(
  deviceIds: readonly string[],
  addresses: ReadonlyMap<string, DeviceAddress>,
): ProxyTarget[] {
  return deviceIds.map((deviceId) => {
    const address = addresses.get(deviceId);
    if (address === undefined) throw new Error(`the device process did not report ${deviceId}`);
    return { deviceId, address };
  });
}

/**
 * The gateway's end of one serial line: counts the bytes both ways and the OBEX Disconnect requests
 * the device sends (one at the end of each of its sessions).
 *
 * Why: one serial line carries one OBEX conversation at a time, and the gateway settles `execute`
 * as soon as the device's last message is in, before the device's closing Get and Disconnect. The
 * simulator keeps a Pkg#0 that crosses them for later, but a real device may not, so the bench starts
 * a port's next session once the device's Disconnect has arrived, as a careful planner would: this
 * wait is inside the timing.
 */
class LineWatch {
  bytes = 0;
  disconnects = 0;
  /** Bytes left of the OBEX packet being read (device to gateway), and the head of the next one. */
  #rest = 0;
  #head: number[] = [];
  readonly #waiters = new Set<() => void>();

  /** Wraps a new link of the port (framing restarts at a new link). */
  wrap(link: ByteLink): ByteLink {
    this.#rest = 0;
    this.#head = [];
    const writer = link.writable.getWriter();
    return {
      readable: link.readable.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform: (chunk, controller) => {
            this.#fromDevice(chunk);
            controller.enqueue(chunk);
          },
        }),
      ),
      writable: new WritableStream<Uint8Array>({
        write: (chunk) => {
          this.bytes += chunk.length;
          return writer.write(chunk);
        },
        close: () => writer.close(),
        abort: (reason) => writer.abort(reason),
      }),
      close: () => link.close(),
    };
  }

  /** Resolves once `n` Disconnects came from the device; rejects after `timeoutMs`. */
  async disconnected(n: number, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.disconnects < n) {
      if (Date.now() > until) {
        throw new Error(`the device sent ${this.disconnects} OBEX Disconnects, not ${n}, in ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, 50);
        this.#waiters.add(done);
      });
    }
  }

  /** OBEX packets: opcode or response code, 2-byte length (the whole packet), the rest. */
  #fromDevice(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    let i = 0;
    while (i < chunk.length) {
      if (this.#rest > 0) {
        const take = Math.min(this.#rest, chunk.length - i);
        this.#rest -= take;
        i += take;
        continue;
      }
      this.#head.push(chunk[i++] ?? 0);
      if (this.#head.length < 3) continue;
      const [code = 0, hi = 0, lo = 0] = this.#head;
      this.#head = [];
      this.#rest = Math.max(0, ((hi << 8) | lo) - 3);
      // 0x81 from the device can only be its Disconnect request (responses are 0x90 and up).
      if (code === 0x81) {
        this.disconnects++;
        for (const w of [...this.#waiters]) w();
      }
    }
  }
}

/** A cleanup that closes the store. */
function closing(store: StoreModule.Store): () => Promise<void> {
  return () => {
    store.close();
    return Promise.resolve();
  };
}

interface Setup {
  readonly gateway: Gateway;
  readonly devices: DeviceProcess;
  readonly describe: string;
  /** The device process's done line, once the binding is torn down. */
  readonly done: { value: DevicesDone | undefined };
  /** BLE: the driver's pool and the most links it held at once. */
  readonly pool?: { readonly size: number; readonly driverPeak: () => number };
}

/** Runs `body` on a started binding and always tears it down (no process left behind). */
async function withBinding<T>(
  transport: Transport,
  dir: string,
  enrolment: Enrolment,
  poolSize: number,
  body: (s: Setup) => Promise<T>,
): Promise<T> {
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      await c().catch((e: unknown) => {
        process.stderr.write(`southbound bench: cleanup: ${e instanceof Error ? e.message : String(e)}\n`);
      });
    }
    cleanups.length = 0;
  };
  try {
    return await body(await startBinding(transport, dir, enrolment, poolSize, cleanups));
  } finally {
    await cleanup();
  }
}

async function startBinding(
  transport: Transport,
  dir: string,
  enrolment: Enrolment,
  poolSize: number,
  cleanups: (() => Promise<void>)[],
): Promise<Setup> {
  const done: Setup["done"] = { value: undefined };
  const ids = (prefix: string, n: number): string[] => {
    const width = String(n).length;
    return Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(width, "0")}`);
  };
  const startDevices = async (
    config: DevicesConfig,
  ): Promise<{ devices: DeviceProcess; addresses: Map<string, DeviceAddress> }> => {
    const devices = new DeviceProcess(config);
    cleanups.push(async () => {
      const tally = await devices.stop();
      done.value = tally;
      // The device process stops its dbus-daemon; if it was killed first, the daemon goes here.
      const daemonPid = devices.dbus?.pid;
      if (daemonPid !== undefined) {
        try {
          process.kill(daemonPid, "SIGKILL");
        } catch {
          // gone with the device process, as it should be
        }
      }
      if (tally !== undefined && tally.failed > 0) {
        process.stdout.write(
          `WARNING: the devices report ${tally.failed} failed sessions: ${tally.reasons.join("; ")}\n`,
        );
      }
    });
    return { devices, addresses: await devices.ready(60_000) };
  };
  switch (transport) {
    case "mqtt": {
      const plan = PLAN.mqtt;
      const deviceIds = ids("bench-", plan.devices);
      const broker: Mosquitto = await startMosquitto();
      cleanups.push(() => broker.stop());
      const core = openCore(dir, transport, deviceIds, enrolment);
      cleanups.push(closing(core.store));
      const driver = new MqttDriver({ url: broker.url, clientId: `dmgw-bench-${process.pid}` }, core.ctx);
      core.proxy.attach(driver);
      cleanups.push(async () => {
        core.proxy.close();
        await driver.stop();
      });
      await driver.start();
      const { devices, addresses } = await startDevices({
        transport,
        enrolment,
        url: broker.url,
        count: plan.devices,
        idPrefix: "bench-",
        connections: plan.deviceConnections,
      });
      return {
        devices,
        done,
        describe: `${plan.devices} devices on ${plan.deviceConnections} MQTT connections, mosquitto on loopback, window ${plan.window}`,
        gateway: {
          execute: (target, commands) =>
            core.proxy.execute(target, commands, { timeoutMs: SESSION_TIMEOUT_MS }),
          driver,
          targets: targetsOf(deviceIds, addresses),
          window: plan.window,
          peers: [
            { name: "devices", pids: [devices.pid] },
            { name: "mosquitto", pids: [broker.pid] },
          ],
        },
      };
    }
    case "http": {
      const plan = PLAN.http;
      const deviceIds = ids("bench-", plan.devices);
      const core = openCore(dir, transport, deviceIds, enrolment);
      cleanups.push(closing(core.store));
      const driver = new HttpDriver({ host: "127.0.0.1", port: 0 }, core.ctx);
      core.proxy.attach(driver);
      cleanups.push(async () => {
        core.proxy.close();
        await driver.stop();
      });
      await driver.start();
      const { devices, addresses } = await startDevices({
        transport,
        enrolment,
        gatewayUrl: driver.url,
        deviceIds,
      });
      return {
        devices,
        done,
        describe: `${plan.devices} devices (a UDP socket each for the WSP Push, POSTs over one keep-alive agent), window ${plan.window}`,
        gateway: {
          execute: (target, commands) =>
            core.proxy.execute(target, commands, { timeoutMs: SESSION_TIMEOUT_MS }),
          driver,
          targets: targetsOf(deviceIds, addresses),
          window: plan.window,
          peers: [{ name: "devices", pids: [devices.pid] }],
        },
      };
    }
    case "coap": {
      const plan = PLAN.coap;
      const states: DriverState[] = [];
      const ctx: DriverContext = {
        log: SILENT_LOGGER,
        signal: new AbortController().signal,
        onState: (st) => {
          states.push(st);
        },
        onDeviceSeen: () => undefined,
        onDeviceLost: () => undefined,
      };
      const driver = new CoapDriver({ host: "127.0.0.1", port: 0 }, ctx);
      cleanups.push(() => driver.stop());
      await driver.start();
      const { devices, addresses } = await startDevices({
        transport,
        enrolment,
        server: { address: "127.0.0.1", port: driver.port },
        count: plan.devices,
        prefix: "bench-",
      });
      const deviceIds = [...addresses.keys()];
      const until = Date.now() + 30_000;
      while (deviceIds.some((id) => driver.registration(id) === undefined)) {
        if (Date.now() > until) throw new Error("the LwM2M clients did not all register");
        await new Promise((r) => setTimeout(r, 50));
      }
      return {
        devices,
        done,
        describe: `${plan.devices} LwM2M clients (a UDP socket each), one gateway UDP socket, NSTART 1, window ${plan.window}`,
        gateway: {
          execute: (target, commands) =>
            driver.execute(target.address, commands, { timeoutMs: SESSION_TIMEOUT_MS }),
          driver,
          targets: targetsOf(deviceIds, addresses),
          window: plan.window,
          peers: [{ name: "devices", pids: [devices.pid] }],
        },
      };
    }
    case "ble": {
      const plan = PLAN.ble;
      const { devices, addresses } = await startDevices({
        transport,
        enrolment,
        count: plan.devices,
        latencyMs: plan.latencyMs,
        resolveDelayMs: plan.resolveDelayMs,
        mtu: plan.mtu,
      });
      const bus = devices.dbus;
      if (bus === undefined) throw new Error("the device process gave no D-Bus address");
      const deviceIds = [...addresses.keys()];
      const core = openCore(dir, `${transport}-${poolSize}`, deviceIds, enrolment);
      cleanups.push(closing(core.store));
      const seen = new Set<string>();
      const ctx: ProxyDriverContext = {
        ...core.ctx,
        onDeviceSeen: (address) => {
          seen.add(address.address);
        },
      };
      // node-ble connects to the bus DBUS_SYSTEM_BUS_ADDRESS names (dbus-next's systemBus()), at
      // start and at each reconnect: set while the driver runs, restored once it stopped.
      const restoreBus = useSystemBus(bus.address);
      cleanups.push(() => {
        restoreBus();
        return Promise.resolve();
      });
      const driver = new BleDriver({ poolSize }, ctx);
      core.proxy.attach(driver);
      cleanups.push(async () => {
        core.proxy.close();
        await driver.stop();
      });
      await driver.start();
      const until = Date.now() + 30_000;
      while (seen.size < deviceIds.length) {
        if (Date.now() > until) {
          throw new Error(`the ble driver discovered ${seen.size} of ${deviceIds.length} devices in 30 s`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      const window = poolSize * plan.windowPerSlot;
      return {
        devices,
        done,
        pool: { size: poolSize, driverPeak: () => driver.peakLinks },
        describe:
          `${plan.devices} DM devices on the fake org.bluez (private dbus-daemon, both in the device process), ` +
          `${plan.latencyMs} ms per device call, ServicesResolved ${plan.resolveDelayMs} ms after Connect, ` +
          `ATT MTU ${plan.mtu}; driver defaults (a link held sessionIdleMs 3 s after a session's last message); ` +
          `pool ${poolSize}, window ${window}`,
        gateway: {
          execute: (target, commands) =>
            core.proxy.execute(target, commands, { timeoutMs: SESSION_TIMEOUT_MS }),
          driver,
          targets: targetsOf(deviceIds, addresses),
          window,
          // `execute` settles when the device's last message is in, before the gateway's closing
          // answer is written; the driver releases a link once that is done and the session has been
          // idle `sessionIdleMs`. Stopping before would cut those answers.
          settle: async () => {
            const until = Date.now() + 15_000;
            while (driver.connectedLinks > 0) {
              if (Date.now() > until)
                throw new Error(`${driver.connectedLinks} ble links still up 15 s after the run`);
              await new Promise((r) => setTimeout(r, 50));
            }
          },
          peers: [
            { name: "devices", pids: [devices.pid] },
            { name: "dbus-daemon", pids: [bus.pid] },
          ],
        },
      };
    }
    case "serial": {
      const plan = PLAN.serial;
      const deviceIds = ids("bench-serial-", plan.ports);
      const pairs: PtyPair[] = [];
      for (let i = 0; i < plan.ports; i++) {
        const pair = await startPtyPair();
        pairs.push(pair);
        cleanups.push(() => pair.stop());
      }
      const core = openCore(dir, transport, deviceIds, enrolment);
      cleanups.push(closing(core.store));
      const watches = new Map(pairs.map((p) => [p.a, new LineWatch()]));
      const sessions = new Map<string, number>();
      const driver = new SerialDriver(
        {
          ports: pairs.map((p, i) => ({ path: p.a, deviceId: deviceIds[i] ?? "" })),
          baudRate: plan.baudRate,
        },
        core.ctx,
        {
          linkFactory: (port) => {
            const open = serialLinkFactory({ path: port.path, baudRate: plan.baudRate });
            const watch = watches.get(port.path) ?? new LineWatch();
            return async () => watch.wrap(await open());
          },
        },
      );
      core.proxy.attach(driver);
      cleanups.push(async () => {
        core.proxy.close();
        await driver.stop();
      });
      const { devices, addresses } = await startDevices({
        transport,
        enrolment,
        ports: pairs.map((p, i) => ({ deviceId: deviceIds[i] ?? "", path: p.b, address: p.a })),
      });
      await driver.start();
      if (driver.state !== "ready") throw new Error(`the serial driver is ${driver.state} after start`);
      return {
        devices,
        done,
        describe: `${plan.ports} socat pty pairs, one device and one session at a time per port, ${plan.baudRate} baud configured (a pty ignores it)`,
        gateway: {
          execute: (target, commands) =>
            core.proxy.execute(target, commands, { timeoutMs: SESSION_TIMEOUT_MS }),
          driver,
          targets: targetsOf(deviceIds, addresses),
          window: plan.ports,
          peers: [
            { name: "devices", pids: [devices.pid] },
            { name: "socat", pids: pairs.map((p) => p.pid) },
          ],
          lineBytes: () => [...watches.values()].reduce((sum, w) => sum + w.bytes, 0),
          afterSession: (target) => {
            const n = (sessions.get(target.address.address) ?? 0) + 1;
            sessions.set(target.address.address, n);
            const watch = watches.get(target.address.address);
            return watch === undefined ? Promise.resolve() : watch.disconnected(n, 5_000);
          },
        },
      };
    }
  }
}

// ---- the bench ------------------------------------------------------------------------------------

interface Measured {
  readonly transport: Transport;
  /** The table's name of the row (`ble pool 10`). */
  readonly label: string;
  readonly describe: string;
  readonly devices: number;
  readonly window: number;
  readonly run: Run;
  /** BLE: the pool, the most links the driver held, and the device process's figures after the stop. */
  readonly pool?: { readonly size: number; readonly driverPeak: number };
  readonly done: { readonly value: DevicesDone | undefined };
}

function parseArgs(args: readonly string[]): { scheme: AuthScheme; transports: Transport[] } {
  let scheme: AuthScheme = "md5";
  const transports: Transport[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--auth") {
      const s = args[++i];
      if (s !== "md5" && s !== "hmac") throw new BenchError(`--auth takes md5 or hmac, not ${String(s)}`);
      scheme = s;
    } else if (TRANSPORTS.includes(a as Transport)) {
      transports.push(a as Transport);
    } else {
      throw new BenchError(
        `unknown argument ${String(a)} (southbound [mqtt] [http] [serial] [coap] [ble] [--auth md5|hmac] [--json])`,
      );
    }
  }
  return { scheme, transports: transports.length > 0 ? transports : [...TRANSPORTS] };
}

export async function run(ctx: BenchContext): Promise<SouthboundReport> {
  const { scheme, transports } = parseArgs(ctx.args);
  const enrolment: Enrolment = { secret: "bench-enrolment-secret", scheme, serverId: SERVER_ID };
  const dir = mkdtempSync(join(tmpdir(), "dmgw-bench-southbound-"));
  let value = 0;
  const next = (): number => ++value;
  const measured: Measured[] = [];
  try {
    for (const transport of transports) {
      // BLE runs once per pool size; the others once (the pool argument is unused there).
      for (const poolSize of transport === "ble" ? PLAN.ble.pools : [0]) {
        const m = await withBinding(transport, dir, enrolment, poolSize, async (s): Promise<Measured> => {
          const g = s.gateway;
          // Warm-up: every device twice (nonces settled from the zero ones; once on ble, whose
          // sessions take seconds), and a minimum time.
          const warmups = g.targets.length * (transport === "ble" ? 1 : 2);
          await drive(g, transport === "serial" ? WARMUP_MS / 2 : WARMUP_MS, warmups, next);
          // Serial and BLE are slow links: time only, not MIN_SESSIONS.
          const r =
            transport === "ble"
              ? await drive(g, PLAN.ble.minMs, 0, next)
              : await drive(g, MIN_MS, transport === "serial" ? 0 : MIN_SESSIONS, next);
          await g.settle?.();
          return {
            transport,
            label: s.pool === undefined ? transport : `${transport} pool ${s.pool.size}`,
            describe: s.describe,
            devices: g.targets.length,
            window: g.window,
            run: r,
            ...(s.pool !== undefined && { pool: { size: s.pool.size, driverPeak: s.pool.driverPeak() } }),
            done: s.done,
          };
        });
        if (m.pool !== undefined) {
          // The fake BlueZ's count, from the device process once it stopped: the pool's oracle.
          const peak = m.done.value?.peakConnections;
          const refused = m.done.value?.refusedConnections ?? 0;
          if (peak === undefined) throw new Error(`${m.label}: the device process gave no connection count`);
          const failed = m.done.value?.failed ?? 0;
          if (failed > 0) {
            throw new Error(
              `${m.label}: the devices report ${failed} failed sessions: ${m.done.value?.reasons.join("; ") ?? ""}`,
            );
          }
          if (peak > m.pool.size || m.pool.driverPeak > m.pool.size || refused > 0) {
            throw new Error(
              `${m.label}: the pool was exceeded: ${peak} devices connected at once on the fake BlueZ ` +
                `(driver ${m.pool.driverPeak} links, ${refused} Connects refused), pool ${m.pool.size}`,
            );
          }
        }
        measured.push(m);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;
  const figuresOf = (m: Measured): BindingFigures => {
    const r = m.run;
    const base = {
      transport: m.transport,
      sessionsPerSecond: round((r.sessions * 1e3) / r.ms, 1),
      gatewayCpuMsPerSession: round(r.cpuMs / r.sessions, 3),
      gatewayRssMB: round(r.peakRssMB, 1),
    };
    if (m.pool !== undefined) return { ...base, poolSize: m.pool.size };
    return m.transport === "serial" && r.lineBytes !== undefined
      ? { ...base, bytesPerSecond: Math.round((r.lineBytes * 1e3) / r.ms), baudRate: PLAN.serial.baudRate }
      : base;
  };
  const all = measured.map(figuresOf);
  // The JSON has one row per binding: BLE's is the default pool's (the wider pool is in the table).
  const bindings = all.filter((b) => b.poolSize === undefined || b.poolSize === DEFAULT_BLE_POOL_SIZE);

  ctx.log(
    `proxy sessions through ProxySessions.execute: Pkg#0, 1 Get (./DevInfo/Man) + 1 Replace (./Vendor/Setting1), ` +
      `${scheme === "md5" ? "MD5 digest" : "HMAC"} both ways, WBXML (the devices' default); gateway (dist/) in this ` +
      `process with a file store (WAL, synchronous=FULL: one fsynced nonce commit per session); devices in a child process`,
  );
  if (measured.some((m) => m.transport === "coap")) {
    ctx.log(
      "coap: adapted, no DM session: CoapDriver.execute with Get ./DevInfo/Man (LwM2M Read) + Replace ./3/0/14 (Write)",
    );
  }
  if (measured.some((m) => m.transport === "ble")) {
    ctx.log(
      "ble: proxy sessions as above through the BleDriver (node-ble, dbus-next) to the fake org.bluez; " +
        "'peak conn' = most devices connected at once, as the fake BlueZ counted them (never above the pool)",
    );
  }
  for (const m of measured) ctx.log(`  ${m.label}: ${m.describe}`);
  ctx.log("");
  const peerNames = ["devices", "mosquitto", "socat", "dbus-daemon"].filter(
    (n) => n === "devices" || measured.some((m) => m.run.peerCpuMs.has(n)),
  );
  const withPool = measured.some((m) => m.pool !== undefined);
  const rows = measured.map((m, i) => {
    const r = m.run;
    const b = all[i];
    const peer = (name: string): string => {
      if (!r.peerCpuMs.has(name)) return "-";
      const v = r.peerCpuMs.get(name);
      return v === undefined ? "?" : (v / r.sessions).toFixed(3);
    };
    return [
      m.label,
      String(m.devices),
      String(m.window),
      ...(withPool
        ? [m.pool === undefined ? "-" : `${String(m.done.value?.peakConnections ?? "?")}/${m.pool.size}`]
        : []),
      String(r.sessions),
      (r.ms / 1e3).toFixed(2),
      (b?.sessionsPerSecond ?? 0).toFixed(1),
      (b?.gatewayCpuMsPerSession ?? 0).toFixed(3),
      (r.sessions / (r.cpuMs / 1e3)).toFixed(0),
      (b?.gatewayRssMB ?? 0).toFixed(1),
      ...peerNames.map(peer),
    ];
  });
  for (const line of formatTable(
    [
      "binding",
      "devices",
      "window",
      ...(withPool ? ["peak conn/pool"] : []),
      "sessions",
      "s",
      "sessions/s",
      "gw CPU ms/session",
      "sessions/gw-CPU-s",
      "gw RSS MB (peak)",
      ...peerNames.map((n) => `${n} CPU ms/session`),
    ],
    rows,
    [false, ...Array.from({ length: 8 + (withPool ? 1 : 0) + peerNames.length }, () => true)],
  ))
    ctx.log(line);
  ctx.log("(CPU of other processes from /proc: 10 ms ticks; 'gw' = this process, the gateway side alone)");

  const check = (ok: boolean): string => (ok ? "pass" : "FAIL");
  ctx.log("");
  for (const b of bindings) {
    if (b.transport === "ble") {
      bleVerdict(ctx, measured, all, check);
    } else if (b.transport === "serial") {
      const m = measured.find((x) => x.transport === "serial");
      const lineBytes = m?.run.lineBytes;
      if (m === undefined || lineBytes === undefined) continue;
      const ports = m.window;
      const bytesPerSession = lineBytes / m.run.sessions;
      const lineBytesPerSecond = PLAN.serial.baudRate / 10; // 8N1
      const lineSessions = lineBytesPerSecond / bytesPerSession; // per port
      const ptySessions = b.sessionsPerSecond / ports;
      const perPort = (b.bytesPerSecond ?? 0) / ports;
      ctx.log(
        `serial line: ${Math.round(bytesPerSession)} bytes/session (both directions), ${Math.round(perPort)} bytes/s per ` +
          `pty = ${(perPort / lineBytesPerSecond).toFixed(1)}x what ${PLAN.serial.baudRate} baud carries (${lineBytesPerSecond} bytes/s, 8N1); ` +
          `ptys are not rate-limited`,
      );
      ctx.log(
        `${check(ptySessions >= lineSessions)}: serial ${ptySessions.toFixed(1)} sessions/s per port on an unthrottled pty >= ` +
          `${lineSessions.toFixed(1)} sessions/s a ${PLAN.serial.baudRate} baud line allows (the line is the limit)`,
      );
    } else {
      const goal = GOALS[b.transport];
      ctx.log(
        `${check(b.sessionsPerSecond >= goal)}: ${b.transport} ${b.sessionsPerSecond.toFixed(1)} sessions/s >= ${goal}`,
      );
    }
  }
  return { bench: "southbound", bindings };
}

/**
 * BLE's line: bounded by the adapter pool when sessions/s follows the pool (the wider pool gives at
 * least 0.75x its share more) while the gateway's CPU stays a small part of a core (under 25 % at the
 * wider pool): the sessions wait for radio slots, not for the gateway.
 */
function bleVerdict(
  ctx: BenchContext,
  measured: readonly Measured[],
  figures: readonly BindingFigures[],
  check: (ok: boolean) => string,
): void {
  const rows = measured
    .map((m, i) => ({ m, b: figures[i] }))
    .filter((x): x is { m: Measured; b: BindingFigures } => x.m.pool !== undefined && x.b !== undefined)
    .sort((x, y) => (x.m.pool?.size ?? 0) - (y.m.pool?.size ?? 0));
  const narrow = rows[0];
  const wide = rows[rows.length - 1];
  if (narrow === undefined || wide === undefined || narrow === wide) return;
  const poolRatio = (wide.m.pool?.size ?? 0) / (narrow.m.pool?.size ?? 1);
  const rateRatio = wide.b.sessionsPerSecond / narrow.b.sessionsPerSecond;
  const coreShare = (b: BindingFigures): number => (b.sessionsPerSecond * b.gatewayCpuMsPerSession) / 1e3;
  const scales = rateRatio >= 1 + 0.75 * (poolRatio - 1);
  const gatewayIdle = coreShare(wide.b) < 0.25;
  ctx.log(
    `${check(scales && gatewayIdle)}: ble is bounded by the adapter pool, not by the gateway: ` +
      `pool ${wide.m.pool?.size ?? 0} gives ${rateRatio.toFixed(2)}x the sessions/s of pool ${narrow.m.pool?.size ?? 0} ` +
      `(${wide.b.sessionsPerSecond.toFixed(1)} vs ${narrow.b.sessionsPerSecond.toFixed(1)}; ${poolRatio.toFixed(1)}x the pool), ` +
      `the gateway busy ${(coreShare(narrow.b) * 100).toFixed(1)} % / ${(coreShare(wide.b) * 100).toFixed(1)} % of one core ` +
      `(${narrow.b.gatewayCpuMsPerSession.toFixed(3)} / ${wide.b.gatewayCpuMsPerSession.toFixed(3)} ms/session); ` +
      `peak connections ${rows.map((x) => `${String(x.m.done.value?.peakConnections ?? "?")}/${x.m.pool?.size ?? 0}`).join(", ")}`,
  );
}
