/**
 * `dmgw fanout start|jobs|watch|results`: an operator's fan-out jobs, through the control socket.
 *
 * `watch` shows one progress bar per transport on a terminal, redrawn in place; when stdout is not a
 * terminal (a pipe, a log) it prints a plain line `transport done/total ok N failed N` each time a
 * transport's counters change, and a last line with the job's status.
 */
import type { FanoutResults, FanoutStarted } from "../runtime/control-api.js";
import type { ControlConnection } from "../runtime/control-client.js";
import type { JobProgress, TransportProgress } from "../runtime/observe.js";
import { parseCliArgs, usageError, type OptionSpec } from "./args.js";
import { json, table, withService, type CliIo } from "./control.js";
import { ExitCode } from "./exit-codes.js";
import { readInput } from "./io.js";

export const FANOUT_USAGE = `usage: dmgw fanout start --group GROUP --commands FILE|- [--name NAME] [--server ID]
                         [--correlator TEXT] [--options NAME=VALUE,...] [--watch] [--json]
       dmgw fanout jobs [--json]
       dmgw fanout watch JOB [--json]
       dmgw fanout results JOB [--json]
  every form takes --socket PATH (default $DMGW_DATA/runtime/dmgw.sock, else $RUNTIME_DIRECTORY/dmgw.sock)
  start      runs a SyncML command fragment (Get, Replace, Exec, Atomic...; FILE or - for stdin) on
             every member of GROUP (a GroupID, or a Groups/<x> URI); prints the job's URI. The
             completion alert goes to --server (default the gateway's first DM server).
             --options sets <job>/Ext/Options (Concurrency, DeviceTimeout, Retries, ResultFormat,
             AlertType, AbortThreshold); --watch then watches it
  jobs       every job: status, done/total, succeeded, failed
  watch      progress per transport until the job ends: bars on a terminal, else plain lines
             "transport done/total ok N failed N"; --json: one JSON object a line
  results    each device's DeviceID, status and result (the SyncML Status/Results it answered)
  JOB        the job's name below the Fanout MO, or its URI
  exit: 0 done, 1 refused (no such group or job, the job exists), 64 usage, 69 no service answers`;

const COMMON = { socket: { type: "string" }, json: { type: "boolean" } } as const satisfies OptionSpec;

export async function runFanout(args: readonly string[], io: CliIo): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case "start": {
      const { values, positionals } = parse(rest, {
        ...COMMON,
        group: { type: "string" },
        commands: { type: "string" },
        name: { type: "string" },
        server: { type: "string" },
        correlator: { type: "string" },
        options: { type: "string" },
        watch: { type: "boolean" },
      });
      if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0] ?? ""}"`);
      if (values.group === undefined) throw usage("start needs --group");
      if (values.commands === undefined) throw usage("start needs --commands FILE (or - for stdin)");
      const commands = Buffer.from(readInput(values.commands)).toString("utf8");
      const params = {
        group: values.group,
        commands,
        options: jobOptions(values.options),
        ...(values.name !== undefined && { name: values.name }),
        ...(values.server !== undefined && { serverId: values.server }),
        ...(values.correlator !== undefined && { correlator: values.correlator }),
      };
      return withService(io, values.socket, async (c) => {
        const started = (await c.request("fanout.start", params)) as FanoutStarted;
        if (values.watch !== true) {
          io.stdout.write(values.json === true ? json(started) : `${started.job}\n`);
          return ExitCode.Ok;
        }
        if (values.json !== true) io.stdout.write(`${started.job}\n`);
        return watch(c, started.job, values.json === true, io);
      });
    }
    case "jobs": {
      const { values, positionals } = parse(rest, COMMON);
      if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0] ?? ""}"`);
      return withService(io, values.socket, async (c) => {
        const jobs = (await c.request("fanout.jobs")) as JobProgress[];
        if (values.json === true) io.stdout.write(json(jobs));
        else if (jobs.length === 0) io.stdout.write("no jobs\n");
        else {
          io.stdout.write(
            table([
              ["JOB", "STATUS", "DONE", "OK", "FAILED", "CREATED"],
              ...jobs.map((j) => [
                j.job,
                j.status,
                `${j.overall.done}/${j.overall.total}`,
                String(j.overall.succeeded),
                String(j.overall.failed),
                new Date(j.createdMs).toISOString().replace(/\.\d+Z$/, "Z"),
              ]),
            ]),
          );
        }
        return ExitCode.Ok;
      });
    }
    case "watch": {
      const { values, positionals } = parse(rest, COMMON);
      const job = oneJob(positionals);
      return withService(io, values.socket, (c) => watch(c, job, values.json === true, io));
    }
    case "results": {
      const { values, positionals } = parse(rest, COMMON);
      const job = oneJob(positionals);
      return withService(io, values.socket, async (c) => {
        const r = (await c.request("fanout.results", { job })) as FanoutResults;
        io.stdout.write(values.json === true ? json(r) : renderResults(r));
        return ExitCode.Ok;
      });
    }
    case "help":
    case "--help":
    case "-h":
      io.stdout.write(`${FANOUT_USAGE}\n`);
      return ExitCode.Ok;
    case undefined:
      throw usage("missing subcommand");
    default:
      throw usage(`unknown subcommand "${verb}"`);
  }
}

/** Streams the job's progress until it ends. */
async function watch(c: ControlConnection, job: string, asJson: boolean, io: CliIo): Promise<number> {
  const view = asJson
    ? (p: JobProgress) => {
        io.stdout.write(`${JSON.stringify(p)}\n`);
      }
    : io.stdout.isTTY === true
      ? ttyView(io)
      : plainView(io);
  const final = (await c.stream("fanout.watch", { job }, (event) => {
    view(event as JobProgress);
  })) as JobProgress;
  if (!asJson) {
    const o = final.overall;
    io.stdout.write(
      `${final.job} ${final.status} ${o.done}/${o.total} ok ${o.succeeded} failed ${o.failed}\n`,
    );
  }
  return ExitCode.Ok;
}

/** Plain lines: one per transport whose counters changed since the last line printed for it. */
function plainView(io: CliIo): (p: JobProgress) => void {
  const last = new Map<string, string>();
  return (p) => {
    for (const [transport, t] of sortedTransports(p)) {
      const line = `${transport} ${t.done}/${t.total} ok ${t.succeeded} failed ${t.failed}`;
      if (last.get(transport) === line) continue;
      last.set(transport, line);
      io.stdout.write(`${line}\n`);
    }
  };
}

/** Bars redrawn in place: the cursor goes back up over the lines drawn last time. */
function ttyView(io: CliIo): (p: JobProgress) => void {
  let drawn = 0;
  return (p) => {
    const lines = progressBars(p, io.stdout.columns ?? 80);
    let out = drawn > 0 ? `\x1b[${drawn}A` : "";
    for (const line of lines) out += `\x1b[2K${line}\n`;
    io.stdout.write(out);
    drawn = lines.length;
  };
}

/** One bar per transport: `http    [█████░░░░░]  5/10  ok 4  failed 1`, fitted to `columns`. */
export function progressBars(p: JobProgress, columns: number): string[] {
  const rows = sortedTransports(p);
  const nameWidth = Math.max(...rows.map(([t]) => t.length), 4);
  const countWidth = Math.max(...rows.map(([, t]) => `${t.done}/${t.total}`.length), 3);
  return [
    `${p.job}  ${p.status}`,
    ...rows.map(([transport, t]) => {
      const counts = `${`${t.done}/${t.total}`.padStart(countWidth)}  ok ${t.succeeded}  failed ${t.failed}`;
      const barWidth = Math.max(5, Math.min(40, columns - nameWidth - counts.length - 6));
      const filled = t.total === 0 ? barWidth : Math.round((t.done / t.total) * barWidth);
      return `${transport.padEnd(nameWidth)} [${"█".repeat(filled)}${"░".repeat(barWidth - filled)}] ${counts}`;
    }),
  ];
}

function sortedTransports(p: JobProgress): [string, TransportProgress][] {
  return Object.entries(p.byTransport).sort(([a], [b]) => a.localeCompare(b));
}

function renderResults(r: FanoutResults): string {
  const lines = [`${r.job} ${r.status}`];
  for (const d of r.devices) {
    lines.push(`${d.n} ${d.deviceId} ${d.transport} ${d.status === null ? d.state : String(d.status)}`);
    if (d.resultXml !== null) lines.push(`  ${d.resultXml}`);
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** `NAME=VALUE,...` as the options object fanout.start takes (the service checks the values). */
function jobOptions(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (text === undefined) return out;
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw usage(`--options takes NAME=VALUE pairs separated by commas, not "${part}"`);
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

function oneJob(positionals: readonly string[]): string {
  const [job] = positionals;
  if (job === undefined || positionals.length !== 1) throw usage("give one JOB (its name or URI)");
  return job;
}

function parse<T extends OptionSpec>(
  args: readonly string[],
  options: T,
): ReturnType<typeof parseCliArgs<T>> {
  return parseCliArgs(args, options, FANOUT_USAGE);
}

function usage(message: string): Error {
  return usageError(message, FANOUT_USAGE);
}
