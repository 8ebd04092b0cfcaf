/**
 * `dmgw demo`: the main job on an embedded default (issue #8). It runs the flow of design.md
 * section 1 on loopback (src/sim/demo.ts) and shows it: what starts, a progress bar per transport
 * while the job runs (the renderer of `dmgw fanout watch`), a table per transport of what each device
 * answered, and a summary. `--json` ends the output with one JSON object on its own line.
 *
 * Exit: 0 when every device succeeded, 1 when one did not (or the flow itself failed), 64 for a bad
 * option, 130 after SIGINT/SIGTERM. Everything started is stopped before it exits.
 */
import type { JobProgress } from "../runtime/observe.js";
import {
  DEFAULT_DEMO_DEVICES,
  DEMO_TRANSPORTS,
  DemoAborted,
  MAX_BLE_DEVICES,
  MAX_DEMO_DEVICES,
  MAX_SERIAL_DEVICES,
  checkTransports,
  planDevices,
  runDemoScenario,
  type BrokerChoice,
  type DemoReport,
  type DemoTransport,
} from "../sim/demo.js";
import { parseCliArgs, usageError } from "./args.js";
import { table, type CliIo } from "./control.js";
import { ExitCode } from "./exit-codes.js";
import { progressBars } from "./fanout.js";

export const DEMO_USAGE = `usage: dmgw demo [--devices N] [--transports LIST] [--broker auto|mosquitto|embedded] [--json]
  runs the GwMO fan-out on loopback with no configuration: a DM Server simulator, the gateway on
  the sim board (its state in a temporary directory) and simulated end devices on every transport
  whose peer is available; the server creates a group of every device and a job (Get
  ./DevDetail/FwV, Replace ./3/0/14, Exec ./3/0/4), the gateway runs it and alerts the server, the
  server reads the results
  --devices N        devices in all, spread over the transports (default ${DEFAULT_DEMO_DEVICES}, at most ${MAX_DEMO_DEVICES});
                     serial takes at most ${MAX_SERIAL_DEVICES} (one socat each), ble at most ${MAX_BLE_DEVICES}
  --transports LIST  some of ${DEMO_TRANSPORTS.join(",")} (default: every one this machine can run)
  --broker B         MQTT: auto (mosquitto when installed, else the embedded broker), mosquitto, embedded
  --json             end with one JSON line: {devices, succeeded, failed, seconds, alertAcknowledged, transports}
  exit: 0 every device succeeded, 1 not all did, 64 usage, 130 interrupted`;

const BROKERS: readonly BrokerChoice[] = ["auto", "mosquitto", "embedded"];
/** 128 + SIGINT, as a shell reports a process that SIGINT ended. */
const EXIT_INTERRUPTED = 130;
const INTERRUPT_GRACE_MS = 1000;
const COMMAND_NAMES = ["GET FWV", "REPLACE", "EXEC"] as const;

export async function runDemo(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCliArgs(
    args,
    {
      devices: { type: "string" },
      transports: { type: "string" },
      broker: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
    DEMO_USAGE,
  );
  if (values.help === true) {
    io.stdout.write(`${DEMO_USAGE}\n`);
    return ExitCode.Ok;
  }
  if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0] ?? ""}"`);
  const devices = deviceCount(values.devices);
  const broker = brokerOf(values.broker);
  const asked = transportsOf(values.transports);
  const checks = checkTransports(broker);
  const runnable = checks
    .filter((c) => (asked ?? DEMO_TRANSPORTS).includes(c.transport) && c.missing === undefined)
    .map((c) => c.transport);
  if (runnable.length === 0) {
    const why = checks
      .filter((c) => c.missing !== undefined)
      .map((c) => `${c.transport} skipped: ${c.missing ?? ""}`);
    throw usage(`none of the transports asked for can run here\n${why.join("\n")}`);
  }
  try {
    planDevices(devices, runnable);
  } catch (e) {
    throw usage(e instanceof Error ? e.message : String(e));
  }

  const out = io.stdout;
  const tty = out.isTTY === true;
  out.write(`dmgw demo: a GwMO fan-out on loopback, ${devices} simulated devices\n`);
  for (const c of checks) {
    if (asked !== undefined && !asked.includes(c.transport)) continue;
    if (c.missing !== undefined) out.write(`${c.transport} skipped: ${c.missing}\n`);
  }

  const controller = new AbortController();
  const onSignal = (): void => {
    controller.abort();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const progress = tty ? barsView(io) : plainView(io);
  let report: DemoReport;
  try {
    report = await runDemoScenario({
      devices,
      ...(asked !== undefined && { transports: asked }),
      broker,
      signal: controller.signal,
      onStep: (line) => {
        out.write(`· ${line}\n`);
      },
      onProgress: progress,
    });
  } catch (e) {
    if (e instanceof DemoAborted) {
      io.stderr.write("dmgw demo: interrupted; everything it started was stopped\n");
      // Everything is stopped, but a device operation the stopped gateway abandoned mid-job may
      // still hold its deadline timer (up to the job's DeviceTimeout): leave after a short grace
      // rather than make the user wait for it. Unref'd: a process with nothing left exits at once.
      setTimeout(() => {
        process.exit(EXIT_INTERRUPTED);
      }, INTERRUPT_GRACE_MS).unref();
      return EXIT_INTERRUPTED;
    }
    io.stderr.write(`dmgw demo: ${e instanceof Error ? e.message : String(e)}\n`);
    if (values.json === true)
      out.write(`${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n`);
    return ExitCode.Failure;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  out.write(renderReport(report));
  if (values.json === true) out.write(`${JSON.stringify(jsonReport(report))}\n`);
  return report.failed === 0 && report.devices > 0 ? ExitCode.Ok : ExitCode.Failure;
}

/** The tables (one per transport) and the summary. */
export function renderReport(r: DemoReport): string {
  let text = "";
  for (const [transport, summary] of r.transports) {
    const rows = r.outcomes
      .filter((o) => o.transport === transport)
      .map((o) => [
        o.deviceId,
        o.fwV ?? "-",
        ...COMMAND_NAMES.map((_, i) => (o.statuses[i] === undefined ? "-" : String(o.statuses[i]))),
        o.applied ? "yes" : "no",
        o.ok ? "ok" : "FAILED",
      ]);
    text += `\n${transport} (${summary.peer}): ${summary.succeeded}/${summary.devices} succeeded\n`;
    text += table([["DEVICE", "FWV", ...COMMAND_NAMES, "APPLIED", "RESULT"], ...rows]);
  }
  for (const [transport, why] of r.skipped) text += `\n${transport} skipped: ${why}\n`;
  text += `\njob ${r.jobStatus}: ${r.devices} devices, ${r.succeeded} succeeded, ${r.failed} failed in ${r.seconds.toFixed(1)} s`;
  text += `; completion alert ${r.alertAcknowledged ? "acknowledged by the server" : "NOT acknowledged"}\n`;
  if (r.failed > 0 && r.warnings.length > 0) {
    text += `the gateway's last warnings:\n${r.warnings.map((w) => `  ${w}`).join("\n")}\n`;
  }
  return text;
}

/** `--json`'s object. */
export function jsonReport(r: DemoReport): Record<string, unknown> {
  const transports: Record<string, unknown> = {};
  for (const [t, s] of r.transports)
    transports[t] = { devices: s.devices, succeeded: s.succeeded, failed: s.failed, peer: s.peer };
  for (const [t, why] of r.skipped) transports[t] = { skipped: why };
  return {
    devices: r.devices,
    succeeded: r.succeeded,
    failed: r.failed,
    seconds: Math.round(r.seconds * 100) / 100,
    alertAcknowledged: r.alertAcknowledged,
    jobStatus: r.jobStatus,
    transports,
  };
}

/** Bars redrawn in place (the cursor goes back up over the lines drawn last time). */
function barsView(io: CliIo): (p: JobProgress) => void {
  let drawn = 0;
  return (p) => {
    const lines = progressBars(p, io.stdout.columns ?? 80);
    let text = drawn > 0 ? `\x1b[${drawn}A` : "";
    for (const line of lines) text += `\x1b[2K${line}\n`;
    io.stdout.write(text);
    drawn = lines.length;
  };
}

/**
 * Plain lines for a pipe or a log: a transport's line when it has done another tenth of its devices,
 * and when it is done, so a large run stays a few lines per transport.
 */
function plainView(io: CliIo): (p: JobProgress) => void {
  const printed = new Map<string, number>();
  return (p) => {
    for (const [transport, t] of Object.entries(p.byTransport).sort(([a], [b]) => a.localeCompare(b))) {
      const last = printed.get(transport);
      const step = Math.max(1, Math.ceil(t.total / 10));
      if (last === t.done || (t.done < t.total && last !== undefined && t.done - last < step)) continue;
      if (last === undefined && t.done === 0) {
        printed.set(transport, 0);
        continue;
      }
      printed.set(transport, t.done);
      io.stdout.write(`${transport} ${t.done}/${t.total} ok ${t.succeeded} failed ${t.failed}\n`);
    }
  };
}

function deviceCount(text: string | undefined): number {
  if (text === undefined) return DEFAULT_DEMO_DEVICES;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > MAX_DEMO_DEVICES)
    throw usage(`--devices takes a whole number 1..${MAX_DEMO_DEVICES}, not "${text}"`);
  return n;
}

function brokerOf(text: string | undefined): BrokerChoice {
  if (text === undefined) return "auto";
  const b = BROKERS.find((x) => x === text);
  if (b === undefined) throw usage(`--broker takes ${BROKERS.join(", ")}, not "${text}"`);
  return b;
}

function transportsOf(text: string | undefined): DemoTransport[] | undefined {
  if (text === undefined) return undefined;
  const names = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (names.length === 0) throw usage(`--transports takes some of ${DEMO_TRANSPORTS.join(",")}`);
  const out: DemoTransport[] = [];
  for (const name of names) {
    const t = DEMO_TRANSPORTS.find((x) => x === name);
    if (t === undefined)
      throw usage(`unknown transport "${name}" in --transports (known: ${DEMO_TRANSPORTS.join(", ")})`);
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

function usage(message: string): Error {
  return usageError(message, DEMO_USAGE);
}
