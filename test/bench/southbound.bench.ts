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
 * Args: `--auth md5|hmac`, and binding names (`mqtt`, `http`, `serial`, `coap`) to run only those.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
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
import { startMosquitto, type Mosquitto } from "../helpers/mosquitto.js";
import { startPtyPair, type PtyPair } from "../helpers/pty.js";
import { BenchError, formatTable, type BenchContext, type BenchReport } from "./common.js";
import { loadShipped } from "./shipped.js";
import type { DevicesConfig, DevicesLine } from "./southbound-devices.js";

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

type Transport = "mqtt" | "http" | "serial" | "coap";

export interface BindingFigures {
  readonly transport: Transport;
  readonly sessionsPerSecond: number;
  readonly gatewayCpuMsPerSession: number;
  /** Peak RSS of this process during the timed run. */
  readonly gatewayRssMB: number;
  /** Serial: bytes/s on all lines together (both directions), and the configured baud rate. */
  readonly bytesPerSecond?: number;
  readonly baudRate?: number;
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
} as const;

const DEVICES_SCRIPT = fileURLToPath(new URL("./southbound-devices.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../", import.meta.url));

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

// ---- the device process ---------------------------------------------------------------------------

/** The device child process: started with a config, read until `ready`, stopped by its PID. */
class DeviceProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #lines: DevicesLine[] = [];
  #waiter: (() => void) | undefined;
  #stderr = "";
  readonly #killOnExit = (): void => {
    this.#child.kill("SIGKILL");
  };

  constructor(config: DevicesConfig) {
    this.#child = spawn(process.execPath, ["--import", "tsx", DEVICES_SCRIPT, JSON.stringify(config)], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "pipe"],
    });
    // A bench that dies must not leave the devices running.
    process.once("exit", this.#killOnExit);
    this.#exited = new Promise((resolve) => {
      this.#child.once("close", () => {
        process.off("exit", this.#killOnExit);
        this.#waiter?.();
        resolve();
      });
    });
    this.#child.stderr?.setEncoding("utf8");
    this.#child.stderr?.on("data", (s: string) => {
      this.#stderr = (this.#stderr + s).slice(-4000);
    });
    if (this.#child.stdout === null) throw new Error("the device process has no stdout");
    createInterface({ input: this.#child.stdout }).on("line", (line) => {
      try {
        this.#lines.push(JSON.parse(line) as DevicesLine);
      } catch {
        this.#stderr = `${this.#stderr}\n(stdout) ${line}`.slice(-4000);
      }
      this.#waiter?.();
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Every device's address, once the process says `ready`. */
  async ready(timeoutMs: number): Promise<Map<string, DeviceAddress>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (this.#lines.some((l) => "ready" in l)) break;
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
        throw new Error(`the device process exited before it was ready: ${this.#stderr}`);
      }
      if (Date.now() > until)
        throw new Error(`the device process was not ready in ${timeoutMs} ms: ${this.#stderr}`);
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 100);
      });
    }
    const addresses = new Map<string, DeviceAddress>();
    for (const l of this.#lines) if ("deviceId" in l) addresses.set(l.deviceId, l.address);
    return addresses;
  }

  /**
   * Ends stdin and sends SIGTERM to its PID (both stop the devices), waits for the exit (SIGKILL
   * after 10 s); resolves with the devices' own tally of their sessions, when it came.
   */
  async stop(): Promise<{ ok: number; failed: number; reasons: readonly string[] } | undefined> {
    const pid = this.#child.pid;
    if (this.#child.exitCode === null && this.#child.signalCode === null && pid !== undefined) {
      this.#child.stdin?.end();
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, 10_000);
      await this.#exited;
      clearTimeout(timer);
    }
    await this.#exited;
    for (const l of this.#lines) if ("done" in l) return l.done;
    return undefined;
  }
}

/** CPU ms a process has used (Linux /proc; undefined elsewhere or once it is gone). */
function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the command): ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
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
      const outcome = await g.execute(target, sessionCommands(next(), target.address.transport as Transport));
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
}

/** Runs `body` on a started binding and always tears it down (no process left behind). */
async function withBinding<T>(
  transport: Transport,
  dir: string,
  enrolment: Enrolment,
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
    return await body(await startBinding(transport, dir, enrolment, cleanups));
  } finally {
    await cleanup();
  }
}

async function startBinding(
  transport: Transport,
  dir: string,
  enrolment: Enrolment,
  cleanups: (() => Promise<void>)[],
): Promise<Setup> {
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
  readonly describe: string;
  readonly devices: number;
  readonly window: number;
  readonly run: Run;
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
    } else if (a === "mqtt" || a === "http" || a === "serial" || a === "coap") {
      transports.push(a);
    } else {
      throw new BenchError(
        `unknown argument ${String(a)} (southbound [mqtt] [http] [serial] [coap] [--auth md5|hmac] [--json])`,
      );
    }
  }
  return { scheme, transports: transports.length > 0 ? transports : ["mqtt", "http", "serial", "coap"] };
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
      const m = await withBinding(transport, dir, enrolment, async (s) => {
        const g = s.gateway;
        // Warm-up: every device twice (nonces settled from the zero ones), and a minimum time.
        await drive(g, transport === "serial" ? WARMUP_MS / 2 : WARMUP_MS, g.targets.length * 2, next);
        const r = await drive(g, MIN_MS, transport === "serial" ? 0 : MIN_SESSIONS, next);
        return { transport, describe: s.describe, devices: g.targets.length, window: g.window, run: r };
      });
      measured.push(m);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;
  const bindings: BindingFigures[] = measured.map((m) => {
    const r = m.run;
    const base = {
      transport: m.transport,
      sessionsPerSecond: round((r.sessions * 1e3) / r.ms, 1),
      gatewayCpuMsPerSession: round(r.cpuMs / r.sessions, 3),
      gatewayRssMB: round(r.peakRssMB, 1),
    };
    return m.transport === "serial" && r.lineBytes !== undefined
      ? { ...base, bytesPerSecond: Math.round((r.lineBytes * 1e3) / r.ms), baudRate: PLAN.serial.baudRate }
      : base;
  });

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
  for (const m of measured) ctx.log(`  ${m.transport}: ${m.describe}`);
  ctx.log("");
  const peerNames = ["devices", "mosquitto", "socat"];
  const rows = measured.map((m, i) => {
    const r = m.run;
    const b = bindings[i];
    const peer = (name: string): string => {
      if (!r.peerCpuMs.has(name)) return "-";
      const v = r.peerCpuMs.get(name);
      return v === undefined ? "?" : (v / r.sessions).toFixed(3);
    };
    return [
      m.transport,
      String(m.devices),
      String(m.window),
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
      "sessions",
      "s",
      "sessions/s",
      "gw CPU ms/session",
      "sessions/gw-CPU-s",
      "gw RSS MB (peak)",
      ...peerNames.map((n) => `${n} CPU ms/session`),
    ],
    rows,
    [false, true, true, true, true, true, true, true, true, true, true, true],
  ))
    ctx.log(line);
  ctx.log("(CPU of other processes from /proc: 10 ms ticks; 'gw' = this process, the gateway side alone)");

  const check = (ok: boolean): string => (ok ? "pass" : "FAIL");
  ctx.log("");
  for (const b of bindings) {
    if (b.transport === "serial") {
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
