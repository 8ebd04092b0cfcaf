/**
 * Runtime bench (issue #8 goals): startup to READY <= 1.5 s and idle RSS <= 80 MB with 1,000
 * devices in the inventory.
 *
 *   seed      this process, from the tsc output in dist/: `startGateway` on the bench's config (sim
 *             board, a temp state dir), `--devices` HTTP devices provisioned through the southbound
 *             (accounts, inventory records, the GwMO inventory nodes), stopped; the alert outbox is
 *             emptied, as a server that had received the attach alerts would have left it
 *   gateway   a child process, `node <flags> dist/src/main.js run --config <file>` (through
 *             `runService` of dist/src/cli/run.js when main.js has no `run` yet), with NOTIFY_SOCKET
 *             pointing at a fake sd_notify socket (test/helpers/notify-socket.ts); the http and coap
 *             drivers, the UDP push listener, the control socket and metrics, one DM server (never
 *             contacted: no check-in, no alerts waiting). Node runs as the unit runs it: the node
 *             options of systemd/dmgw.service (ExecStart's, and Environment=NODE_OPTIONS=), since
 *             V8's heap sizing there decides much of the idle RSS
 *   readyMs   from spawn() to the READY=1 datagram, as systemd (Type=notify) would time it; the
 *             median of `--runs` runs (default 3), each on the same seeded file
 *   idleRssMB VmRSS of /proc/<pid>/status `--settle-ms` (default 5000) after READY, median of runs
 *
 * Each child gets SIGTERM at the end and must exit 0 (a WARNING otherwise).
 *
 * Args: `--devices N` (default 1000), `--runs R` (default 3), `--settle-ms MS` (default 5000),
 * `--unit FILE` (default systemd/dmgw.service: whose node options to run with).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as SchemaModule from "../../src/config/schema.js";
import type * as GatewayModule from "../../src/runtime/gateway.js";
import type * as StoreModule from "../../src/tree/store.js";
import { start as startNotifySocket } from "../helpers/notify-socket.js";
import { BenchError, formatTable, type BenchContext, type BenchReport } from "./common.js";
import { distFile, loadShipped } from "./shipped.js";

const { parseConfig } = await loadShipped<typeof SchemaModule>("config/schema.js");
const { startGateway } = await loadShipped<typeof GatewayModule>("runtime/gateway.js");
const { Store } = await loadShipped<typeof StoreModule>("tree/store.js");

export interface RuntimeReport extends BenchReport {
  readonly bench: "runtime";
  readonly readyMs: number;
  readonly idleRssMB: number;
  readonly inventoryDevices: number;
}

const GOALS = { readyMs: 1500, idleRssMB: 80 } as const;
const UNIT = fileURLToPath(new URL("../../systemd/dmgw.service", import.meta.url));
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 20_000;

interface Args {
  readonly devices: number;
  readonly runs: number;
  readonly settleMs: number;
  /** The unit whose node options the child runs with. */
  readonly unit: string;
}

function parseArgs(args: readonly string[]): Args {
  const out = { devices: 1000, runs: 3, settleMs: 5000, unit: UNIT };
  for (let i = 0; i < args.length; i += 2) {
    const key = args[i];
    if (key === "--unit") {
      out.unit = args[i + 1] ?? UNIT;
      continue;
    }
    const value = Number(args[i + 1]);
    if (!Number.isInteger(value) || value < 0) throw new BenchError(`${String(key)} needs a whole number`);
    if (key === "--devices") out.devices = value;
    else if (key === "--runs") out.runs = Math.max(1, value);
    else if (key === "--settle-ms") out.settleMs = value;
    else
      throw new BenchError(
        `unknown argument ${String(key)} (--devices N, --runs R, --settle-ms MS, --unit FILE)`,
      );
  }
  return out;
}

/** The bench's config file: everything on loopback, port 0, state and runtime in `dir`. */
function configText(dir: string): string {
  return JSON.stringify(
    {
      board: "sim",
      paths: { state: join(dir, "state"), runtime: join(dir, "run") },
      identity: { devId: "IMEI:356938035643809", man: "dmgw-bench" },
      servers: [
        {
          serverId: "dmsrv",
          uri: "http://127.0.0.1:9/dm",
          clientAuth: { scheme: "md5", name: "gw", secret: "bench-client" },
          serverAuth: { scheme: "md5", name: "dmsrv", secret: "bench-server" },
          checkInSeconds: 0,
        },
      ],
      northbound: { udpPush: { host: "127.0.0.1", port: 0 } },
      southbound: {
        gatewayServerId: "dmgw-bench",
        drivers: { http: { host: "127.0.0.1", port: 0 }, coap: { host: "127.0.0.1", port: 0 } },
      },
      metrics: { port: 0 },
      log: { level: "info", format: "json" },
    },
    null,
    2,
  );
}

/** Provisions `devices` devices on a gateway started from `file`'s config, then empties the outbox. */
async function seed(dir: string, devices: number): Promise<void> {
  const config = parseConfig(JSON.parse(configText(dir)), { env: {} });
  const gw = await startGateway(config, { env: {} });
  let provisioned: unknown;
  try {
    const { south, tree } = gw.parts;
    tree.transaction(() => {
      for (let i = 0; i < devices; i++) {
        const id = `meter-${String(i).padStart(5, "0")}`;
        south.provision({
          deviceId: id,
          address: {
            transport: "http",
            address: `udp://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:2948`,
          },
          account: {
            deviceId: id,
            serverId: "dmgw-bench",
            clientAuth: { scheme: "hmac", name: id, secret: `dev-${id}` },
            serverAuth: { scheme: "hmac", name: "dmgw-bench", secret: `gw-${id}` },
          },
        });
      }
    });
  } catch (e) {
    provisioned = e;
  }
  const report = await gw.stop();
  if (provisioned !== undefined)
    throw new BenchError("provisioning the devices failed", { cause: provisioned });
  if (!report.ok)
    throw new BenchError(`the seeding gateway did not stop cleanly: ${JSON.stringify(report.failed)}`);
  const store = Store.open(config.paths.db);
  try {
    const left = store.db.prepare("SELECT count(*) FROM device").pluck().get();
    if (left !== devices) throw new BenchError(`the inventory holds ${String(left)} devices, not ${devices}`);
    store.db.exec("DELETE FROM alert_outbox");
  } finally {
    store.close();
  }
}

/**
 * The node options systemd/dmgw.service runs the gateway with: ExecStart's flags between the node
 * binary and the script, and the value of `Environment=NODE_OPTIONS=`. None without the unit file.
 */
export function unitNodeOptions(unitText: string): { flags: string[]; nodeOptions: string | undefined } {
  const flags: string[] = [];
  let nodeOptions: string | undefined;
  for (const line of unitText.split("\n")) {
    const exec = /^ExecStart=\S*node\s+(.*)$/.exec(line.trim());
    if (exec !== null) {
      for (const token of (exec[1] ?? "").split(/\s+/)) {
        if (!token.startsWith("--")) break;
        flags.push(token);
      }
    }
    // Environment=NODE_OPTIONS=a, Environment=NODE_OPTIONS="a b" and Environment="NODE_OPTIONS=a b".
    const env = /^Environment="?NODE_OPTIONS=("?)(.*?)\1"?$/.exec(line.trim());
    if (env !== null) nodeOptions = env[2];
  }
  return { flags, nodeOptions };
}

/** The arguments of `node` that run the built `dmgw run` on `configFile` with the unit's flags. */
export function runCommand(configFile: string, flags: readonly string[]): string[] {
  return [...flags, distFile("main.js"), "run", "--config", configFile];
}

/**
 * The environment `dmgw run` gets as the unit gives it: NODE_OPTIONS from the unit (or none), and
 * none of this shell's DMGW_DATA, NOTIFY_SOCKET or WATCHDOG_USEC unless `extra` sets them.
 */
export function gatewayEnv(
  nodeOptions: string | undefined,
  extra: Readonly<Record<string, string>> = {},
): NodeJS.ProcessEnv {
  const dropped = new Set(["DMGW_DATA", "NOTIFY_SOCKET", "WATCHDOG_USEC", "NODE_OPTIONS"]);
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !dropped.has(name)),
  );
  if (nodeOptions !== undefined) env["NODE_OPTIONS"] = nodeOptions;
  return { ...env, ...extra };
}

/** A memory figure of a process from /proc/PID/status (`VmRSS` now, `VmHWM` its peak), MB. */
export function procStatusMB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, "m").exec(status)?.[1];
  if (kb === undefined) throw new BenchError(`no ${field} for ${pid}`);
  return Number(kb) / 1024;
}

interface RunFigures {
  readonly readyMs: number;
  readonly idleRssMB: number;
  readonly exitCode: number | null;
}

interface NodeSetup {
  readonly flags: readonly string[];
  readonly nodeOptions: string | undefined;
}

async function runOnce(
  configFile: string,
  node: NodeSetup,
  settleMs: number,
  warn: (line: string) => void,
): Promise<RunFigures> {
  const notify = await startNotifySocket();
  try {
    const env = gatewayEnv(node.nodeOptions, { NOTIFY_SOCKET: notify.path });
    const t0 = performance.now();
    const child = spawn(process.execPath, runCommand(configFile, node.flags), {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pid = child.pid;
    if (pid === undefined) throw new BenchError("the gateway did not start");
    let output = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (s: string) => {
      output = (output + s).slice(-8000);
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (s: string) => {
      output = (output + s).slice(-8000);
    });
    const exited = new Promise<number | null>((resolve) => {
      child.once("close", (code) => {
        resolve(code);
      });
    });
    try {
      await notify.waitFor((m) => m.split("\n").includes("READY=1"), READY_TIMEOUT_MS);
    } catch {
      child.kill("SIGKILL");
      await exited;
      throw new BenchError(`no READY=1 within ${READY_TIMEOUT_MS} ms; the gateway said:\n${output}`);
    }
    const readyMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, settleMs));
    const idleRssMB = procStatusMB(pid, "VmRSS");
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      warn(`the gateway did not stop within ${STOP_TIMEOUT_MS} ms: killed`);
      child.kill("SIGKILL");
    }, STOP_TIMEOUT_MS);
    const exitCode = await exited;
    clearTimeout(timer);
    if (exitCode !== 0) warn(`the gateway exited ${String(exitCode)} after SIGTERM:\n${output}`);
    return { readyMs, idleRssMB, exitCode };
  } finally {
    await notify.stop();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export async function run(ctx: BenchContext): Promise<RuntimeReport> {
  const args = parseArgs(ctx.args);
  const dir = mkdtempSync(join(tmpdir(), "dmgw-bench-runtime-"));
  try {
    const configFile = join(dir, "config.json");
    writeFileSync(configFile, configText(dir));
    ctx.log(`seeding ${args.devices} devices ...`);
    await seed(dir, args.devices);
    const node: NodeSetup = existsSync(args.unit)
      ? unitNodeOptions(readFileSync(args.unit, "utf8"))
      : { flags: [], nodeOptions: undefined };
    ctx.log(
      `node as ${args.unit} runs it: flags ${node.flags.join(" ") || "(none)"}, ` +
        `NODE_OPTIONS ${node.nodeOptions ?? "(unset)"}`,
    );
    const runs: RunFigures[] = [];
    for (let i = 0; i < args.runs; i++) runs.push(await runOnce(configFile, node, args.settleMs, ctx.warn));
    const report: RuntimeReport = {
      bench: "runtime",
      readyMs: Math.round(median(runs.map((r) => r.readyMs))),
      idleRssMB: Math.round(median(runs.map((r) => r.idleRssMB)) * 10) / 10,
      inventoryDevices: args.devices,
    };
    const table = formatTable(
      ["run", "ready ms", "idle RSS MB", "exit"],
      runs.map((r, i) => [String(i + 1), r.readyMs.toFixed(0), r.idleRssMB.toFixed(1), String(r.exitCode)]),
      [true, true, true, true],
    );
    for (const line of table) ctx.log(line);
    ctx.log(
      `median: READY after ${report.readyMs} ms (goal <= ${GOALS.readyMs}), idle RSS ${report.idleRssMB} MB ` +
        `(goal <= ${GOALS.idleRssMB}), ${report.inventoryDevices} devices in the inventory`,
    );
    if (report.readyMs > GOALS.readyMs)
      ctx.warn(`READY took ${report.readyMs} ms, over the ${GOALS.readyMs} ms goal`);
    if (report.idleRssMB > GOALS.idleRssMB)
      ctx.warn(`idle RSS ${report.idleRssMB} MB is over the ${GOALS.idleRssMB} MB goal`);
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
