/**
 * What the gateway looks like right now, read from its parts: one place that the control socket's
 * `status`, the Prometheus endpoint and the `./DMGW` MO all read, so the three never disagree.
 *
 * Everything here is a read: registry counts and the fan-out journal come from the store with
 * prepared statements (one GROUP BY, not a parse of every device record, since a gateway may hold
 * thousands), the rest from the parts' own `stats()`.
 */
import type Database from "better-sqlite3";
import type { TransportKind } from "../../drivers/driver.js";
import type { DeviceStatus } from "../southbound/device-registry.js";
import type { NorthboundStats } from "../northbound/service.js";
import type { OutboxStats } from "../northbound/outbox.js";
import type { GatewayParts, HealthReport } from "./parts.js";

/** Every transport a device may use: `./DMGW/Devices/<t>` and the metrics list all of them. */
export const TRANSPORTS: readonly TransportKind[] = ["http", "serial", "ble", "coap", "mqtt"];
export const DEVICE_STATUSES: readonly DeviceStatus[] = ["attached", "detached", "unreachable"];

export type DeviceCounts = Record<string, Record<DeviceStatus, number>>;

/** Per-transport progress of one job: devices in it, done, and how the done ones ended. */
export interface TransportProgress {
  readonly total: number;
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Not yet started (pending) or started and not done (dispatched). */
  readonly pending: number;
  readonly dispatched: number;
}

export interface JobProgress {
  readonly job: string;
  readonly serverId: string;
  /** The journal's state: `running` or `finished`. */
  readonly state: string;
  /** The job's Status node: InProgress, Completed, PartiallyCompleted, Failed, Cancelled. */
  readonly status: string;
  readonly createdMs: number;
  readonly finishedMs: number | undefined;
  readonly overall: TransportProgress;
  /** By the transport the inventory holds for each device; `unknown` for a device it lost. */
  readonly byTransport: Readonly<Record<string, TransportProgress>>;
}

export interface Snapshot {
  readonly uptimeMs: number;
  readonly board: string;
  readonly health: HealthReport;
  readonly northbound: NorthboundStats | undefined;
  readonly outbox: OutboxStats;
  readonly devices: DeviceCounts;
  readonly southbound: { readonly active: number; readonly sessions: number; readonly codecErrors: number };
  readonly rssBytes: number;
  readonly runningJobs: readonly JobProgress[];
  readonly drivers: readonly { readonly transport: string; readonly state: string }[];
}

interface JobRow {
  readonly job_path: string;
  readonly server_id: string;
  readonly state: string;
  readonly status: string;
  readonly created: number;
  readonly finished: number | null;
}

interface Statements {
  readonly deviceCounts: Database.Statement;
  readonly jobs: Database.Statement;
  readonly runningJobs: Database.Statement;
  readonly job: Database.Statement;
  readonly jobDevices: Database.Statement;
  readonly jobCounts: Database.Statement;
  readonly deviceTransport: Database.Statement;
}

// Prepared once per connection: the store outlives every request that reads it.
const statements = new WeakMap<Database.Database, Statements>();

function stmts(db: Database.Database): Statements {
  let s = statements.get(db);
  if (s === undefined) {
    s = {
      deviceCounts: db.prepare(
        `SELECT transport, status, count(*) AS n FROM device GROUP BY transport, status`,
      ),
      jobs: db.prepare(
        `SELECT job_path, server_id, state, status, created, finished FROM fanout_job ORDER BY created, job_path`,
      ),
      runningJobs: db.prepare(
        `SELECT job_path, server_id, state, status, created, finished FROM fanout_job WHERE state = 'running' ORDER BY created, job_path`,
      ),
      job: db.prepare(
        `SELECT job_path, server_id, state, status, created, finished FROM fanout_job WHERE job_path = ?`,
      ),
      // The device's transport as the inventory holds it now (LEFT JOIN: a device may be gone).
      jobDevices: db.prepare(
        `SELECT f.device_id AS device_id, f.n AS n, f.state AS state, f.status AS status, d.transport AS transport
           FROM fanout_device f LEFT JOIN device d ON d.device_id = f.device_id
          WHERE f.job_path = ? ORDER BY f.n`,
      ),
      // Progress is counted by SQLite: a watch polls it, and a row a device would cost a 10,000-device
      // job 10,000 objects a poll. `ok`: the engine stores a device's own code, 2xx when it succeeded.
      jobCounts: db.prepare(
        `SELECT coalesce(d.transport, 'unknown') AS transport, f.state AS state,
                coalesce(f.status BETWEEN 200 AND 299, 0) AS ok, count(*) AS n
           FROM fanout_device f LEFT JOIN device d ON d.device_id = f.device_id
          WHERE f.job_path = ? GROUP BY 1, 2, 3`,
      ),
      deviceTransport: db.prepare(`SELECT transport FROM device WHERE device_id = ?`),
    };
    statements.set(db, s);
  }
  return s;
}

/** Devices by transport and status; every known transport is present, with zeros. */
export function deviceCounts(parts: GatewayParts): DeviceCounts {
  const out: DeviceCounts = {};
  for (const t of TRANSPORTS) out[t] = { attached: 0, detached: 0, unreachable: 0 };
  for (const row of stmts(parts.store.db).deviceCounts.all() as {
    transport: string;
    status: string;
    n: number;
  }[]) {
    const status: DeviceStatus =
      row.status === "detached" || row.status === "unreachable" ? row.status : "attached";
    const counts = (out[row.transport] ??= { attached: 0, detached: 0, unreachable: 0 });
    counts[status] += row.n;
  }
  return out;
}

/** One row of `fanout_device` joined with the inventory's transport. */
export interface JobDeviceRow {
  readonly deviceId: string;
  readonly n: number;
  readonly state: string;
  readonly status: number | undefined;
  readonly transport: string;
}

export function jobDevices(parts: GatewayParts, jobPath: string): JobDeviceRow[] {
  return (
    stmts(parts.store.db).jobDevices.all(jobPath) as {
      device_id: string;
      n: number;
      state: string;
      status: number | null;
      transport: string | null;
    }[]
  ).map((r) => ({
    deviceId: r.device_id,
    n: r.n,
    state: r.state,
    status: r.status ?? undefined,
    transport: r.transport ?? "unknown",
  }));
}

/** The progress of one job, undefined when the journal has no such job. */
export function jobProgress(parts: GatewayParts, jobPath: string): JobProgress | undefined {
  const row = stmts(parts.store.db).job.get(jobPath) as JobRow | undefined;
  return row === undefined ? undefined : progressOf(parts, row);
}

/** Every job of the journal, oldest first (running only when `running`). */
export function jobs(parts: GatewayParts, running = false): JobProgress[] {
  const s = stmts(parts.store.db);
  return ((running ? s.runningJobs : s.jobs).all() as JobRow[]).map((row) => progressOf(parts, row));
}

function progressOf(parts: GatewayParts, row: JobRow): JobProgress {
  const byTransport: Record<string, MutableProgress> = {};
  const overall = emptyProgress();
  const counts = stmts(parts.store.db).jobCounts.all(row.job_path) as {
    transport: string;
    state: string;
    ok: number;
    n: number;
  }[];
  for (const c of counts) {
    const t = (byTransport[c.transport] ??= emptyProgress());
    for (const p of [t, overall]) count(p, c);
  }
  return {
    job: row.job_path,
    serverId: row.server_id,
    state: row.state,
    status: row.status,
    createdMs: row.created,
    finishedMs: row.finished ?? undefined,
    overall,
    byTransport,
  };
}

type MutableProgress = { -readonly [K in keyof TransportProgress]: number };

function emptyProgress(): MutableProgress {
  return { total: 0, done: 0, succeeded: 0, failed: 0, pending: 0, dispatched: 0 };
}

function count(p: MutableProgress, c: { state: string; ok: number; n: number }): void {
  p.total += c.n;
  if (c.state === "done") {
    p.done += c.n;
    if (c.ok === 1) p.succeeded += c.n;
    else p.failed += c.n;
  } else if (c.state === "dispatched") p.dispatched += c.n;
  else p.pending += c.n;
}

/** The whole picture (status, metrics). */
export function snapshot(parts: GatewayParts, now = Date.now()): Snapshot {
  return {
    uptimeMs: Math.max(0, now - parts.startedAtMs),
    board: parts.board,
    health: parts.health(),
    northbound: parts.northbound?.stats(),
    outbox: parts.outbox.stats(),
    devices: deviceCounts(parts),
    southbound: parts.south.proxy.stats(),
    rssBytes: process.memoryUsage.rss(),
    runningJobs: jobs(parts, true),
    drivers: parts.south.drivers.map((d) => ({ transport: d.kind, state: d.state })),
  };
}

/** Sessions with DM servers since start (all servers). */
export function northboundSessions(stats: NorthboundStats | undefined): number {
  return (stats?.servers ?? []).reduce((n, s) => n + s.sessions, 0);
}

/** Sessions DM servers ended with a message that did not decode, since start. */
export function northboundCodecErrors(stats: NorthboundStats | undefined): number {
  return (stats?.servers ?? []).reduce((n, s) => n + s.codecErrors, 0);
}
