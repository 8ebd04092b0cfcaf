/**
 * Fan-out bench (issue #7 goals on 2 cores): one job over a group of simulated devices on several
 * transports, from its start to its last result and its 1226 alert in the journal.
 *
 *   gateway   `dmgw run` (the built dist/src/main.js, plain node with systemd/dmgw.service's node
 *             options) in a child process of its own, so its RSS and CPU are the gateway's alone:
 *             the sim board, a state dir in a temp dir, the http and mqtt proxy drivers and the coap
 *             adaptation driver, the control socket. Before it starts, the bench seeds its store
 *             through the runtime itself (startGateway in this process, then stop): the proxy
 *             devices with the accounts the enrolment secret derives, the LwM2M endpoints as
 *             adaptation devices, and the group of them all (what an operator's provisioning and a
 *             server's Adds leave behind). The job starts and is watched through the control socket
 *             (`fanout.start`, `fanout.progress`), as `dmgw fanout start` does.
 *   fleet     child processes (southbound-devices.ts with a list of bindings): MqttDeviceFleet and
 *             HttpDeviceFleet (a UDP socket per device for the WSP Push) before the gateway starts
 *             (their addresses are seeded), Lwm2mFleet after (its clients register with it);
 *             mosquitto is its own process. Every device waits `--latency-ms` before each message it
 *             sends (a proxy device) or each answer (an LwM2M client).
 *   commands  `--commands K` Gets of DevInfo leaves (Man, Mod, FwV, DevId in turn): the leaves both a
 *             DM device and an LwM2M client (through the DM <-> LwM2M mapping) answer, so one job
 *             runs on every transport. Every device must answer every Get 200 or the bench fails.
 *   ideal     what the job would take if the gateway cost nothing: waves of `--concurrency`
 *             devices, each wave `roundTrips x latency`, where roundTrips is the messages a device
 *             waits `latency` before: 2 for a proxy session (Package 1 and 3), K for an LwM2M
 *             client (one exchange a command); the mean over the job's devices.
 *   figures   seconds = the journal's finished - created time of the job; devices/s; the gateway's
 *             CPU over the job per device (/proc/PID/stat); the gateway's peak RSS from its start to
 *             the job's end (VmHWM read then: start, registrations, the job), the issue's
 *             "throughout"; the bench's read-back of every result comes after.
 *
 * Args: `--devices N` (default 10000), `--transports a,b,c` (mqtt, http, coap; default all three),
 * `--latency-ms L` (default 0), `--concurrency C` (default 500), `--commands K` (default 2),
 * `--unit FILE` (default systemd/dmgw.service: whose node options the gateway runs with).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DeviceAddress } from "../../drivers/driver.js";
import type * as SchemaModule from "../../src/config/schema.js";
import type * as ControlClientModule from "../../src/runtime/control-client.js";
import type { FanoutResults } from "../../src/runtime/control-api.js";
import type * as GatewayModule from "../../src/runtime/gateway.js";
import type { JobProgress } from "../../src/runtime/observe.js";
import type * as AccountsModule from "../../src/southbound/device-accounts.js";
import type { Enrolment } from "../../src/southbound/device-accounts.js";
import type * as SyncmlModule from "../../src/syncml/index.js";
import { startMosquitto, type Mosquitto } from "../helpers/mosquitto.js";
import { BenchError, formatTable, type BenchContext, type BenchReport } from "./common.js";
import { DeviceProcess, processCpuMs } from "./device-process.js";
import { gatewayEnv, procStatusMB, runCommand, unitNodeOptions } from "./runtime.bench.js";
import { loadShipped } from "./shipped.js";
import type { DevicesConfig } from "./southbound-devices.js";

const { parseConfig } = await loadShipped<typeof SchemaModule>("config/schema.js");
const { startGateway } = await loadShipped<typeof GatewayModule>("runtime/gateway.js");
const { connectControl } = await loadShipped<typeof ControlClientModule>("runtime/control-client.js");
const { enrolledAccount } = await loadShipped<typeof AccountsModule>("southbound/device-accounts.js");
const { decodeCommandFragment } = await loadShipped<typeof SyncmlModule>("syncml/index.js");

type Transport = "mqtt" | "http" | "coap";
const TRANSPORTS: readonly Transport[] = ["mqtt", "coap", "http"];

export interface FanoutReport extends BenchReport {
  readonly bench: "fanout";
  readonly devices: number;
  readonly transports: readonly Transport[];
  readonly latencyMs: number;
  readonly concurrency: number;
  readonly commands: number;
  readonly seconds: number;
  readonly devicesPerSecond: number;
  /** null without device latency (the ideal is 0 s). */
  readonly idealSeconds: number | null;
  readonly ratioToIdeal: number | null;
  readonly gatewayRssMB: number;
  readonly gatewayCpuMsPerDevice: number;
  /** The fleet processes' CPU over the job, ms per device (the other side of the 2 cores). */
  readonly fleetCpuMsPerDevice: number | null;
  readonly status: string;
}

const SERVER_ID = "dmsrv-bench";
const GW_ID = "dmgw-bench";
const JOB = "bench";
const GROUP = "bench";
const LEAVES = ["Man", "Mod", "FwV", "DevId"] as const;
const UNIT = fileURLToPath(new URL("../../systemd/dmgw.service", import.meta.url));
const READY_TIMEOUT_MS = 60_000;

interface Args {
  readonly devices: number;
  readonly transports: readonly Transport[];
  readonly latencyMs: number;
  readonly concurrency: number;
  readonly commands: number;
  readonly unit: string;
}

function parseArgs(args: readonly string[]): Args {
  const value = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const text = value(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new BenchError(`--${name} must be an integer in ${min}..${max}, not "${text}"`);
    return n;
  };
  const list = value("transports")?.split(",") ?? [...TRANSPORTS];
  for (const t of list) {
    if (!(TRANSPORTS as readonly string[]).includes(t))
      throw new BenchError(`--transports: unknown transport "${t}" (known: ${TRANSPORTS.join(", ")})`);
  }
  return {
    devices: int("devices", 10_000, 1, 100_000),
    transports: [...new Set(list as Transport[])],
    latencyMs: int("latency-ms", 0, 0, 60_000),
    concurrency: int("concurrency", 500, 1, 10_000),
    commands: int("commands", 2, 1, 20),
    unit: value("unit") ?? UNIT,
  };
}

function jobCommands(k: number): string {
  return Array.from(
    { length: k },
    (_, i) =>
      `<Get><CmdID>${i + 1}</CmdID><Item><Target><LocURI>./DevInfo/${LEAVES[i % LEAVES.length] ?? "Man"}</LocURI></Target></Item></Get>`,
  ).join("");
}

/** Device ids of one transport: `<t>-00001`... (the LwM2M fleet names its own: `coap-<i>`). */
function idsOf(transport: Transport, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${transport}-${String(i + 1).padStart(5, "0")}`);
}

/** A loopback port nobody listens on now, of the protocol's kind (the gateway binds it just after). */
async function freePort(kind: "tcp" | "udp"): Promise<number> {
  if (kind === "tcp") {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    await new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
    if (address === null || typeof address === "string") throw new BenchError("no free TCP port");
    return address.port;
  }
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) =>
    socket.close(() => {
      resolve();
    }),
  );
  return port;
}

interface Ports {
  readonly http: number;
  readonly coap: number;
  readonly brokerUrl: string | undefined;
}

function configOf(dir: string, enrolment: Enrolment, ports: Ports, a: Args): Record<string, unknown> {
  const drivers: Record<string, unknown> = {};
  if (a.transports.includes("http")) drivers["http"] = { host: "127.0.0.1", port: ports.http };
  if (a.transports.includes("coap")) drivers["coap"] = { host: "127.0.0.1", port: ports.coap };
  if (ports.brokerUrl !== undefined)
    drivers["mqtt"] = { url: ports.brokerUrl, clientId: `dmgw-bench-${process.pid}` };
  return {
    board: "sim",
    paths: { state: join(dir, "state"), runtime: join(dir, "run") },
    identity: { devId: "IMEI:356938035643809", man: "dmgw-bench" },
    servers: [],
    northbound: { udpPush: false },
    southbound: {
      gatewayServerId: GW_ID,
      enrolment: { scheme: enrolment.scheme, secret: enrolment.secret },
      drivers,
    },
    log: { level: "warn", format: "json" },
  };
}

export async function run(ctx: BenchContext): Promise<FanoutReport> {
  const a = parseArgs(ctx.args);
  // The devices split evenly over the transports, the first ones taking the remainder.
  const share = new Map<Transport, number>(
    a.transports.map((t, i) => [
      t,
      Math.floor(a.devices / a.transports.length) + (i < a.devices % a.transports.length ? 1 : 0),
    ]),
  );
  const cleanups: (() => Promise<void> | void)[] = [];
  const dir = mkdtempSync(join(tmpdir(), "dmgw-bench-fanout-"));
  cleanups.push(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const enrolment: Enrolment = { secret: `bench-${process.pid}`, scheme: "md5", serverId: GW_ID };
    let broker: Mosquitto | undefined;
    if ((share.get("mqtt") ?? 0) > 0) {
      broker = await startMosquitto();
      const b = broker;
      cleanups.push(() => b.stop());
    }
    const httpPort = await freePort("tcp");
    const latency = a.latencyMs > 0 ? { latencyMs: a.latencyMs } : {};
    const deviceTimeoutMs = Math.max(30_000, a.latencyMs * 40);
    const fleets: DeviceProcess[] = [];
    const startFleet = async (configs: DevicesConfig[]): Promise<Map<string, DeviceAddress>> => {
      const fleet = new DeviceProcess(configs);
      fleets.push(fleet);
      cleanups.push(async () => {
        const tally = await fleet.stop();
        if (tally !== undefined && tally.failed > 0)
          ctx.warn(`the devices report ${tally.failed} failed sessions: ${tally.reasons.join("; ")}`);
      });
      return fleet.ready(180_000);
    };

    // The proxy devices first: their addresses go into the gateway's inventory.
    const proxyFleet: DevicesConfig[] = [];
    const nMqtt = share.get("mqtt") ?? 0;
    const nHttp = share.get("http") ?? 0;
    const nCoap = share.get("coap") ?? 0;
    if (nMqtt > 0 && broker !== undefined)
      proxyFleet.push({
        transport: "mqtt",
        enrolment,
        url: broker.url,
        count: nMqtt,
        idPrefix: "mqtt-",
        connections: Math.min(8, nMqtt),
        ...latency,
      });
    if (nHttp > 0)
      proxyFleet.push({
        transport: "http",
        enrolment,
        gatewayUrl: `http://127.0.0.1:${httpPort}/dm`,
        deviceIds: idsOf("http", nHttp),
        // As patient as the job (its DeviceTimeout): with both cores saturated by 10,000 devices,
        // some exchanges took longer than the simulator's default 10 s (README, fan-out bench).
        requestTimeoutMs: deviceTimeoutMs,
        ...latency,
      });
    // One process a binding: a single process for 10,000 devices lags behind its own sockets (an
    // HTTP device then misses the gateway's answer within its request timeout).
    const proxyAddresses = new Map<string, DeviceAddress>();
    for (const part of await Promise.all(proxyFleet.map((c) => startFleet([c]))))
      for (const [id, address] of part) proxyAddresses.set(id, address);
    const coapIds = Array.from({ length: nCoap }, (_, i) => `coap-${i}`);
    // The UDP port only now: the HTTP devices' thousands of UDP sockets are bound by this time.
    const ports: Ports = { http: httpPort, coap: await freePort("udp"), brokerUrl: broker?.url };

    // Seed the store through the runtime (no drivers: provisioning needs none).
    const config = configOf(dir, enrolment, ports, a);
    const seedConfig = parseConfig(
      { ...config, southbound: { ...(config["southbound"] as object), drivers: {} } },
      {
        env: {},
      },
    );
    const seeding = await startGateway(seedConfig, { env: {} });
    let seedError: unknown;
    try {
      const { south, tree } = seeding.parts;
      tree.transaction(() => {
        for (const [deviceId, address] of proxyAddresses)
          south.provision({ deviceId, address, account: enrolledAccount(deviceId, enrolment) });
        for (const id of coapIds)
          south.registry.seen({ deviceId: id, transport: "coap", mode: "adaptation", address: id });
      });
      const group = `./GwMO/Config/Groups/${GROUP}`;
      tree.transaction(() => {
        tree.write({ path: group, format: "node" });
        tree.write({ path: `${group}/GroupID`, format: "chr", value: GROUP });
        tree.write({ path: `${group}/Members`, format: "node" });
        [...proxyAddresses.keys(), ...coapIds].forEach((id, i) => {
          const member = `${group}/Members/m${String(i).padStart(6, "0")}`;
          tree.write({ path: member, format: "node" });
          tree.write({ path: `${member}/DeviceID`, format: "chr", value: id });
        });
      });
    } catch (e) {
      seedError = e;
    }
    const seeded = await seeding.stop();
    if (seedError !== undefined)
      throw new BenchError("seeding the gateway's store failed", { cause: seedError });
    if (!seeded.ok)
      throw new BenchError(`the seeding gateway did not stop cleanly: ${JSON.stringify(seeded.failed)}`);

    // The gateway, as systemd runs it.
    const configFile = join(dir, "config.json");
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    const node = unitNodeOptions(readFileSync(a.unit, "utf8"));
    const child = spawn(process.execPath, runCommand(configFile, node.flags), {
      env: gatewayEnv(node.nodeOptions),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pid = child.pid;
    if (pid === undefined) throw new BenchError("the gateway did not start");
    let output = "";
    const keep = (chunk: string): void => {
      output = (output + chunk).slice(-8000);
    };
    child.stdout.setEncoding("utf8").on("data", keep);
    child.stderr.setEncoding("utf8").on("data", keep);
    const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        const code = await exited;
        clearTimeout(timer);
        if (code !== 0) ctx.warn(`the gateway exited ${String(code)} after SIGTERM:\n${output}`);
      }
    });
    const socketPath = join(dir, "run", "dmgw.sock");
    const control = await (async () => {
      const until = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        try {
          return await connectControl(socketPath, { timeoutMs: 1000 });
        } catch {
          if (child.exitCode !== null)
            throw new BenchError(`the gateway exited ${child.exitCode}:\n${output}`);
          if (Date.now() > until)
            throw new BenchError(`the gateway's control socket did not answer:\n${output}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();
    cleanups.push(() => {
      control.close();
    });

    // The LwM2M clients register with the running gateway (start resolves once all have).
    if (nCoap > 0)
      await startFleet([
        {
          transport: "coap",
          enrolment,
          server: { address: "127.0.0.1", port: ports.coap },
          count: nCoap,
          prefix: "coap-",
          ...latency,
        },
      ]);
    const n = proxyAddresses.size + coapIds.length;
    ctx.log(
      `gateway pid ${pid}, fleet ready: ${n} devices (${[...share].map(([t, k]) => `${t} ${k}`).join(", ")}); latency ${a.latencyMs} ms, concurrency ${a.concurrency}, ${a.commands} commands`,
    );

    // The job, through the control socket.
    const cpu0 = processCpuMs(pid);
    const fleetCpu0 = fleets.map((f) => processCpuMs(f.pid));
    await control.request("fanout.start", {
      name: JOB,
      group: GROUP,
      commands: jobCommands(a.commands),
      serverId: SERVER_ID,
      options: { Concurrency: a.concurrency, DeviceTimeout: deviceTimeoutMs, Retries: 0 },
    });
    const jobPath = `./GwMO/Fanout/${JOB}`;
    let progress: JobProgress;
    for (;;) {
      progress = (await control.request("fanout.progress", { job: jobPath })) as JobProgress;
      if (progress.state === "finished") break;
      // The job's own journal times it (created, finished); polling only has to see the end, and
      // each poll is work for the gateway, as `dmgw fanout watch` is (its default interval is 1 s).
      await new Promise((r) => setTimeout(r, 500));
    }
    const cpu1 = processCpuMs(pid);
    const fleetCpu1 = fleets.map((f) => processCpuMs(f.pid));
    // The peak up to the job's end: reading 10,000 results back through the control socket (one
    // JSON answer of several MB) is the bench's check, not part of the job.
    const rssMB = procStatusMB(pid, "VmHWM");
    const results = (await control.request("fanout.results", { job: jobPath })) as FanoutResults;
    const failures = checkResults(results, n, a.commands);
    if (failures.length > 0)
      throw new BenchError(
        `${failures.length} devices did not succeed, e.g. ${failures.slice(0, 3).join("; ")}\nthe gateway's last log lines:\n${output.slice(-3000)}`,
      );
    const seconds = ((progress.finishedMs ?? Date.now()) - progress.createdMs) / 1000;

    const roundTrips =
      [...share].reduce((sum, [t, count]) => sum + count * (t === "coap" ? a.commands : 2), 0) /
      Math.max(1, n);
    const idealSeconds =
      a.latencyMs === 0 ? null : Math.ceil(n / a.concurrency) * roundTrips * (a.latencyMs / 1000);
    const fleetMs = fleets.reduce<number | null>((sum, _, i) => {
      const before = fleetCpu0[i];
      const after = fleetCpu1[i];
      return sum === null || before === undefined || after === undefined ? null : sum + after - before;
    }, 0);
    const report: FanoutReport = {
      bench: "fanout",
      devices: n,
      transports: a.transports,
      latencyMs: a.latencyMs,
      concurrency: a.concurrency,
      commands: a.commands,
      seconds: round(seconds, 3),
      devicesPerSecond: Math.round(n / seconds),
      idealSeconds: idealSeconds === null ? null : round(idealSeconds, 3),
      ratioToIdeal: idealSeconds === null ? null : round(seconds / idealSeconds, 3),
      gatewayRssMB: round(rssMB, 1),
      gatewayCpuMsPerDevice:
        cpu0 === undefined || cpu1 === undefined ? Number.NaN : round((cpu1 - cpu0) / n, 3),
      fleetCpuMsPerDevice: fleetMs === null ? null : round(fleetMs / n, 3),
      status: progress.status,
    };
    printReport(ctx, report, pid);
    return report;
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        ctx.warn(`cleanup: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
}

/** The devices whose stored result is not a 200 for each Get (at most a few named). */
function checkResults(results: FanoutResults, expected: number, commands: number): string[] {
  const problems: string[] = [];
  if (results.devices.length !== expected)
    problems.push(`${results.devices.length} results for ${expected} devices`);
  for (const d of results.devices) {
    if (d.resultXml === null) {
      problems.push(`${d.deviceId}: no result`);
      continue;
    }
    const decoded = decodeCommandFragment(d.resultXml, { allow: "replies" });
    if (!decoded.ok) {
      problems.push(`${d.deviceId}: its result does not parse`);
      continue;
    }
    const ok = decoded.value.filter((c) => c.kind === "Status" && c.cmd === "Get" && c.data === "200").length;
    if (ok !== commands) {
      // The first one says why (the gateway-made status and reason, or the device's own codes).
      const why =
        problems.length === 0
          ? ` (${d.resultXml
              .replace(/<[^>]+>/g, " ")
              .replace(/\s+/g, " ")
              .trim()
              .slice(0, 200)})`
          : "";
      problems.push(`${d.deviceId}: ${ok} of ${commands} Gets answered 200${why}`);
    }
  }
  return problems;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function printReport(ctx: BenchContext, r: FanoutReport, pid: number): void {
  const lines = formatTable(
    [
      "devices",
      "transports",
      "latency",
      "seconds",
      "devices/s",
      "ideal s",
      "ratio",
      "RSS MB",
      "CPU ms/dev",
      "status",
    ],
    [
      [
        String(r.devices),
        r.transports.join("+"),
        `${r.latencyMs} ms`,
        r.seconds.toFixed(2),
        String(r.devicesPerSecond),
        r.idealSeconds === null ? "-" : r.idealSeconds.toFixed(2),
        r.ratioToIdeal === null ? "-" : r.ratioToIdeal.toFixed(3),
        r.gatewayRssMB.toFixed(1),
        r.gatewayCpuMsPerDevice.toFixed(3),
        r.status,
      ],
    ],
    [false, false, true, true, true, true, true, true, true, false],
  );
  for (const line of lines) ctx.log(line);
  ctx.log(`gateway: dmgw run (pid ${pid}); fleet CPU ${String(r.fleetCpuMsPerDevice)} ms per device`);
  if (r.latencyMs === 0 && r.devicesPerSecond < 1000)
    ctx.warn(`${r.devicesPerSecond} devices/s is below the goal of 1,000 devices/s`);
  if (r.ratioToIdeal !== null && r.ratioToIdeal > 1.25)
    ctx.warn(`${r.ratioToIdeal}x the ideal time is above the goal of 1.25x`);
  if (r.gatewayRssMB > 150)
    ctx.warn(`the gateway's peak RSS ${r.gatewayRssMB} MB is above the goal of 150 MB`);
}
