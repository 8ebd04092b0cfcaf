/**
 * `dmgw status`: the running service's state, through the control socket: uptime, board, health,
 * DM servers, outbox, devices by transport and status, southbound sessions, running jobs.
 */
import type { StatusResult } from "../runtime/control-api.js";
import { parseCliArgs, usageError } from "./args.js";
import { duration, json, withService, type CliIo } from "./control.js";
import { ExitCode } from "./exit-codes.js";

export const STATUS_USAGE = `usage: dmgw status [--socket PATH] [--json]
  --socket   the control socket (default $DMGW_DATA/runtime/dmgw.sock, else $RUNTIME_DIRECTORY/dmgw.sock,
             else /run/dmgw/dmgw.sock)
  --json     the whole status as one JSON object
  exit: 0 done (even when the health check fails: see "health"), 69 no service answers, 64 usage`;

export async function runStatus(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCliArgs(
    args,
    { socket: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" } },
    STATUS_USAGE,
  );
  if (values.help === true) {
    io.stdout.write(`${STATUS_USAGE}\n`);
    return ExitCode.Ok;
  }
  if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0] ?? ""}"`);
  return withService(io, values.socket, async (c) => {
    // The service is ours: its answer has the shape control-api.ts gives it.
    const s = (await c.request("status")) as StatusResult;
    io.stdout.write(values.json === true ? json(s) : render(s));
    return ExitCode.Ok;
  });
}

function render(s: StatusResult): string {
  const lines: string[] = [];
  const h = s.health;
  lines.push(
    `dmgw pid ${s.pid}, up ${duration(s.uptimeMs)}, board ${s.board}, ` +
      `health ${h.ok ? "ok" : "FAILING"} (event loop lag ${Math.round(h.eventLoopLagMs)} ms, store ${h.storeWritable ? "writable" : "NOT writable"})`,
  );
  for (const p of h.problems) lines.push(`  problem: ${p}`);
  const servers = s.northbound?.servers ?? [];
  if (servers.length === 0) lines.push("servers: none");
  for (const x of servers) {
    const retry = x.retryInMs === undefined ? "" : `, retry in ${duration(x.retryInMs)}`;
    lines.push(`server ${x.serverId}: ${x.state}, ${x.sessions} sessions, ${x.failures} failed${retry}`);
  }
  lines.push(`outbox: ${s.outbox.count} alerts (${s.outbox.bytes} bytes), ${s.outbox.dropped} dropped`);
  const devices = Object.entries(s.devices)
    .filter(([, c]) => c.attached + c.detached + c.unreachable > 0)
    .map(([t, c]) => `${t} ${c.attached} attached, ${c.unreachable} unreachable, ${c.detached} detached`);
  lines.push(`devices: ${devices.length === 0 ? "none" : devices.join("; ")}`);
  if (s.drivers.length > 0)
    lines.push(`drivers: ${s.drivers.map((d) => `${d.transport} ${d.state}`).join(", ")}`);
  lines.push(
    `device sessions: ${s.southbound.active} open, ${s.southbound.sessions} since start, ${s.southbound.codecErrors} codec errors`,
  );
  lines.push(`memory: ${Math.round(s.memory.rssBytes / 1024 / 1024)} MiB resident`);
  if (s.jobs.length === 0) lines.push("jobs: none running");
  for (const j of s.jobs) {
    const o = j.overall;
    lines.push(`job ${j.job}: ${j.status} ${o.done}/${o.total}, ${o.succeeded} ok, ${o.failed} failed`);
  }
  return lines.map((l) => `${l}\n`).join("");
}

function usage(message: string): Error {
  return usageError(message, STATUS_USAGE);
}
