/**
 * The gateway's health check (style.md 2.12): the watchdog (sd-notify.ts) pings systemd only while
 * `check().ok`, so a gateway whose event loop lags or whose store cannot be written is restarted by
 * `WatchdogSec=` rather than left running in a state where it cannot record anything.
 *
 * - Event-loop lag: `perf_hooks.monitorEventLoopDelay`, the p99 of the delays sampled since the last
 *   check. A p99 lets one long pause (a GC, a big TNDS import) pass, but not a loop that stays slow;
 *   a loop that is blocked outright sends no ping at all, so systemd catches that case by itself.
 * - Store writable: `BEGIN IMMEDIATE` takes SQLite's write lock without writing; inside it a
 *   `PRAGMA user_version` set to its own value proves the connection may write; `ROLLBACK` undoes
 *   it, so nothing changes on disk. The connection serves all of this from its cache, so the file's
 *   header is also read back (16 bytes): a file deleted or overwritten under the open connection
 *   would otherwise look fine until the next restart lost everything written since. A read-only,
 *   locked, missing or clobbered file reports not writable, and `check()` never throws.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import type { Store } from "../tree/store.js";
import type { HealthReport } from "./parts.js";

/** Default limit on the event loop's p99 delay, ms. */
export const DEFAULT_MAX_LAG_MS = 1000;

/** Sampling period of the event-loop delay histogram, ms (Node's default is 10; 20 halves the cost). */
const LAG_RESOLUTION_MS = 20;

/**
 * How long the probe waits for another connection's write lock, ms. A `dmgw tree` write holds it for
 * a few ms; waiting a little keeps such a write from costing a watchdog ping, while a lock held
 * longer (a stuck writer) is reported. The wait blocks the event loop, so it stays short.
 */
const PROBE_BUSY_TIMEOUT_MS = 100;

export interface HealthMonitorOptions {
  readonly store: Store;
  /** The event loop's p99 delay above which the gateway is unhealthy, ms; default 1000. */
  readonly maxLagMs?: number;
}

export class HealthMonitor {
  readonly #store: Store;
  readonly #maxLagMs: number;
  #histogram: IntervalHistogram | undefined;

  constructor(o: HealthMonitorOptions) {
    this.#store = o.store;
    this.#maxLagMs = o.maxLagMs ?? DEFAULT_MAX_LAG_MS;
  }

  /** Starts sampling the event-loop delay; idempotent. */
  start(): void {
    if (this.#histogram !== undefined) return;
    this.#histogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.#histogram.enable();
  }

  /** Stops sampling (the histogram's timer is gone); idempotent. */
  stop(): void {
    this.#histogram?.disable();
    this.#histogram = undefined;
  }

  /**
   * Runs both checks; the lag is the p99 since the previous `check()` (0 before `start()` or
   * without samples). Never throws.
   */
  check(): HealthReport {
    const problems: string[] = [];
    const eventLoopLagMs = this.#lagMs();
    if (eventLoopLagMs > this.#maxLagMs) {
      problems.push(`event loop lag ${Math.round(eventLoopLagMs)} ms (p99) exceeds ${this.#maxLagMs} ms`);
    }
    const storeProblem = this.#probeStore();
    if (storeProblem !== undefined) problems.push(storeProblem);
    return {
      ok: problems.length === 0,
      eventLoopLagMs,
      storeWritable: storeProblem === undefined,
      problems,
    };
  }

  #lagMs(): number {
    const h = this.#histogram;
    if (h === undefined || h.count === 0) return 0;
    const p99Ms = h.percentile(99) / 1e6;
    h.reset();
    return p99Ms;
  }

  /** Undefined when the store is writable, else the problem line. */
  #probeStore(): string | undefined {
    const db = this.#store.db;
    if (!db.open) return "store is closed";
    if (db.readonly) return "store is opened read-only";
    // Transactions are synchronous (style.md 2.7), so none can be open between two event-loop turns;
    // one that is open here was never finished and blocks every other writer.
    if (db.inTransaction) return "store has a transaction left open";
    let saved: number | undefined;
    try {
      saved = db.pragma("busy_timeout", { simple: true }) as number;
      db.pragma(`busy_timeout = ${PROBE_BUSY_TIMEOUT_MS}`);
      db.exec("BEGIN IMMEDIATE");
      try {
        const version = db.pragma("user_version", { simple: true }) as number;
        db.pragma(`user_version = ${version}`);
      } finally {
        db.exec("ROLLBACK");
      }
      return this.#checkFile();
    } catch (e: unknown) {
      const code = (e as { code?: unknown }).code;
      const reason = e instanceof Error ? e.message : String(e);
      return `store is not writable: ${typeof code === "string" ? `${code}: ` : ""}${reason}`;
    } finally {
      if (saved !== undefined) {
        try {
          db.pragma(`busy_timeout = ${saved}`);
        } catch {
          // Restoring the timeout of a connection that has just failed may fail the same way; the
          // problem is already reported, and the next probe sets the timeout again.
        }
      }
    }
  }

  /** Undefined when the file on disk still starts with a dmgw SQLite header, else the problem line. */
  #checkFile(): string | undefined {
    const path = this.#store.path;
    if (path === ":memory:") return undefined;
    const header = Buffer.alloc(16);
    let read: number;
    try {
      const fd = openSync(path, "r");
      try {
        read = readSync(fd, header, 0, header.length, 0);
      } finally {
        closeSync(fd);
      }
    } catch (e: unknown) {
      const code = (e as { code?: unknown }).code;
      return `store file cannot be read: ${typeof code === "string" ? code : String(e)}`;
    }
    // The SQLite file format begins with "SQLite format 3\0". Only that is compared: in WAL mode the
    // rest of page 1 on disk (application_id, user_version) lags until a checkpoint.
    if (read < 16 || header.toString("latin1", 0, 16) !== "SQLite format 3\u0000") {
      return "store file is no longer a SQLite database (overwritten or truncated)";
    }
    return undefined;
  }
}
