/**
 * Fan-out bench (issue #7 goals on 2 cores): one job over a group of simulated devices on several
 * transports, from the Exec of `<job>/FanOut/Start` to the job's last result and its 1226 alert.
 *
 *   gateway   this process, from the tsc output in dist/: a Store file in a temp dir (WAL,
 *             synchronous as shipped), the tree with the standard and GwMO MOs, the alert outbox,
 *             Southbound with the http and mqtt proxy drivers and the coap adaptation driver, the
 *             inventory mirror, and the FanoutEngine. The group and the job are made by the DM
 *             command executor as a server's message would make them (one transaction each), the
 *             job started by its Exec; results land in the tree as the engine writes them.
 *   fleet     one child process (southbound-devices.ts with a list of bindings): MqttDeviceFleet,
 *             HttpDeviceFleet (a UDP socket per device for the WSP Push), Lwm2mFleet; mosquitto is
 *             its own process. Every device waits `--latency-ms` before each message it sends (a
 *             proxy device) or each answer (an LwM2M client).
 *   commands  `--commands K` Gets of DevInfo leaves (Man, Mod, FwV, DevId in turn): the leaves both a
 *             DM device and an LwM2M client (through the DM <-> LwM2M mapping) answer, so one job
 *             runs on every transport. Every device must answer every Get 200 or the bench fails.
 *   ideal     what the job would take if the gateway cost nothing: waves of `--concurrency`
 *             devices, each wave `roundTrips x latency`, where roundTrips is the messages a device
 *             waits `latency` before: 2 for a proxy session (Package 1 and 3), K for an LwM2M
 *             client (one exchange a command); the mean over the job's devices.
 *   figures   seconds from the Exec to the job's end; devices/s; the gateway's CPU over that time
 *             per device (process.cpuUsage); the gateway's peak RSS, sampled every 100 ms from
 *             before the store opens to after the job (the issue's "throughout").
 *
 * Args: `--devices N` (default 10000), `--transports a,b,c` (mqtt, http, coap; default all three),
 * `--latency-ms L` (default 0), `--concurrency C` (default 500), `--commands K` (default 2).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceAddress } from "../../drivers/driver.js";
import type * as CoapDriverModule from "../../drivers/coap/driver.js";
import type * as HttpDriverModule from "../../drivers/http/driver.js";
import type * as MqttDriverModule from "../../drivers/mqtt/driver.js";
import type * as CommandExecutorModule from "../../src/dm/command-executor.js";
import type * as EngineModule from "../../src/fanout/engine.js";
import type * as InventoryModule from "../../src/mo/gwmo-inventory.js";
import type * as GwmoModule from "../../src/mo/gwmo.js";
import type * as StandardModule from "../../src/mo/standard.js";
import type * as OutboxModule from "../../src/northbound/outbox.js";
import type * as AccountsModule from "../../src/southbound/device-accounts.js";
import type { Enrolment } from "../../src/southbound/device-accounts.js";
import type * as SouthboundModule from "../../src/southbound/southbound.js";
import type * as SyncmlModule from "../../src/syncml/index.js";
import type { Command } from "../../src/syncml/index.js";
import type * as StoreModule from "../../src/tree/store.js";
import type * as TreeModule from "../../src/tree/tree.js";
import { testIdentity } from "../helpers/gateway.js";
import { startMosquitto, type Mosquitto } from "../helpers/mosquitto.js";
import { BenchError, formatTable, type BenchContext, type BenchReport } from "./common.js";
import { DeviceProcess, processCpuMs } from "./device-process.js";
import { loadShipped } from "./shipped.js";
import type { DevicesConfig } from "./southbound-devices.js";

const { Store } = await loadShipped<typeof StoreModule>("tree/store.js");
const { DmTree } = await loadShipped<typeof TreeModule>("tree/tree.js");
const { standardMoPlugins } = await loadShipped<typeof StandardModule>("mo/standard.js");
const { gwmoPlugins } = await loadShipped<typeof GwmoModule>("mo/gwmo.js");
const { mirrorInventory } = await loadShipped<typeof InventoryModule>("mo/gwmo-inventory.js");
const { AlertOutbox } = await loadShipped<typeof OutboxModule>("northbound/outbox.js");
const { Southbound } = await loadShipped<typeof SouthboundModule>("southbound/southbound.js");
const { enrolledAccount } = await loadShipped<typeof AccountsModule>("southbound/device-accounts.js");
const { FanoutEngine } = await loadShipped<typeof EngineModule>("fanout/engine.js");
const { executeCommands } = await loadShipped<typeof CommandExecutorModule>("dm/command-executor.js");
const { decodeCommandFragment } = await loadShipped<typeof SyncmlModule>("syncml/index.js");
const { HttpDriver } = await loadShipped<typeof HttpDriverModule>("../drivers/http/driver.js");
const { MqttDriver } = await loadShipped<typeof MqttDriverModule>("../drivers/mqtt/driver.js");
const { CoapDriver } = await loadShipped<typeof CoapDriverModule>("../drivers/coap/driver.js");

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
  /** The fleet process's CPU over the job, ms per device (the other side of the 2 cores). */
  readonly fleetCpuMsPerDevice: number | null;
  readonly status: string;
}

const SERVER_ID = "dmsrv-bench";
const GW_ID = "dmgw-bench";
const JOB = "./GwMO/Fanout/bench";
const GROUP = "./GwMO/Config/Groups/bench";
const RSS_SAMPLE_MS = 100;
const LEAVES = ["Man", "Mod", "FwV", "DevId"] as const;

interface Args {
  readonly devices: number;
  readonly transports: readonly Transport[];
  readonly latencyMs: number;
  readonly concurrency: number;
  readonly commands: number;
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
  };
}

function jobCommands(k: number): string {
  return Array.from(
    { length: k },
    (_, i) =>
      `<Get><CmdID>${i + 1}</CmdID><Item><Target><LocURI>./DevInfo/${LEAVES[i % LEAVES.length] ?? "Man"}</LocURI></Target></Item></Get>`,
  ).join("");
}

/** Device ids of one transport: `<t>-00001`... */
function idsOf(transport: Transport, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${transport}-${String(i + 1).padStart(5, "0")}`);
}

const add = (cmdId: number, uri: string, format: string, text: string): Command => ({
  kind: "Add",
  cmdId: String(cmdId),
  items: [{ target: { locUri: uri }, meta: { format }, data: { kind: "text", text } }],
});

export async function run(ctx: BenchContext): Promise<FanoutReport> {
  const a = parseArgs(ctx.args);
  // The devices split evenly over the transports, the first ones taking the remainder.
  const share = new Map<Transport, number>(
    a.transports.map((t, i) => [
      t,
      Math.floor(a.devices / a.transports.length) + (i < a.devices % a.transports.length ? 1 : 0),
    ]),
  );
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, RSS_SAMPLE_MS);
  const cleanups: (() => Promise<void> | void)[] = [];
  const dir = mkdtempSync(join(tmpdir(), "dmgw-bench-fanout-"));
  cleanups.push(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const enrolment: Enrolment = { secret: `bench-${process.pid}`, scheme: "md5", serverId: GW_ID };
    const store = Store.open(join(dir, "dmgw.db"));
    cleanups.push(() => {
      store.close();
    });
    const late: { engine?: EngineModule.FanoutEngine; south?: SouthboundModule.Southbound } = {};
    const tree = new DmTree(store, {
      plugins: [
        ...standardMoPlugins(testIdentity("IMEI:bench"), []),
        ...gwmoPlugins({
          serverIds: [SERVER_ID],
          deviceExists: (id) => late.south?.registry.get(id) !== undefined,
          control: () => late.engine,
        }),
      ],
    });
    tree.seed();
    const outbox = new AlertOutbox(store, { maxCount: 1_000_000, maxBytes: 1 << 30 });
    const south = new Southbound({ store, outbox, alertServers: () => [SERVER_ID] });
    late.south = south;
    cleanups.push(() => south.stop());
    const stopMirror = mirrorInventory(tree, south.registry);
    cleanups.push(stopMirror);
    const driversAbort = new AbortController();
    cleanups.push(() => {
      driversAbort.abort();
    });

    // The gateway's side of each binding, then the fleet's, in one child process.
    const fleet: DevicesConfig[] = [];
    const peers: { name: string; pid: number | undefined }[] = [];
    const proxyIds: string[] = [];
    let broker: Mosquitto | undefined;
    let coapPort: number | undefined;
    for (const t of a.transports) {
      const n = share.get(t) ?? 0;
      if (n === 0) continue;
      const latency = a.latencyMs > 0 ? { latencyMs: a.latencyMs } : {};
      switch (t) {
        case "mqtt": {
          broker = await startMosquitto();
          const b = broker;
          cleanups.push(() => b.stop());
          peers.push({ name: "mosquitto", pid: b.pid });
          const driver = new MqttDriver(
            { url: b.url, clientId: `dmgw-bench-${process.pid}` },
            south.driverContext("mqtt", driversAbort.signal),
          );
          south.addDriver(driver);
          await driver.start();
          fleet.push({
            transport: "mqtt",
            enrolment,
            url: b.url,
            count: n,
            idPrefix: "mqtt-",
            connections: Math.min(8, n),
            ...latency,
          });
          break;
        }
        case "http": {
          const driver = new HttpDriver(
            { host: "127.0.0.1", port: 0 },
            south.driverContext("http", driversAbort.signal),
          );
          south.addDriver(driver);
          await driver.start();
          fleet.push({
            transport: "http",
            enrolment,
            gatewayUrl: driver.url,
            deviceIds: idsOf("http", n),
            ...latency,
          });
          break;
        }
        case "coap": {
          const driver = new CoapDriver(
            { host: "127.0.0.1", port: 0 },
            south.adaptationContext("coap", driversAbort.signal),
          );
          south.addAdaptationDriver(driver);
          await driver.start();
          coapPort = driver.port;
          fleet.push({
            transport: "coap",
            enrolment,
            server: { address: "127.0.0.1", port: driver.port },
            count: n,
            prefix: "coap-",
            ...latency,
          });
          break;
        }
      }
    }
    const devicesProcess = new DeviceProcess(fleet);
    cleanups.push(async () => {
      const tally = await devicesProcess.stop();
      if (tally !== undefined && tally.failed > 0)
        ctx.warn(`the devices report ${tally.failed} failed sessions: ${tally.reasons.join("; ")}`);
    });
    peers.push({ name: "fleet", pid: devicesProcess.pid });
    const addresses: Map<string, DeviceAddress> = await devicesProcess.ready(180_000);

    // Proxy devices are provisioned (their accounts are the enrolment's); LwM2M clients put
    // themselves in the inventory by registering.
    tree.transaction(() => {
      for (const [deviceId, address] of addresses) {
        if (address.transport === "coap") continue;
        proxyIds.push(deviceId);
        south.provision({ deviceId, address, account: enrolledAccount(deviceId, enrolment) });
      }
    });
    const until = Date.now() + 120_000;
    const coapIds = [...addresses].filter(([, ad]) => ad.transport === "coap").map(([id]) => id);
    while (coapIds.some((id) => south.registry.get(id)?.mode !== "adaptation")) {
      if (Date.now() > until) throw new BenchError("the LwM2M clients did not all register in 120 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const memberIds = [...addresses.keys()];
    ctx.log(
      `fleet ready: ${memberIds.length} devices (${[...share].map(([t, n]) => `${t} ${n}`).join(", ")})` +
        `${coapPort !== undefined ? `, coap on ${coapPort}` : ""}; latency ${a.latencyMs} ms, concurrency ${a.concurrency}, ${a.commands} commands`,
    );

    const engine = new FanoutEngine({
      tree,
      outbox,
      devices: (id) => south.endDevice(id),
      transportLimit: (t) => south.drivers.find((d) => d.kind === t)?.concurrency ?? Number.POSITIVE_INFINITY,
    });
    late.engine = engine;
    cleanups.push(() => engine.stop());

    /** DM commands as a server's message runs them: one transaction. */
    let msg = 1;
    const serverRuns = (commands: readonly Command[]): string[] => {
      let next = 1;
      msg++;
      const replies = tree.transaction(() =>
        executeCommands(commands, {
          tree,
          serverId: SERVER_ID,
          encoding: "xml",
          msgId: String(msg),
          nextCmdId: () => String(next++),
        }),
      );
      return replies.flatMap((r) => (r.kind === "Status" ? [r.data] : []));
    };
    const groupCodes = serverRuns([
      add(1, `${GROUP}/GroupID`, "chr", "bench"),
      ...memberIds.map((id, i) =>
        add(i + 2, `${GROUP}/Members/m${String(i).padStart(6, "0")}/DeviceID`, "chr", id),
      ),
    ]);
    if (groupCodes.some((c) => c !== "200"))
      throw new BenchError(`the group was refused: ${[...new Set(groupCodes)].join(" ")}`);
    const commandsXml = jobCommands(a.commands);
    const options: Record<string, string> = {
      Concurrency: String(a.concurrency),
      DeviceTimeout: String(Math.max(30_000, a.latencyMs * 40)),
      Retries: "0",
    };
    const setupCodes = serverRuns([
      add(1, `${JOB}/FanOut/FanOutCommands`, "xml", commandsXml),
      add(2, `${JOB}/FanOut/TargetGroupRef`, "chr", "bench"),
      // The job's Add made its options with their defaults: the server replaces them.
      ...Object.entries(options).map(
        ([name, text], i): Command => ({
          kind: "Replace",
          cmdId: String(i + 3),
          items: [{ target: { locUri: `${JOB}/Ext/Options/${name}` }, data: { kind: "text", text } }],
        }),
      ),
    ]);
    if (setupCodes.some((c) => c !== "200"))
      throw new BenchError(`the job was refused: ${[...new Set(setupCodes)].join(" ")}`);

    // The job: from the Exec to the journal saying finished (the last result and the alert committed).
    const jobState = store.db.prepare("SELECT state, status FROM fanout_job WHERE job_path = ?");
    const cpu0 = process.cpuUsage();
    const fleetCpu0 = processCpuMs(devicesProcess.pid);
    const t0 = performance.now();
    const [execCode] = serverRuns([
      {
        kind: "Exec",
        cmdId: "1",
        correlator: "bench",
        items: [{ target: { locUri: `${JOB}/FanOut/Start` } }],
      },
    ]);
    if (execCode !== "202") throw new BenchError(`the Exec of Start answered ${String(execCode)}, not 202`);
    let row: { state: string; status: string } | undefined;
    for (;;) {
      row = jobState.get(JOB) as { state: string; status: string } | undefined;
      if (row?.state === "finished") break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const fleetCpu1 = processCpuMs(devicesProcess.pid);
    await engine.idle();

    // Every device answered every Get 200: read back from the results the engine stored.
    const failures = checkResults(tree, memberIds.length, a.commands);
    if (failures.length > 0)
      throw new BenchError(
        `${failures.length} devices did not succeed, e.g. ${failures.slice(0, 3).join("; ")}`,
      );

    const n = memberIds.length;
    const roundTrips =
      [...share].reduce((sum, [t, count]) => sum + count * (t === "coap" ? a.commands : 2), 0) /
      Math.max(1, n);
    const idealSeconds =
      a.latencyMs === 0 ? null : Math.ceil(n / a.concurrency) * roundTrips * (a.latencyMs / 1000);
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
      gatewayRssMB: round(Math.max(peakRss, process.memoryUsage.rss()) / (1 << 20), 1),
      gatewayCpuMsPerDevice: round((cpu.user + cpu.system) / 1000 / n, 3),
      fleetCpuMsPerDevice:
        fleetCpu0 === undefined || fleetCpu1 === undefined ? null : round((fleetCpu1 - fleetCpu0) / n, 3),
      status: row.status,
    };
    printReport(ctx, report, peers);
    return report;
  } finally {
    clearInterval(sampler);
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
function checkResults(tree: TreeModule.DmTree, expected: number, commands: number): string[] {
  const names = tree.childNames(`${JOB}/Results`) ?? [];
  const problems: string[] = [];
  if (names.length !== expected) problems.push(`${names.length} results for ${expected} devices`);
  for (const name of names) {
    const id = text(tree, `${JOB}/Results/${name}/DeviceID`) ?? name;
    const xml = text(tree, `${JOB}/Results/${name}/DevResultXML`);
    if (xml === undefined) {
      problems.push(`${id}: no DevResultXML`);
      continue;
    }
    const decoded = decodeCommandFragment(xml, { allow: "replies" });
    if (!decoded.ok) {
      problems.push(`${id}: its result does not parse`);
      continue;
    }
    const statuses = decoded.value.filter((c) => c.kind === "Status" && c.cmd === "Get");
    const ok = statuses.filter((c) => c.kind === "Status" && c.data === "200").length;
    if (ok !== commands) problems.push(`${id}: ${ok} of ${commands} Gets answered 200`);
  }
  return problems;
}

function text(tree: TreeModule.DmTree, path: string): string | undefined {
  const v = tree.read(path)?.value;
  return v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function printReport(
  ctx: BenchContext,
  r: FanoutReport,
  peers: readonly { name: string; pid: number | undefined }[],
): void {
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
  ctx.log(`peers: ${peers.map((p) => `${p.name} (pid ${String(p.pid)})`).join(", ")}`);
  if (r.latencyMs === 0 && r.devicesPerSecond < 1000)
    ctx.warn(`${r.devicesPerSecond} devices/s is below the goal of 1,000 devices/s`);
  if (r.ratioToIdeal !== null && r.ratioToIdeal > 1.25)
    ctx.warn(`${r.ratioToIdeal}x the ideal time is above the goal of 1.25x`);
  if (r.gatewayRssMB > 150)
    ctx.warn(`the gateway's peak RSS ${r.gatewayRssMB} MB is above the goal of 150 MB`);
}
