/**
 * The fan-out engine (GwMO CR 8.3, design.md sections 1 and 4, protocol.md 2): runs a job's
 * FanOutCommands on every member of its target group, whatever the transport, stores each device's
 * outcome the moment it arrives, and reports the job with one Generic Alert.
 *
 *   Exec <job>/FanOut/Start  -> start(): validate (404 no group, 400 bad commands), journal the job
 *                               and one row per device (pending), Status InProgress -> 202
 *   after the commit         -> run: a window of `Concurrency` devices (and each transport's limit),
 *                               at most `Rate` device starts per second (retries included);
 *                               mark a batch dispatched (one commit, with the results waiting for
 *                               the group commit), EndDevice.execute each;
 *                               503/504 retried after a backoff up to `Retries` times
 *   each outcome             -> buffered, then one group commit (every `flushMs`): Results/<n>,
 *                               the device row done, the Progress counters; the last one also
 *                               writes the job's Status and puts the 1226 alert in the outbox
 *
 * Crash safety (the issue's rules): a device's row says pending, dispatched or done. On `resume()`,
 * a dispatched device without a result runs again only when every command is idempotent (Get,
 * Replace); otherwise it is recorded 500 `interrupted`. A result is written once (its row turns done
 * in the same transaction), and the alert is enqueued in the transaction that finishes the job, so
 * there is exactly one of each. A result that was in the group-commit buffer at a power cut is the
 * "dispatched without a result" case.
 */
import type { TransportKind } from "../../drivers/driver.js";
import type { AdaptedOutcome } from "../../drivers/driver.js";
import { backoffDelay } from "../core/backoff.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import { DEFAULT_GWMO_CONFIG_ROOT, resolveGroup } from "../mo/gwmo-config.js";
import type { NewAlert } from "../northbound/outbox.js";
import type { EndDevice } from "../southbound/end-device.js";
import { decodeCommandFragment, encodeCommandFragment, type Command } from "../syncml/index.js";
import { Access } from "../tree/plugin.js";
import type { DmTree, TreeNode } from "../tree/tree.js";
import {
  deviceReplies,
  deviceStatus,
  idempotent,
  inlineDataBytes,
  jobStatus,
  markOf,
  succeeded,
  type JobStatus,
} from "./results.js";
import { DeviceQueue } from "./device-queue.js";

/** A job's options (`<job>/Ext/Options`), with the defaults of a fresh job. */
export interface JobOptions {
  readonly concurrency: number;
  readonly deviceTimeoutMs: number;
  readonly retries: number;
  readonly resultFormat: "xml" | "wbxml";
  readonly alertType: "completionstatus" | "resultaggregation";
  /** Stop the job once more than this percentage of its devices failed; 100 never stops. */
  readonly abortThresholdPercent: number;
  /**
   * Device sessions this job starts per second at most, retries included; 0 is unlimited. Starts
   * are spaced 1000/Rate ms apart on a millisecond clock, so above 1000 the pace is about one start
   * per ms (a rate limit is an upper bound: starting slower keeps it).
   */
  readonly ratePerSecond: number;
}

export const DEFAULT_JOB_OPTIONS: JobOptions = {
  concurrency: 50,
  deviceTimeoutMs: 30_000,
  retries: 1,
  resultFormat: "xml",
  alertType: "completionstatus",
  abortThresholdPercent: 100,
  ratePerSecond: 0,
};

export const GWMO_ALERT_TYPE_ROOT = "urn:oma:at:oma-gwmo";

/** Where alerts go (the northbound outbox). */
export interface AlertSink {
  enqueue(alert: NewAlert): unknown;
}

export interface FanoutEngineOptions {
  readonly tree: DmTree;
  readonly outbox: AlertSink;
  /** The device the inventory holds under `deviceId`. */
  readonly devices: (deviceId: string) => EndDevice | undefined;
  /** Sessions at once per transport (the drivers' limits); default unbounded. */
  readonly transportLimit?: (transport: TransportKind) => number;
  /** The Gateway Config MO's root (groups). */
  readonly configRoot?: string;
  /**
   * A resultaggregation alert carries the results inline when their Data (measured as
   * `inlineDataBytes` does) is at most this many bytes, else their URI. A function is asked with the
   * job's server id when the job ends, so the bound can follow what that server declared
   * (northbound/server-limits.ts); `undefined` from it, or no option, means 8 KiB.
   */
  readonly maxInlineResultBytes?: number | ((serverId: string) => number | undefined);
  /** Group commit interval of results, ms; default 20. */
  readonly flushMs?: number;
  /** Backoff between retries of a device; default 1 s doubling to 30 s, ±20 %. */
  readonly retryBackoff?: { readonly initialMs?: number; readonly maxMs?: number };
  readonly log?: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
}

export interface StartResult {
  readonly status: number;
  readonly reason?: string;
}

interface JobRow {
  readonly job_path: string;
  readonly server_id: string;
  readonly correlator: string | null;
  readonly commands: Buffer;
  readonly options: string;
  readonly state: string;
  readonly status: string;
}

interface DeviceRow {
  readonly device_id: string;
  readonly n: number;
  readonly state: string;
  readonly attempts: number;
}

interface Finished {
  readonly deviceId: string;
  readonly n: number;
  readonly outcome: AdaptedOutcome;
}

interface RunningJob {
  readonly path: string;
  readonly commands: readonly Command[];
  readonly options: JobOptions;
  readonly total: number;
  readonly controllers: Map<string, AbortController>;
  readonly buffer: Finished[];
  cancelled: boolean;
  aborted: boolean;
  failed: number;
  done: Promise<void>;
  /** Wakes the scheduler when it waits (a device finished, Cancel, abort, stop). */
  wake: (() => void) | undefined;
}

const RETRYABLE = new Set([503, 504]);

/** The inline bound when nothing better is known (the bound before servers' limits were stored). */
export const DEFAULT_MAX_INLINE_RESULT_BYTES = 8192;

export class FanoutEngine {
  readonly #o: FanoutEngineOptions;
  readonly #tree: DmTree;
  readonly #log: Logger;
  readonly #jobs = new Map<string, RunningJob>();
  /**
   * Each job's device counts, kept as results are recorded: four COUNTs over a 10,000-device
   * journal at every group commit cost more than the commit. Loaded from the journal when missing;
   * dropped when a transaction of ours fails (it may have counted rows that rolled back).
   */
  readonly #counts = new Map<string, { total: number; done: number; ok: number }>();
  readonly #stmt: ReturnType<typeof prepare>;
  #flushTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: FanoutEngineOptions) {
    this.#o = options;
    this.#tree = options.tree;
    this.#log = options.log ?? SILENT_LOGGER;
    this.#stmt = prepare(options.tree);
  }

  /**
   * The Exec of `<job>/FanOut/Start`, inside the server's message transaction: validates the job,
   * journals it, and answers 202; the run starts once the message has committed (`afterCommit`).
   */
  start(
    jobPath: string,
    serverId: string,
    correlator: string | undefined,
    afterCommit: (fn: () => void) => void,
  ): StartResult {
    if (this.#jobs.has(jobPath)) return { status: 405, reason: "the job is running" };
    const tree = this.#tree;
    const raw = tree.read(`${jobPath}/FanOut/FanOutCommands`) ?? tree.read(`${jobPath}/FanOut/DMCommands`);
    if (raw?.value === undefined) return { status: 404, reason: "the job has no FanOutCommands" };
    const decoded = decodeCommandFragment(raw.value);
    if (!decoded.ok) return { status: 400, reason: `FanOutCommands do not parse: ${decoded.error.message}` };
    const ref = textOf(tree.read(`${jobPath}/FanOut/TargetGroupRef`));
    if (ref === undefined) return { status: 404, reason: "the job has no TargetGroupRef" };
    const group = resolveGroup(tree, ref, this.#o.configRoot ?? DEFAULT_GWMO_CONFIG_ROOT);
    if (!group.ok) return { status: 404, reason: group.reason };
    const options = readOptions(tree, jobPath);
    const bytes = typeof raw.value === "string" ? Buffer.from(raw.value, "utf8") : Buffer.from(raw.value);
    const now = this.#now();
    const s = this.#stmt;
    s.deleteDevices.run(jobPath);
    s.putJob.run(
      jobPath,
      serverId,
      correlator ?? null,
      bytes,
      JSON.stringify(options),
      "running",
      "InProgress",
      now,
    );
    group.members.forEach((id, i) => s.putDevice.run(jobPath, id, i + 1, "pending"));
    if (tree.read(`${jobPath}/Results`) !== undefined) tree.remove(`${jobPath}/Results`);
    tree.write({ path: `${jobPath}/Results`, format: "node", access: Access.Get });
    // Not from the counts cache: this runs inside the server's message, which may still roll back.
    this.#counts.delete(jobPath);
    this.#writeCounters(jobPath, { total: group.members.length, done: 0, ok: 0 });
    this.#writeStatus(jobPath, "InProgress");
    this.#log.info("fan-out job accepted", { job: jobPath, devices: group.members.length, serverId });
    if (group.members.length === 0) {
      this.#finishJob(jobPath, false);
      return { status: 202 };
    }
    afterCommit(() => {
      this.#launch(jobPath);
    });
    return { status: 202 };
  }

  /** The Exec of `<job>/FanOut/Cancel`: devices not yet done end 514; 404 when the job is not running. */
  cancel(jobPath: string): StartResult {
    const job = this.#jobs.get(jobPath);
    if (job === undefined) return { status: 404, reason: "the job is not running" };
    job.cancelled = true;
    for (const c of job.controllers.values()) c.abort();
    // Devices waiting for a rate slot or a retry end 514 now, not when their wait is over.
    job.wake?.();
    return { status: 200 };
  }

  /**
   * Resumes every job the journal says is running (after a restart): dispatched devices without a
   * result run again when the commands are idempotent, else they are recorded 500 `interrupted`.
   */
  resume(): void {
    for (const job of this.#stmt.runningJobs.all() as JobRow[]) {
      // A job running in this process is not interrupted: resuming it would launch it twice.
      if (this.#jobs.has(job.job_path)) continue;
      const decoded = decodeCommandFragment(new Uint8Array(job.commands));
      const rerun = decoded.ok && idempotent(decoded.value);
      const interrupted = this.#stmt.devicesIn.all(job.job_path, "dispatched") as DeviceRow[];
      this.#guarded(() => {
        for (const d of interrupted) {
          if (rerun) {
            this.#stmt.setState.run("pending", job.job_path, d.device_id);
          } else {
            this.#record(job.job_path, decoded.ok ? decoded.value : [], parseOptions(job.options), {
              deviceId: d.device_id,
              n: d.n,
              outcome: { kind: "failed", status: 500, reason: "interrupted" },
            });
          }
        }
        this.#afterRecords(job.job_path, false);
      });
      this.#log.info("fan-out job resumed", { job: job.job_path, interrupted: interrupted.length, rerun });
      if (this.#stmt.jobState.pluck().get(job.job_path) === "running") this.#launch(job.job_path);
    }
  }

  /** Resolves when no job runs. */
  async idle(): Promise<void> {
    while (this.#jobs.size > 0) await Promise.all([...this.#jobs.values()].map((j) => j.done));
  }

  /** Stops launching, aborts devices in flight (they stay dispatched: resume() handles them). */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const job of this.#jobs.values()) {
      for (const c of job.controllers.values()) c.abort();
      job.wake?.();
    }
    await this.idle();
    this.#flush();
  }

  #launch(jobPath: string): void {
    if (this.#stopped) return;
    const row = this.#stmt.job.get(jobPath) as JobRow | undefined;
    if (row === undefined) return;
    const decoded = decodeCommandFragment(new Uint8Array(row.commands));
    if (!decoded.ok) return; // validated at start; a journal that no longer parses is not ours to run
    const total = this.#stmt.countDevices.pluck().get(jobPath) as number;
    const job: RunningJob = {
      path: jobPath,
      commands: decoded.value,
      options: parseOptions(row.options),
      total,
      controllers: new Map(),
      buffer: [],
      cancelled: false,
      aborted: false,
      failed: this.#stmt.countFailed.pluck().get(jobPath) as number,
      done: Promise.resolve(),
      wake: undefined,
    };
    this.#jobs.set(jobPath, job);
    job.done = this.#run(job)
      .catch((e: unknown) => {
        this.#log.error("a fan-out job failed", {
          job: jobPath,
          error: e instanceof Error ? e.message : String(e),
        });
      })
      .finally(() => {
        this.#flush();
        this.#jobs.delete(jobPath);
      });
  }

  /**
   * The scheduler. Each turn: ends what Cancel or the abort threshold ended, puts devices whose
   * retry backoff is over back in line, starts what the window, the transports' limits and the rate
   * allow, then sleeps until a device finishes, a retry or the next rate slot is due, or Cancel /
   * stop wake it. It never polls: with nothing to do it waits on one promise and at most one timer.
   */
  async #run(job: RunningJob): Promise<void> {
    type Queued = DeviceRow & { readonly attempt: number; readonly lane: TransportKind | undefined };
    const queue = new DeviceQueue<TransportKind, Queued>();
    for (const d of this.#stmt.devicesIn.all(job.path, "pending") as DeviceRow[]) {
      queue.push({ ...d, attempt: 0, lane: this.#o.devices(d.device_id)?.transport });
    }
    const perTransport = new Map<TransportKind, number>();
    const inFlight = new Set<Promise<void>>();
    const limit = (t: TransportKind): number => this.#o.transportLimit?.(t) ?? Number.POSITIVE_INFINITY;
    const waiting: { device: Queued; at: number }[] = [];
    // Rate limit by strict spacing: consecutive starts are at least 1000/Rate ms apart, so no 1 s
    // window (half-open) ever holds more than Rate starts. A token bucket with burst b would let
    // b + Rate starts into one second (a full bucket, then a second's refill), and the point of a
    // rate is an even load on what the devices share (radio airtime, a broker, a serial bus), not
    // an average over bursts. Constant memory, unlike a log of the last Rate start times.
    const spacingMs = job.options.ratePerSecond > 0 ? 1000 / job.options.ratePerSecond : 0;
    let nextStartAt = Number.NEGATIVE_INFINITY;
    while (queue.size > 0 || inFlight.size > 0 || waiting.length > 0) {
      if (job.cancelled || job.aborted || this.#stopped) {
        if (this.#stopped) break;
        const reason = job.cancelled
          ? "cancelled"
          : `aborted: more than ${job.options.abortThresholdPercent}% failed`;
        for (const d of [...queue.drain(), ...waiting.splice(0).map((w) => w.device)]) {
          this.#finished(job, {
            deviceId: d.device_id,
            n: d.n,
            outcome: { kind: "failed", status: 514, reason },
          });
        }
      }
      // Devices whose retry backoff is over go back in line.
      const now = this.#now();
      for (let i = waiting.length - 1; i >= 0; i--) {
        const w = waiting[i];
        if (w !== undefined && w.at <= now) {
          queue.unshift(w.device);
          waiting.splice(i, 1);
        }
      }
      const batch: { row: Queued; device: EndDevice | undefined }[] = [];
      // Starts the rate allows this turn: one when the slot is due (spacing), else none.
      let rateSlots = spacingMs === 0 ? Number.POSITIVE_INFINITY : now >= nextStartAt ? 1 : 0;
      // A device missing from the inventory (lane undefined) opens no session: its 503 waits for
      // neither a transport's limit nor the rate.
      const open = (lane: TransportKind | undefined): boolean =>
        lane === undefined || (rateSlots > 0 && (perTransport.get(lane) ?? 0) < limit(lane));
      while (inFlight.size + batch.length < job.options.concurrency) {
        const row = queue.take(open);
        if (row === undefined) break;
        const device = this.#o.devices(row.device_id);
        if (device !== undefined) {
          rateSlots--;
          perTransport.set(device.transport, (perTransport.get(device.transport) ?? 0) + 1);
        }
        batch.push({ row, device });
      }
      const rateBlocked = rateSlots <= 0 && queue.size > 0;
      if (batch.length > 0) {
        // The dispatch marks protect non-idempotent commands from a second run after a power cut,
        // so they are fsynced before the commands leave; the results waiting for the group commit
        // share that commit. (Unsynced marks for Get/Replace jobs made the crash test's reruns
        // fail about one run in six, cause not found: left for later, README.)
        this.#guarded(() => {
          this.#recordBuffered();
          for (const b of batch) this.#stmt.dispatch.run(job.path, b.row.device_id);
        });
      }
      for (const { row, device } of batch) {
        const controller = new AbortController();
        job.controllers.set(row.device_id, controller);
        const handle = (outcome: AdaptedOutcome): void => {
          job.controllers.delete(row.device_id);
          if (device !== undefined)
            perTransport.set(device.transport, (perTransport.get(device.transport) ?? 1) - 1);
          const retry =
            outcome.kind === "failed" &&
            RETRYABLE.has(outcome.status) &&
            row.attempt < job.options.retries &&
            !job.cancelled &&
            !this.#stopped;
          if (retry) {
            const delay = backoffDelay(
              row.attempt,
              this.#o.retryBackoff ?? {},
              { initialMs: 1000, maxMs: 30_000, factor: 2, jitter: 0.2 },
              this.#o.random,
            );
            waiting.push({ device: { ...row, attempt: row.attempt + 1 }, at: this.#now() + delay });
          } else if (!this.#stopped) {
            this.#finished(job, { deviceId: row.device_id, n: row.n, outcome });
          }
        };
        // Nothing awaits `p` itself (the scheduler waits on `job.wake`), so it must never reject.
        const p: Promise<void> = this.#executeOne(job, device, controller.signal)
          .then(handle)
          .catch((e: unknown) => {
            this.#log.error("a fan-out device's outcome could not be handled", {
              job: job.path,
              deviceId: row.device_id,
              error: e instanceof Error ? e.message : String(e),
            });
          })
          .finally(() => {
            inFlight.delete(p);
            job.wake?.();
          });
        inFlight.add(p);
      }
      // The clock is read after the devices were called (EndDevice.execute starts synchronously), so
      // the spacing holds between the starts themselves, whatever the dispatch commit cost.
      if (spacingMs > 0 && batch.some((b) => b.device !== undefined)) nextStartAt = this.#now() + spacingMs;
      const wakeAt = Math.min(
        ...waiting.map((w) => w.at),
        rateBlocked ? nextStartAt : Number.POSITIVE_INFINITY,
      );
      if (inFlight.size > 0 || wakeAt !== Number.POSITIVE_INFINITY) {
        await this.#sleep(job, wakeAt);
        // Let the other devices that finish in this turn of the event loop report first, so the
        // next batch (and its one commit) takes all of their places at once.
        await new Promise<void>((resolve) => setImmediate(resolve));
      } else if (queue.size > 0) {
        // Every queued device waits for its transport's limit, yet nothing is in flight: the limit
        // is 0 for that transport. Give those devices their outcome rather than spin.
        for (const d of queue.drain()) {
          this.#finished(job, {
            deviceId: d.device_id,
            n: d.n,
            outcome: { kind: "failed", status: 503, reason: "no capacity on the device's transport" },
          });
        }
      }
    }
  }

  /**
   * Waits until `job.wake` is called (a device finished, Cancel, the abort threshold, stop) or the
   * clock reaches `at` (a retry or a rate slot; Infinity: no timer). The timer is cleared when
   * something else wakes first, so a finished job leaves none behind to hold the process.
   */
  async #sleep(job: RunningJob, at: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve) => {
        job.wake = resolve;
        if (at !== Number.POSITIVE_INFINITY) timer = setTimeout(resolve, Math.max(0, at - this.#now()));
      });
    } finally {
      clearTimeout(timer);
      job.wake = undefined;
    }
  }

  async #executeOne(
    job: RunningJob,
    device: EndDevice | undefined,
    signal: AbortSignal,
  ): Promise<AdaptedOutcome> {
    if (device === undefined)
      return { kind: "failed", status: 503, reason: "the device is not in the inventory" };
    try {
      return await device.execute(job.commands, { timeoutMs: job.options.deviceTimeoutMs, signal });
    } catch (e) {
      // EndDevice never throws for what a device did; this is our own failure, recorded as such.
      return {
        kind: "failed",
        status: 500,
        reason: `the gateway failed: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
  }

  /** Buffers a device's outcome for the next group commit. */
  #finished(job: RunningJob, f: Finished): void {
    job.buffer.push(f);
    if (!succeeded(f.outcome)) job.failed++;
    if (
      !job.aborted &&
      job.options.abortThresholdPercent < 100 &&
      (job.failed * 100) / job.total > job.options.abortThresholdPercent
    ) {
      job.aborted = true;
      for (const c of job.controllers.values()) c.abort();
      job.wake?.();
    }
    this.#flushTimer ??= setTimeout(() => {
      this.#flush();
    }, this.#o.flushMs ?? 20);
  }

  /** One transaction for every buffered outcome, and the end of any job they complete. */
  #flush(): void {
    if ([...this.#jobs.values()].some((j) => j.buffer.length > 0)) {
      this.#guarded(() => {
        this.#recordBuffered();
      });
    }
  }

  /** Writes every buffered outcome (inside a transaction) and ends the jobs they complete. */
  #recordBuffered(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const job of this.#jobs.values()) {
      if (job.buffer.length === 0) continue;
      for (const f of job.buffer.splice(0)) this.#record(job.path, job.commands, job.options, f);
      this.#afterRecords(job.path, job.cancelled);
    }
  }

  /** Writes one device's result (inside a transaction); a device already done is left as it is. */
  #record(jobPath: string, commands: readonly Command[], options: JobOptions, f: Finished): void {
    const state = this.#stmt.deviceState.pluck().get(jobPath, f.deviceId);
    if (state === "done" || state === undefined) return;
    const base = `${jobPath}/Results/${f.n}`;
    const replies = deviceReplies(commands, f.outcome);
    this.#tree.write({ path: base, format: "node", access: Access.Get });
    this.#tree.write({ path: `${base}/DeviceID`, format: "chr", value: f.deviceId, access: Access.Get });
    if (options.resultFormat === "wbxml") {
      this.#tree.write({
        path: `${base}/DevResultWBXML`,
        format: "bin",
        value: encodeCommandFragment(replies, "wbxml"),
        access: Access.Get,
      });
    } else {
      const xml = new TextDecoder().decode(encodeCommandFragment(replies, "xml"));
      this.#tree.write({ path: `${base}/DevResultXML`, format: "xml", value: xml, access: Access.Get });
    }
    const status = deviceStatus(f.outcome);
    this.#stmt.done.run(status, jobPath, f.deviceId);
    const counts = this.#counts.get(jobPath);
    if (counts !== undefined) {
      counts.done++;
      if (status >= 200 && status <= 299) counts.ok++;
    }
  }

  /** One transaction of the engine's own; the counts cache is dropped when it fails. */
  #guarded(fn: () => void): void {
    try {
      this.#tree.transaction(fn);
    } catch (e) {
      this.#counts.clear();
      throw e;
    }
  }

  /** The job's counts (inside or outside a transaction), from the journal when not cached. */
  #countsOf(jobPath: string): { total: number; done: number; ok: number } {
    let counts = this.#counts.get(jobPath);
    if (counts === undefined) {
      const row = this.#stmt.counts.get(jobPath) as { total: number; done: number | null; ok: number | null };
      counts = { total: row.total, done: row.done ?? 0, ok: row.ok ?? 0 };
      this.#counts.set(jobPath, counts);
    }
    return counts;
  }

  /** Progress counters; when no device is left, the job's end (Status, journal, alert). */
  #afterRecords(jobPath: string, cancelled: boolean): void {
    const counts = this.#countsOf(jobPath);
    this.#writeCounters(jobPath, counts);
    if (counts.done >= counts.total) this.#finishJob(jobPath, cancelled);
  }

  #finishJob(jobPath: string, cancelled: boolean): void {
    const row = this.#stmt.job.get(jobPath) as JobRow | undefined;
    if (row === undefined || row.state !== "running") return;
    const { total, ok } = this.#countsOf(jobPath);
    const status = jobStatus(ok, total, cancelled);
    this.#writeStatus(jobPath, status);
    this.#stmt.finishJob.run(status, this.#now(), jobPath);
    this.#o.outbox.enqueue(this.#alert(row, status));
    this.#log.info("fan-out job finished", { job: jobPath, status, devices: total, succeeded: ok });
    this.#counts.delete(jobPath);
  }

  #alert(row: JobRow, status: JobStatus): NewAlert {
    const options = parseOptions(row.options);
    const resultsUri = `${row.job_path}/Results`;
    let format = "chr";
    let data = resultsUri;
    if (options.alertType === "resultaggregation") {
      const inline = this.#aggregate(row.job_path);
      if (inlineDataBytes(inline) <= this.#inlineBound(row.server_id)) {
        format = "xml";
        data = inline;
      }
    }
    return {
      serverId: row.server_id,
      code: 1226,
      ...(row.correlator !== null && { correlator: row.correlator }),
      items: [
        {
          source: { locUri: row.job_path },
          meta: { type: `${GWMO_ALERT_TYPE_ROOT}:${options.alertType}:1.0`, format, mark: markOf(status) },
          data: { kind: "text", text: data },
        },
      ],
    };
  }

  /**
   * The inline bound for the job's server, read when the job ends: the alert is enqueued before the
   * session that carries it, so this is what the server declared in its last session.
   */
  #inlineBound(serverId: string): number {
    const bound = this.#o.maxInlineResultBytes;
    if (typeof bound !== "function") return bound ?? DEFAULT_MAX_INLINE_RESULT_BYTES;
    try {
      return bound(serverId) ?? DEFAULT_MAX_INLINE_RESULT_BYTES;
    } catch (e) {
      // The job's end must not fail over a size hint: the default bound is always usable.
      this.#log.warn("the inline result bound could not be read; using the default", {
        serverId,
        error: e instanceof Error ? e.message : String(e),
      });
      return DEFAULT_MAX_INLINE_RESULT_BYTES;
    }
  }

  /** Every device's result inline: `<DevResults><DevResult DeviceID="..">SyncBody</DevResult>...`. */
  #aggregate(jobPath: string): string {
    const parts: string[] = [];
    for (const name of this.#tree.childNames(`${jobPath}/Results`) ?? []) {
      const id = textOf(this.#tree.read(`${jobPath}/Results/${name}/DeviceID`)) ?? "";
      const xml = textOf(this.#tree.read(`${jobPath}/Results/${name}/DevResultXML`));
      const body =
        xml ??
        (() => {
          const bin = this.#tree.read(`${jobPath}/Results/${name}/DevResultWBXML`)?.value;
          if (!(bin instanceof Uint8Array)) return "";
          const d = decodeCommandFragment(bin, { allow: "replies" });
          return d.ok ? new TextDecoder().decode(encodeCommandFragment(d.value, "xml")) : "";
        })();
      parts.push(`<DevResult DeviceID="${escapeXmlAttr(id)}">${body}</DevResult>`);
    }
    return `<DevResults>${parts.join("")}</DevResults>`;
  }

  #writeStatus(jobPath: string, status: JobStatus): void {
    this.#tree.write({ path: `${jobPath}/Status`, format: "chr", value: status, access: Access.Get });
  }

  #writeCounters(jobPath: string, { total, done, ok }: { total: number; done: number; ok: number }): void {
    const counters: [string, number][] = [
      ["Total", total],
      ["Done", done],
      ["Succeeded", ok],
      ["Failed", done - ok],
    ];
    for (const [name, value] of counters) {
      this.#tree.write({
        path: `${jobPath}/Ext/Progress/${name}`,
        format: "int",
        value: String(value),
        access: Access.Get,
      });
    }
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}

function prepare(tree: DmTree) {
  const db = tree.store.db;
  return {
    putJob: db.prepare(
      `INSERT OR REPLACE INTO fanout_job (job_path, server_id, correlator, commands, options, state, status, created)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    job: db.prepare(`SELECT * FROM fanout_job WHERE job_path = ?`),
    jobState: db.prepare(`SELECT state FROM fanout_job WHERE job_path = ?`),
    runningJobs: db.prepare(`SELECT * FROM fanout_job WHERE state = 'running' ORDER BY created`),
    finishJob: db.prepare(
      `UPDATE fanout_job SET state = 'finished', status = ?, finished = ?, alerted = 1 WHERE job_path = ?`,
    ),
    deleteDevices: db.prepare(`DELETE FROM fanout_device WHERE job_path = ?`),
    putDevice: db.prepare(`INSERT INTO fanout_device (job_path, device_id, n, state) VALUES (?, ?, ?, ?)`),
    devicesIn: db.prepare(
      `SELECT device_id, n, state, attempts FROM fanout_device WHERE job_path = ? AND state = ? ORDER BY n`,
    ),
    deviceState: db.prepare(`SELECT state FROM fanout_device WHERE job_path = ? AND device_id = ?`),
    setState: db.prepare(`UPDATE fanout_device SET state = ? WHERE job_path = ? AND device_id = ?`),
    dispatch: db.prepare(
      `UPDATE fanout_device SET state = 'dispatched', attempts = attempts + 1 WHERE job_path = ? AND device_id = ? AND state = 'pending'`,
    ),
    // The device's code (deviceStatus): 2xx for a device that succeeded, so counts need no second column.
    done: db.prepare(
      `UPDATE fanout_device SET state = 'done', status = ? WHERE job_path = ? AND device_id = ?`,
    ),
    countDevices: db.prepare(`SELECT count(*) FROM fanout_device WHERE job_path = ?`),
    counts: db.prepare(
      `SELECT count(*) AS total, sum(state = 'done') AS done,
              sum(state = 'done' AND status BETWEEN 200 AND 299) AS ok
         FROM fanout_device WHERE job_path = ?`,
    ),
    countFailed: db.prepare(
      `SELECT count(*) FROM fanout_device WHERE job_path = ? AND state = 'done' AND NOT (status BETWEEN 200 AND 299)`,
    ),
  };
}

/** `<job>/Ext/Options/*`, each falling back to its default when absent or malformed. */
export function readOptions(tree: DmTree, jobPath: string): JobOptions {
  const base = `${jobPath}/Ext/Options`;
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const n = Number(textOf(tree.read(`${base}/${name}`)));
    return Number.isInteger(n) && n >= min && n <= max ? n : fallback;
  };
  const d = DEFAULT_JOB_OPTIONS;
  const format = textOf(tree.read(`${base}/ResultFormat`))?.toLowerCase();
  const alert = textOf(tree.read(`${base}/AlertType`))?.toLowerCase();
  return {
    concurrency: int("Concurrency", d.concurrency, 1, 10_000),
    deviceTimeoutMs: int("DeviceTimeout", d.deviceTimeoutMs, 100, 3_600_000),
    retries: int("Retries", d.retries, 0, 10),
    resultFormat: format === "wbxml" ? "wbxml" : "xml",
    alertType: alert === "resultaggregation" ? "resultaggregation" : "completionstatus",
    abortThresholdPercent: int("AbortThreshold", d.abortThresholdPercent, 0, 100),
    ratePerSecond: int("Rate", d.ratePerSecond, 0, 100_000),
  };
}

function parseOptions(json: string): JobOptions {
  try {
    return { ...DEFAULT_JOB_OPTIONS, ...(JSON.parse(json) as Partial<JobOptions>) };
  } catch {
    return DEFAULT_JOB_OPTIONS; // written by us as JSON; a hand-edited row runs with the defaults
  }
}

function textOf(node: TreeNode | undefined): string | undefined {
  const v = node?.value;
  if (v === undefined) return undefined;
  return typeof v === "string" ? v : new TextDecoder().decode(v);
}

function escapeXmlAttr(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");
}
