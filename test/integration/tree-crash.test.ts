/**
 * Crash safety of the tree (issue #3): a child process applies a stream of DM messages to one
 * database file, one `tree.transaction` per message, and prints `ACK <n>` once a message has
 * committed; we SIGKILL it at a random moment, again and again on the same file, and check after
 * every kill that
 * - the file opens (Store.open, which runs quick_check) and passes `PRAGMA integrity_check`;
 * - every acknowledged message is there: the tree below ./Crash is exactly the state after message
 *   D of the stream, where D (`./Crash/Last`) is the last acknowledged message or the one after it
 *   (committed, killed before its ACK; such a message, once seen, must stay too); nothing of
 *   message D + 1 is visible;
 * - no Atomic is half applied: ./Crash/Atomic/A..E hold one value;
 * - the next child resumes at D + 1.
 *
 * The check runs on a copy of the file and its WAL taken after the kill, so that the next child
 * finds the file exactly as the killed one left it and does the crash recovery itself; the original
 * is checked the same way at the end.
 *
 * SIGKILL tests the process dying, not the machine: the OS still writes back what was written, so
 * this proves the transaction boundaries and the ACK ordering, not synchronous=FULL (a power cut).
 *
 * DMGW_CRASH_RUNS sets the number of kills (default 20), DMGW_CRASH_SEED the seed of the message
 * stream and of the kill timing (printed on failure).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import {
  ATOMIC_LEAVES,
  CRASH_SERVER_ID,
  LAST_PATH,
  emptyState,
  planMessage,
  type CrashState,
} from "../helpers/tree-crash-child.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHILD = fileURLToPath(new URL("../helpers/tree-crash-child.ts", import.meta.url));

const RUNS = Number(process.env["DMGW_CRASH_RUNS"] ?? "20");
const SEED = process.env["DMGW_CRASH_SEED"] ?? String(Math.floor(Math.random() * 1e9));
/** A child that has not reached its kill moment by then is stuck: the run fails. */
const RUN_LIMIT_MS = 20_000;

/** How a run's kill moment is chosen. */
type KillPlan =
  | { readonly mode: "acks"; readonly acks: number; readonly jitterMs: number }
  | { readonly mode: "ready"; readonly delayMs: number }
  | { readonly mode: "spawn"; readonly delayMs: number };

interface RunOutcome {
  /** The message the child said it resumes at, when it got that far. */
  readonly ready: number | undefined;
  readonly acks: readonly number[];
  /** The child ended by itself (not our SIGKILL). */
  readonly exitedByItself: boolean;
  /** It had not reached its kill moment within RUN_LIMIT_MS. */
  readonly stuck: boolean;
  /** Lines on stdout other than READY and ACK. */
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

function describePlan(plan: KillPlan): string {
  switch (plan.mode) {
    case "acks":
      return `after ${plan.acks} ACKs + ${plan.jitterMs.toFixed(1)} ms`;
    case "ready":
      return `${plan.delayMs} ms after READY`;
    case "spawn":
      return `${plan.delayMs} ms after spawn`;
  }
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

/** Runs one child on `db` and SIGKILLs it at the moment `plan` says; resolves once it is gone. */
function runChild(db: string, plan: KillPlan): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, db, SEED], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    });
    alive.add(child);
    let ready: number | undefined;
    const acks: number[] = [];
    let stderr = "";
    let pending = "";
    let killed = false;
    let stuck = false;
    const unexpected: string[] = [];
    const timers: NodeJS.Timeout[] = [];
    const kill = (): void => {
      if (killed) return;
      killed = true;
      child.kill("SIGKILL");
    };
    const later = (ms: number, fn: () => void): void => {
      timers.push(setTimeout(fn, ms));
    };

    later(RUN_LIMIT_MS, () => {
      stuck = !killed;
      kill();
    });
    if (plan.mode === "spawn") later(plan.delayMs, kill);
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
        const [word, num] = line.split(" ");
        if (word === "READY") {
          ready = Number(num);
          if (plan.mode === "ready") later(plan.delayMs, kill);
        } else if (word === "ACK") {
          acks.push(Number(num));
          if (plan.mode === "acks" && acks.length === plan.acks) later(plan.jitterMs, kill);
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
      resolve({ ready, acks, exitedByItself: !killed, stuck, unexpected, code, signal, stderr });
    });
  });
}

interface Observed {
  /** `./Crash/Last`: the last message the file holds (0 when none). */
  readonly last: number;
  readonly leaves: Map<string, string>;
  readonly groups: string[];
}

/** Opens a database as the gateway does and reads what the stream wrote. */
function observe(path: string): Observed {
  // Killed before its first open created the file: nothing was ever committed.
  if (!existsSync(path)) return { last: 0, leaves: new Map(), groups: [] };
  const store = Store.open(path, { create: false });
  try {
    assert.equal(store.db.pragma("integrity_check", { simple: true }), "ok");
    const tree = new DmTree(store);
    const lastValue = tree.read(LAST_PATH)?.value;
    const last = typeof lastValue === "string" ? Number(lastValue) : 0;
    const leaves = new Map<string, string>();
    const groups: string[] = [];
    if (last > 0) {
      const list = tree.get(CRASH_SERVER_ID, "./Crash?list=StructData");
      assert.equal(list.kind, "list", `Get ./Crash?list=StructData: ${JSON.stringify(list)}`);
      for (const node of list.nodes) {
        if (node.format === "node") {
          if (/^\.\/Crash\/M\d+$/.test(node.path)) groups.push(node.path);
        } else leaves.set(node.path, typeof node.value === "string" ? node.value : "<bytes>");
      }
    }
    return { last, leaves, groups };
  } finally {
    store.close();
  }
}

/** Opens a copy of the file as the killed child left it (main file and WAL; SQLite rebuilds -shm). */
function observeCopy(db: string, checkDir: string): Observed {
  if (!existsSync(db)) return observe(db);
  rmSync(checkDir, { recursive: true, force: true });
  mkdirSync(checkDir);
  const copy = join(checkDir, "copy.sqlite");
  copyFileSync(db, copy);
  if (existsSync(`${db}-wal`)) copyFileSync(`${db}-wal`, `${copy}-wal`);
  return observe(copy);
}

function assertState(observed: Observed, expected: CrashState, context: string): void {
  const atomic = ATOMIC_LEAVES.map((l) => observed.leaves.get(`./Crash/Atomic/${l}`));
  assert.equal(new Set(atomic).size, 1, `${context}: half an Atomic is visible: A..E = ${atomic.join(",")}`);
  const expectedGroups = [...expected.groups.keys()].map((g) => `./Crash/M${g}`).sort();
  assert.deepEqual([...observed.groups].sort(), expectedGroups, `${context}: the groups M<n> differ`);
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [path, value] of expected.leaves) {
    const got = observed.leaves.get(path);
    if (got === undefined) missing.push(path);
    else if (got !== value) wrong.push(`${path}=${got.slice(0, 20)} (expected ${value.slice(0, 20)})`);
  }
  const extra = [...observed.leaves.keys()].filter((p) => !expected.leaves.has(p));
  assert.deepEqual(
    { missing: missing.slice(0, 5), wrong: wrong.slice(0, 5), extra: extra.slice(0, 5) },
    { missing: [], wrong: [], extra: [] },
    `${context}: the leaves differ from the stream's state`,
  );
}

describe("tree crash safety (SIGKILL during a stream of DM messages)", function () {
  this.timeout(60_000 * Math.max(1, RUNS / 20));
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-crash-"));
  });

  afterEach(async () => {
    await Promise.all([...alive].map(killAndWait));
  });

  after(async () => {
    await Promise.all([...alive].map(killAndWait));
    rmSync(dir, { recursive: true, force: true });
  });

  it(`keeps every acknowledged message and no half message over ${RUNS} kills on one file`, async () => {
    assert.ok(Number.isInteger(RUNS) && RUNS > 0, `DMGW_CRASH_RUNS must be a positive integer`);
    const db = join(dir, "dmgw.sqlite");
    const random = prng(SEED);
    // The stream's state after `modelAt` messages; D never goes back, so it only moves forward.
    const model = emptyState();
    let modelAt = 0;
    let lastAck = 0;
    let applied = 0;
    let unacknowledged = 0;
    let atomicsSeen = 0;
    for (let run = 1; run <= RUNS; run++) {
      const draw = random();
      const plan: KillPlan =
        draw < 0.45
          ? { mode: "acks", acks: 1 + Math.floor(random() * 300), jitterMs: random() * 3 }
          : draw < 0.9
            ? { mode: "ready", delayMs: Math.floor(random() * 300) }
            : { mode: "spawn", delayMs: Math.floor(random() * 700) };
      const context = `seed ${SEED}, run ${run} (kill ${describePlan(plan)})`;
      const outcome = await runChild(db, plan);
      assert.ok(
        !outcome.exitedByItself,
        `${context}: the child ended by itself (code ${outcome.code}, signal ${outcome.signal}):\n${outcome.stderr}`,
      );
      assert.equal(outcome.signal, "SIGKILL", context);
      assert.ok(!outcome.stuck, `${context}: no kill moment within ${RUN_LIMIT_MS} ms:\n${outcome.stderr}`);
      assert.deepEqual(outcome.unexpected, [], `${context}: unexpected lines on the child's stdout`);
      if (outcome.ready !== undefined)
        assert.equal(outcome.ready, applied + 1, `${context}: the child resumed at the wrong message`);
      outcome.acks.forEach((n, i) => {
        assert.equal(n, (outcome.ready ?? 0) + i, `${context}: ACKs out of order`);
      });
      lastAck = Math.max(lastAck, ...outcome.acks);

      const observed = observeCopy(db, join(dir, "check"));
      assert.ok(observed.last >= applied, `${context}: message ${applied} was committed, now gone`);
      // What must be there: the last ACK, or what an earlier check found committed without one.
      const known = Math.max(lastAck, applied);
      assert.ok(
        observed.last === known || observed.last === known + 1,
        `${context}: the file holds message ${observed.last}; last ACK ${lastAck}, last seen ${applied}`,
      );
      if (observed.last > known) unacknowledged++;
      while (modelAt < observed.last) {
        modelAt++;
        if (planMessage(SEED, modelAt, model).atomic) atomicsSeen++;
      }
      if (observed.last > 0) assertState(observed, model, context);
      applied = observed.last;
    }
    // The original file, after the last kill, as the gateway would open it.
    const final = observe(db);
    assert.equal(final.last, applied);
    assertState(final, model, `seed ${SEED}, the original file`);
    console.log(
      `      ${RUNS} kills, seed ${SEED}: ${applied} messages applied (${atomicsSeen} Atomics), ` +
        `${unacknowledged} kill(s) between a commit and its ACK`,
    );
  });
});
