/**
 * Crash safety of the alert outbox (design.md: "nothing acknowledged is ever lost"): a child
 * process enqueues alerts into one database file and prints `ACK <id> <correlator>` once an enqueue
 * has returned (and `GONE <id>` once an acknowledge has); we SIGKILL it at a random moment, again
 * and again on the same file, and check after every kill, on the file as the next start opens it,
 * that
 * - it opens (Store.open runs quick_check) and passes `PRAGMA integrity_check`;
 * - every ACKed alert is pending, with its correlator and its items intact, unless it was GONE
 *   (or it is the oldest one, which the child may have acknowledged just before the kill, before
 *   printing its GONE);
 * - no GONE alert is pending;
 * - every pending alert is whole (an alert committed but killed before its ACK may be there too).
 *
 * SIGKILL tests the process dying, not the machine (see tree-crash.test.ts).
 *
 * DMGW_OUTBOX_CRASH_RUNS sets the number of kills (default 12), DMGW_CRASH_SEED the seed of the
 * kill timing (printed on failure).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AlertOutbox, type OutboxAlert } from "../../src/northbound/outbox.js";
import { Store } from "../../src/tree/store.js";
import { CRASH_BOUNDS, CRASH_SERVER_ID, payloadFor } from "../helpers/outbox-child.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHILD = fileURLToPath(new URL("../helpers/outbox-child.ts", import.meta.url));

const RUNS = Number(process.env["DMGW_OUTBOX_CRASH_RUNS"] ?? "12");
const SEED = process.env["DMGW_CRASH_SEED"] ?? String(Math.floor(Math.random() * 1e9));
/** A child that has not reached its kill moment by then is stuck: the run fails. */
const RUN_LIMIT_MS = 20_000;

interface RunOutcome {
  readonly ready: boolean;
  /** id -> correlator, in the order printed. */
  readonly acks: ReadonlyMap<string, string>;
  readonly gone: readonly string[];
  readonly exitedByItself: boolean;
  readonly stuck: boolean;
  readonly unexpected: readonly string[];
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

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

/** The children alive right now: the hooks kill whatever a failure left behind. */
const alive = new Set<ChildProcess>();

function killAndWait(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once("exit", () => {
      resolve();
    });
    child.kill("SIGKILL");
  });
}

/** Runs one child; SIGKILLs it `delayMs` after READY (or `spawnDelayMs` after spawn, when given). */
function runChild(db: string, run: number, delayMs: number, spawnDelayMs?: number): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, db, `r${run}`], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    });
    alive.add(child);
    let ready = false;
    const acks = new Map<string, string>();
    const gone: string[] = [];
    const unexpected: string[] = [];
    let stderr = "";
    let pending = "";
    let killed = false;
    let stuck = false;
    const timers: NodeJS.Timeout[] = [];
    const kill = (): void => {
      if (killed) return;
      killed = true;
      child.kill("SIGKILL");
    };
    timers.push(
      setTimeout(() => {
        stuck = !killed;
        kill();
      }, RUN_LIMIT_MS),
    );
    if (spawnDelayMs !== undefined) timers.push(setTimeout(kill, spawnDelayMs));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const [word, id, correlator] = line.split(" ");
        if (word === "READY") {
          ready = true;
          timers.push(setTimeout(kill, delayMs));
        } else if (word === "ACK" && id !== undefined && correlator !== undefined) {
          acks.set(id, correlator);
        } else if (word === "GONE" && id !== undefined) {
          gone.push(id);
        } else {
          unexpected.push(line);
        }
      }
    });
    child.on("error", reject);
    // "close": the process is gone and its stdout read to the end, so every ACK it wrote is here.
    child.on("close", (code, signal) => {
      for (const t of timers) clearTimeout(t);
      alive.delete(child);
      resolve({ ready, acks, gone, exitedByItself: !killed, stuck, unexpected, code, signal, stderr });
    });
  });
}

/** Opens the file as the gateway does and reads the pending alerts. */
function observe(path: string): Map<string, OutboxAlert> {
  if (!existsSync(path)) return new Map();
  const store = Store.open(path, { create: false });
  try {
    assert.equal(store.db.pragma("integrity_check", { simple: true }), "ok");
    const outbox = new AlertOutbox(store, CRASH_BOUNDS);
    assert.equal(outbox.stats().dropped, 0);
    return new Map(outbox.pending(CRASH_SERVER_ID).map((a) => [a.id, a]));
  } finally {
    store.close();
  }
}

/** An alert as the child wrote it: its items follow from its correlator. */
function assertWhole(alert: OutboxAlert, context: string): void {
  const correlator = alert.correlator ?? "";
  const [first, second] = alert.items;
  assert.deepEqual(
    [alert.code, first?.data, second?.data],
    [
      1226,
      { kind: "text", text: payloadFor(correlator) },
      { kind: "opaque", bytes: new TextEncoder().encode(correlator) },
    ],
    `${context}: alert ${alert.id} (${correlator}) is not whole`,
  );
}

describe("alert outbox crash safety (SIGKILL while enqueueing)", function () {
  this.timeout(60_000 * Math.max(1, RUNS / 12));
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-outbox-crash-"));
  });

  afterEach(async () => {
    await Promise.all([...alive].map(killAndWait));
  });

  after(async () => {
    await Promise.all([...alive].map(killAndWait));
    rmSync(dir, { recursive: true, force: true });
  });

  it(`keeps every ACKed alert over ${RUNS} kills on one file`, async () => {
    assert.ok(Number.isInteger(RUNS) && RUNS >= 10, "DMGW_OUTBOX_CRASH_RUNS must be an integer >= 10");
    const db = join(dir, "dmgw.sqlite");
    const random = prng(SEED);
    /** Every ACKed alert not yet GONE: id -> correlator. */
    const owed = new Map<string, string>();
    const gone = new Set<string>();
    let acked = 0;
    let unacknowledged = 0;
    let unreported = 0;
    for (let run = 1; run <= RUNS; run++) {
      // Mostly while enqueueing; one run in ten during startup (open, schema, first enqueue).
      const early = random() < 0.1;
      const delayMs = Math.floor(random() * 250);
      const outcome = await runChild(db, run, delayMs, early ? Math.floor(random() * 600) : undefined);
      const context = `seed ${SEED}, run ${run} (kill ${early ? "after spawn" : `${delayMs} ms after READY`})`;
      assert.ok(
        !outcome.exitedByItself,
        `${context}: the child ended by itself (code ${outcome.code}, signal ${outcome.signal}):\n${outcome.stderr}`,
      );
      assert.equal(outcome.signal, "SIGKILL", context);
      assert.ok(!outcome.stuck, `${context}: no kill moment within ${RUN_LIMIT_MS} ms:\n${outcome.stderr}`);
      assert.deepEqual(outcome.unexpected, [], `${context}: unexpected lines on the child's stdout`);
      for (const [id, correlator] of outcome.acks) owed.set(id, correlator);
      for (const id of outcome.gone) {
        owed.delete(id);
        gone.add(id);
      }
      acked += outcome.acks.size;

      const pending = observe(db);
      const missing = [...owed].filter(([id, c]) => pending.get(id)?.correlator !== c);
      // Acknowledged (committed), killed before its GONE: only the oldest owed alert, absent.
      const oldest = String(Math.min(...[...owed.keys()].map(Number)));
      const ackedUnseen = missing.length === 1 && missing[0]?.[0] === oldest && !pending.has(oldest);
      if (ackedUnseen) {
        owed.delete(oldest);
        gone.add(oldest);
        unreported++;
      } else {
        assert.deepEqual(missing.slice(0, 5), [], `${context}: ACKed alerts are gone (${missing.length})`);
      }
      const back = [...gone].filter((id) => pending.has(id));
      assert.deepEqual(back, [], `${context}: acknowledged alerts are pending again`);
      for (const alert of pending.values()) assertWhole(alert, context);
      const extra = [...pending.keys()].filter((id) => !owed.has(id));
      // Committed, killed before the ACK: allowed, and from now on owed like an ACKed one.
      unacknowledged += extra.length;
      for (const id of extra) owed.set(id, pending.get(id)?.correlator ?? "");
    }
    assert.ok(acked > 0, `seed ${SEED}: no run got to ACK an alert`);
    console.log(
      `      ${RUNS} kills, seed ${SEED}: ${acked} alerts ACKed, ${gone.size} acknowledged, ` +
        `${unacknowledged} committed without an ACK, ${unreported} acknowledged without a GONE`,
    );
  });
});
