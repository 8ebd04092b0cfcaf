/**
 * The fan-out journal survives SIGKILLs of the gateway process (the issue's crash rules), end to
 * end: 1,000 simulated HTTP devices live in this process across gateway restarts (their UDP
 * addresses and the gateway's southbound port stay the same); a child process runs the gateway
 * (test/helpers/fanout-gateway-child.ts), which on a fresh file provisions the devices, creates the
 * group and Execs the job's Start as a server would, and on every start calls `engine.resume()`.
 * We SIGKILL it at random points (seeded), restart it on the same file, ten times; an eleventh run
 * finishes the job. Twice: a job of idempotent commands (Get + Replace) and one with an Exec.
 *
 * After every kill, on a copy of the file and its WAL (so that the next child does its own crash
 * recovery), opened with Store.open (quick_check):
 * - integrity_check is ok;
 * - every Results/<n> names the device of row n, that row is done, and every done row has its
 *   Results/<n>: one result per device at most; Progress/Done is the number of done rows;
 * - no result changed since it was first seen (a per-n snapshot of DevResultXML);
 * - the job's completion alerts in alert_outbox (by Correlator): one once the journal says the job
 *   finished, none before.
 * At the end: 1,000 results, one per device; one completion alert (Source the job, Mark warning,
 * Data the Results URI); Progress Total/Done 1000 and Succeeded/Failed as the results say; Status
 * PartiallyCompleted in the tree and the journal. On the devices' side (their session reports):
 * - a device whose result a kill found recorded ran no session after that kill;
 * - a device ran at most 1 + (the kills that found it dispatched without a result) sessions; the
 *   silent ones (every 200th) none;
 * - idempotent job: every device but the silent ones succeeded (200 for Get and Replace) and its
 *   setting holds the value; the silent ones end 504;
 * - Exec job: the devices recorded 500 `interrupted` are exactly those some kill found dispatched
 *   without a result; no device ran more than one session, nor the Exec more than once; every other
 *   device but the silent ones succeeded and ran the Exec exactly once.
 * Every child is killed by PID and waited for; none is left running.
 *
 * DMGW_FANOUT_CRASH_RUNS sets the number of kills per job (default 10), DMGW_CRASH_SEED the seed of
 * the kill points (printed), DMGW_FANOUT_CRASH_DEVICES the fleet size (default 1000; a small one may
 * finish before its kills), DMGW_FANOUT_CHILD_LOG=1 the children's logs (on stderr, shown on failure).
 */
import { LineChild } from "../helpers/line-child.js";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import { decodeCommandFragment, type StatusCommand } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import {
  FANOUT_CORRELATOR,
  FANOUT_GW_ID,
  FANOUT_JOB,
  FANOUT_OUTBOX_BOUNDS,
  FANOUT_SERVER_ID,
  FANOUT_SETTING,
  fanoutCredentials,
  type FanoutMode,
  type FleetSpec,
} from "../helpers/fanout-gateway-child.js";
import { freePort } from "../helpers/mosquitto.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHILD = fileURLToPath(new URL("../helpers/fanout-gateway-child.ts", import.meta.url));

const RUNS = Number(process.env["DMGW_FANOUT_CRASH_RUNS"] ?? "10");
const DEVICES = Number(process.env["DMGW_FANOUT_CRASH_DEVICES"] ?? "1000");
const SEED = process.env["DMGW_CRASH_SEED"] ?? String(Math.floor(Math.random() * 1e9));
/** Every 200th device ignores its push: the job has failures (504 after DeviceTimeout). */
const SILENT_EVERY = 200;
/** A child that has not reached its kill point (or finished) by then is stuck. */
const STEP_LIMIT_MS = 30_000;

function prng(seed: string): () => number {
  let a = 0;
  for (const ch of seed) a = (Math.imul(a, 31) + ch.charCodeAt(0)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whether a process with this PID exists (signal 0 checks without signalling). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A gateway child: its stdout lines as they come, and its end. */
class Child extends LineChild {
  constructor(db: string, specFile: string, mode: FanoutMode) {
    super(CHILD, [db, specFile, mode], ROOT);
  }

  /** The last `done <n>` the child printed, -1 before the first. */
  get done(): number {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const m = /^done (\d+)$/.exec(this.lines[i] ?? "");
      if (m !== null) return Number(m[1]);
    }
    return -1;
  }

  override until(cond: () => boolean, limitMs = STEP_LIMIT_MS): Promise<boolean> {
    return super.until(cond, limitMs);
  }
}

/** The journal and the tree as one kill left them. */
interface Observation {
  readonly jobState: string | undefined;
  /** device id -> its row. */
  readonly rows: Map<string, { n: number; state: string; attempts: number; status: number | null }>;
  /** n -> [DeviceID, DevResultXML]. */
  readonly results: Map<number, { deviceId: string; xml: string }>;
  readonly progress: Record<"Total" | "Done" | "Succeeded" | "Failed", string | undefined>;
  readonly status: string | undefined;
  readonly alerts: number;
  /** The completion alert's item, when there is exactly one. */
  readonly alert:
    { locUri: string | undefined; mark: string | undefined; data: string | undefined } | undefined;
  /** fanout_job.status. */
  readonly jobStatus: string | undefined;
}

/**
 * Opens `source` as the gateway does (quick_check), checks integrity, reads the job. With `copyDir`,
 * a copy of the file and its WAL is opened instead, so the next child finds the file as the kill
 * left it and does the recovery itself.
 */
function observe(source: string, copyDir?: string): Observation {
  let file = source;
  if (copyDir !== undefined) {
    rmSync(copyDir, { recursive: true, force: true });
    mkdirSync(copyDir);
    file = join(copyDir, "gw.db");
    for (const suffix of ["", "-wal"]) {
      if (existsSync(source + suffix)) copyFileSync(source + suffix, file + suffix);
    }
  }
  const store = Store.open(file, { create: false });
  try {
    assert.equal(store.db.pragma("integrity_check", { simple: true }), "ok");
    const tree = new DmTree(store);
    const text = (path: string): string | undefined => {
      const v = tree.read(path)?.value;
      return v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v);
    };
    const tables = store.db.prepare("SELECT name FROM sqlite_schema WHERE name = 'fanout_job'").get();
    assert.ok(tables !== undefined, "the journal tables exist");
    const jobState = store.db
      .prepare("SELECT state FROM fanout_job WHERE job_path = ?")
      .pluck()
      .get(FANOUT_JOB) as string | undefined;
    const rows = new Map<string, { n: number; state: string; attempts: number; status: number | null }>();
    for (const r of store.db
      .prepare("SELECT device_id, n, state, attempts, status FROM fanout_device WHERE job_path = ?")
      .all(FANOUT_JOB) as {
      device_id: string;
      n: number;
      state: string;
      attempts: number;
      status: number | null;
    }[]) {
      rows.set(r.device_id, { n: r.n, state: r.state, attempts: r.attempts, status: r.status });
    }
    const results = new Map<number, { deviceId: string; xml: string }>();
    for (const name of tree.childNames(`${FANOUT_JOB}/Results`) ?? []) {
      results.set(Number(name), {
        deviceId: text(`${FANOUT_JOB}/Results/${name}/DeviceID`) ?? "",
        xml: text(`${FANOUT_JOB}/Results/${name}/DevResultXML`) ?? "",
      });
    }
    const progress = {
      Total: text(`${FANOUT_JOB}/Ext/Progress/Total`),
      Done: text(`${FANOUT_JOB}/Ext/Progress/Done`),
      Succeeded: text(`${FANOUT_JOB}/Ext/Progress/Succeeded`),
      Failed: text(`${FANOUT_JOB}/Ext/Progress/Failed`),
    };
    const completions = new AlertOutbox(store, FANOUT_OUTBOX_BOUNDS)
      .pending(FANOUT_SERVER_ID)
      .filter((a) => a.correlator === FANOUT_CORRELATOR);
    const item = completions.length === 1 ? completions[0]?.items[0] : undefined;
    const data = item?.data;
    return {
      jobState,
      jobStatus: store.db
        .prepare("SELECT status FROM fanout_job WHERE job_path = ?")
        .pluck()
        .get(FANOUT_JOB) as string | undefined,
      rows,
      results,
      progress,
      status: text(`${FANOUT_JOB}/Status`),
      alerts: store.db
        .prepare("SELECT count(*) FROM alert_outbox WHERE correlator = ?")
        .pluck()
        .get(FANOUT_CORRELATOR) as number,
      alert:
        item === undefined
          ? undefined
          : {
              locUri: item.source?.locUri,
              mark: item.meta?.mark,
              data: data?.kind === "text" ? data.text : undefined,
            },
    };
  } finally {
    store.close();
  }
}

/** The invariants that hold after every kill; `snapshots` (n -> DevResultXML) grows with them. */
function checkInvariants(o: Observation, snapshots: Map<number, string>, context: string): void {
  const byN = new Map([...o.rows.values()].map((r) => [r.n, r] as const));
  const idOfN = new Map([...o.rows.entries()].map(([id, r]) => [r.n, id] as const));
  const seen = new Set<string>();
  for (const [n, result] of o.results) {
    const row = byN.get(n);
    assert.ok(row !== undefined, `${context}: Results/${n} has no journal row`);
    assert.equal(result.deviceId, idOfN.get(n), `${context}: Results/${n} names another device`);
    assert.equal(row.state, "done", `${context}: Results/${n} exists, its row is ${row.state}`);
    assert.ok(!seen.has(result.deviceId), `${context}: two results for ${result.deviceId}`);
    seen.add(result.deviceId);
    assert.ok(result.xml.length > 0, `${context}: Results/${n} has no DevResultXML`);
    const before = snapshots.get(n);
    if (before === undefined) snapshots.set(n, result.xml);
    else assert.equal(result.xml, before, `${context}: the result of ${result.deviceId} was rewritten`);
  }
  for (const [id, row] of o.rows) {
    if (row.state === "done")
      assert.ok(o.results.has(row.n), `${context}: ${id} is done without Results/${row.n}`);
  }
  for (const n of snapshots.keys()) assert.ok(o.results.has(n), `${context}: Results/${n} disappeared`);
  if (o.jobState !== undefined) {
    const done = [...o.rows.values()].filter((r) => r.state === "done").length;
    assert.equal(o.progress.Done, String(done), `${context}: Progress/Done is not the done rows`);
    assert.equal(o.progress.Total, String(o.rows.size), `${context}: Progress/Total`);
  }
  assert.equal(
    o.alerts,
    o.jobState === "finished" ? 1 : 0,
    `${context}: ${o.alerts} completion alerts, the job is ${o.jobState ?? "not journalled"}`,
  );
}

/** The Statuses of a stored result: [cmd, code, reason of the first Item] each. */
function statusesOf(xml: string): [string, string, string | undefined][] {
  const decoded = decodeCommandFragment(xml, { allow: "replies" });
  assert.ok(decoded.ok, "a stored result decodes");
  return decoded.value
    .filter((c): c is StatusCommand => c.kind === "Status")
    .map((s) => {
      const data = s.items[0]?.data;
      return [s.cmd, s.data, data?.kind === "text" ? data.text : undefined];
    });
}

interface KillPlan {
  /** Kill once the child printed `done >= atDone` (plus `delayMs`)... */
  readonly atDone: number;
  readonly delayMs: number;
  /**
   * ...or, for a timed kill, `delayMs` after spawn or at `done >= atDone`, whichever comes first (a
   * fast gateway must not finish the job before a timed kill of a late run comes).
   */
  readonly timed: boolean;
}

function describePlan(p: KillPlan): string {
  return p.timed
    ? `${p.delayMs} ms after spawn or done >= ${p.atDone}`
    : `done >= ${p.atDone} + ${p.delayMs} ms`;
}

/** RUNS kill points: most at a Progress/Done threshold (rising) plus jitter, some at a time after spawn. */
function killPlans(random: () => number): KillPlan[] {
  const thresholds = Array.from({ length: RUNS }, () => Math.floor(random() * DEVICES * 0.9)).sort(
    (a, b) => a - b,
  );
  return thresholds.map((atDone) =>
    random() < 0.15
      ? { atDone, delayMs: 300 + Math.floor(random() * 1500), timed: true }
      : { atDone, delayMs: Math.floor(random() * 60), timed: false },
  );
}

describe("fan-out crash safety (SIGKILL of the gateway during a job)", function () {
  this.timeout(180_000);
  let dir: string;
  let fleet: HttpDeviceFleet | undefined;
  const children: Child[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-fanout-crash-"));
  });

  afterEach(async () => {
    await Promise.all(children.map((c) => c.kill()));
    for (const c of children) assert.ok(!running(c.pid), `child ${c.pid} still runs`);
    children.length = 0;
    await fleet?.stop();
    fleet = undefined;
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  async function crashRun(mode: FanoutMode): Promise<void> {
    assert.ok(Number.isInteger(RUNS) && RUNS >= 1, "DMGW_FANOUT_CRASH_RUNS must be a positive integer");
    assert.ok(Number.isInteger(DEVICES) && DEVICES >= 10, "DMGW_FANOUT_CRASH_DEVICES must be >= 10");
    const started = Date.now();
    const random = prng(`${SEED}:${mode}`);
    const db = join(dir, `${mode}.db`);
    const port = await freePort();
    const ids = Array.from({ length: DEVICES }, (_, i) => `dev-${String(i).padStart(4, "0")}`);
    const silent = new Set(ids.filter((_, i) => i % SILENT_EVERY === 0));
    fleet = new HttpDeviceFleet({
      gatewayUrl: `http://127.0.0.1:${port}/dm`,
      devices: ids.map((id) => ({
        deviceId: id,
        serverId: FANOUT_GW_ID,
        ...fanoutCredentials(id),
        latencyMs: 1 + Math.floor(random() * 4),
        ...(silent.has(id) && { failure: "silent" as const }),
      })),
    });
    await fleet.start();
    const fleetReady = Date.now() - started;
    const f = fleet;
    const spec: FleetSpec = { port, devices: ids.map((id) => ({ id, address: f.address(id).address })) };
    const specFile = join(dir, `${mode}-fleet.json`);
    writeFileSync(specFile, JSON.stringify(spec));

    const plans = killPlans(random);
    const snapshots = new Map<number, string>();
    /** How many kills found each device dispatched without a result. */
    const dispatchedAtKill = new Map<string, number>();
    /** The sessions a device had run when its result was first seen: it is never run again. */
    const sessionsWhenDone = new Map<string, number>();
    const log: string[] = [];

    for (let run = 1; run <= RUNS; run++) {
      const plan = plans[run - 1] ?? { atDone: 0, delayMs: 0, timed: false };
      const context = `${mode}, seed ${SEED}, run ${run} (${describePlan(plan)})`;
      const child = new Child(db, specFile, mode);
      children.push(child);
      const spawnedAt = Date.now();
      if (plan.timed) {
        // Not before the child is ready (its store made and migrated): the checks below read what
        // the kill left of the job, and a kill during start is the store's own test (tree-crash).
        await child.until(
          () =>
            child.lines.includes("ready") &&
            (Date.now() >= spawnedAt + plan.delayMs || child.done >= plan.atDone),
        );
      } else {
        const atDone = plan.atDone;
        const reached = await child.until(() => child.done >= atDone);
        assert.ok(reached, `${context}: never reached done ${atDone} (last ${child.done}):\n${child.stderr}`);
        await sleep(plan.delayMs);
      }
      const doneBefore = child.done;
      const end = await child.kill();
      const killedAfter = Date.now() - spawnedAt;
      assert.equal(
        end.signal,
        "SIGKILL",
        `${context}: the child ended by itself (${end.code}):\n${child.stderr}`,
      );
      assert.ok(!running(child.pid), `${context}: the child ${child.pid} still runs`);
      const unexpected = child.lines.filter((l) => !/^(ready|done \d+)$/.test(l));
      assert.deepEqual(unexpected, [], `${context}: unexpected lines on the child's stdout`);
      // The sessions the kill broke end on the devices' side (connection reset or refused).
      await f.idle();

      const o = observe(db, join(dir, `${mode}-check`));
      checkInvariants(o, snapshots, context);
      assert.notEqual(o.jobState, "finished", `${context}: the job finished before the kill; kill earlier`);
      let dispatched = 0;
      let done = 0;
      for (const [id, row] of o.rows) {
        if (row.state === "dispatched") {
          dispatched++;
          dispatchedAtKill.set(id, (dispatchedAtKill.get(id) ?? 0) + 1);
        } else if (row.state === "done") {
          done++;
          if (!sessionsWhenDone.has(id)) sessionsWhenDone.set(id, f.reports(id).length);
        }
      }
      log.push(
        `run ${run}: ${describePlan(plan)}; killed ${killedAfter} ms after spawn at done ${doneBefore} ` +
          `(journal: ${o.jobState ?? "no job yet"}, ${done} done, ${dispatched} dispatched)`,
      );
    }

    // A last start finishes the job.
    const last = new Child(db, specFile, mode);
    children.push(last);
    const lastSpawned = Date.now();
    await last.until(() => last.lines.includes("ready"));
    const lastReady = Date.now() - lastSpawned;
    const finished = await last.until(
      () => last.lines.some((l) => l.startsWith("finished ")),
      STEP_LIMIT_MS * 2,
    );
    assert.ok(finished, `${mode}, seed ${SEED}: the last child did not finish:\n${last.stderr}`);
    const end = await last.closed;
    assert.equal(end.code, 0, `the last child exited with ${end.code} (${end.signal}):\n${last.stderr}`);
    for (const c of children) assert.ok(!running(c.pid), `child ${c.pid} still runs`);
    log.push(
      `last run: ready ${lastReady} ms after spawn, ${last.lines.find((l) => l.startsWith("finished ")) ?? ""} ` +
        `${Date.now() - lastSpawned} ms after spawn; the fleet started in ${fleetReady} ms`,
    );
    await f.idle();

    const o = observe(db);
    checkInvariants(o, snapshots, `${mode}, seed ${SEED}, the end`);
    assert.equal(o.jobState, "finished");
    assert.equal(o.results.size, DEVICES, "one result per device");
    assert.deepEqual(
      new Set([...o.results.values()].map((r) => r.deviceId)),
      new Set(ids),
      "every member has its result",
    );
    assert.equal(o.alerts, 1, "exactly one completion alert with the job's Correlator");
    assert.deepEqual(o.alert, { locUri: FANOUT_JOB, mark: "warning", data: `${FANOUT_JOB}/Results` });
    assert.equal(o.status, "PartiallyCompleted", "the silent devices failed, the others succeeded");
    assert.equal(o.jobStatus, "PartiallyCompleted", "the journal's status is the tree's");

    const resultOf = new Map([...o.results.values()].map((r) => [r.deviceId, statusesOf(r.xml)] as const));
    const execs = (id: string): number =>
      f.reports(id).reduce((sum, r) => sum + r.execs.filter((p) => p === "./Vendor/Reboot").length, 0);
    let interrupted = 0;
    let reran = 0;
    for (const id of ids) {
      const statuses = resultOf.get(id) ?? [];
      const codes = statuses.map(([, code]) => code);
      const sessions = f.reports(id).length;
      const context = `${mode}, seed ${SEED}: ${id}`;
      const detail = `${JSON.stringify(statuses)}; its sessions: ${JSON.stringify(f.reports(id))}`;
      // Rule: a device with a recorded result is not touched again.
      const before = sessionsWhenDone.get(id);
      if (before !== undefined) assert.equal(sessions, before, `${context} ran again after its result`);
      // Each child dispatches a device once at most (Retries 0); only a kill that found it dispatched
      // without a result lets a later child dispatch it again.
      const dispatches = 1 + (dispatchedAtKill.get(id) ?? 0);
      assert.ok(sessions <= dispatches, `${context}: ${sessions} sessions, ${dispatches} dispatches at most`);
      if (silent.has(id)) assert.equal(sessions, 0, `${context} (silent) ran a session`);
      if (mode === "idempotent") {
        assert.equal(execs(id), 0, `${context} ran an Exec`);
        if (silent.has(id)) {
          assert.deepEqual(codes, ["504", "504"], `${context} (silent): ${detail}`);
        } else {
          assert.deepEqual(codes, ["200", "200"], `${context} did not succeed: ${detail}`);
          assert.ok(sessions >= 1, `${context} ran no session`);
          if (sessions > 1) reran++;
          assert.equal(
            f.device(id).tree.read("./Vendor/Setting1")?.value,
            FANOUT_SETTING,
            `${context}: setting`,
          );
        }
      } else {
        // Never run twice: not the Exec, not even the session.
        assert.ok(sessions <= 1, `${context} ran ${sessions} sessions`);
        assert.ok(execs(id) <= sessions, `${context} ran the Exec ${execs(id)} times`);
        if (statuses.every(([, code, reason]) => code === "500" && reason === "interrupted")) {
          interrupted++;
          assert.ok(dispatchedAtKill.has(id), `${context} is interrupted, yet no kill found it dispatched`);
        } else {
          assert.ok(
            !dispatchedAtKill.has(id),
            `${context} was dispatched at a kill, yet ran again: ${detail}`,
          );
          if (silent.has(id)) {
            assert.deepEqual(codes, ["504", "504"], `${context} (silent): ${detail}`);
          } else {
            assert.deepEqual(codes, ["200", "200"], `${context} did not succeed: ${detail}`);
            assert.equal(execs(id), 1, `${context} ran the Exec ${execs(id)} times`);
          }
        }
      }
    }
    if (mode === "exec")
      assert.equal(interrupted, dispatchedAtKill.size, "interrupted = dispatched at a kill");
    // Failed: the silent devices and the interrupted ones (a silent device may be both).
    const failed = ids.filter((id) => (resultOf.get(id) ?? []).some(([, code]) => code !== "200")).length;
    assert.equal(
      failed,
      new Set([
        ...silent,
        ...ids.filter((id) =>
          (resultOf.get(id) ?? []).every(([, c, r]) => c === "500" && r === "interrupted"),
        ),
      ]).size,
    );
    assert.deepEqual(
      [o.progress.Total, o.progress.Done, o.progress.Succeeded, o.progress.Failed],
      [DEVICES, DEVICES, DEVICES - failed, failed].map(String),
      "Progress",
    );
    console.log(
      `      ${mode}: seed ${SEED}, ${DEVICES} devices, ${RUNS} kills, ${Date.now() - started} ms; ` +
        `${dispatchedAtKill.size} devices dispatched without a result at a kill, ` +
        (mode === "exec" ? `${interrupted} recorded 500 interrupted` : `${reran} ran more than one session`) +
        `\n        ${log.join("\n        ")}`,
    );
  }

  it(`idempotent job (Get + Replace): ${RUNS} kills, every device done once, reruns only where dispatched`, async () => {
    await crashRun("idempotent");
  });

  it(`non-idempotent job (Exec): ${RUNS} kills, dispatched devices end 500 interrupted, no Exec twice`, async () => {
    await crashRun("exec");
  });
});
