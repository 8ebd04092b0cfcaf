/**
 * The alert outbox survives a SIGKILL of the gateway process, end to end: a child process runs the
 * gateway (openNorthboundGateway + NorthboundService over HTTP) against the DM server simulator
 * behind a proxy that holds each answer back a little, so sessions are in flight when the kill
 * lands. The parent feeds it alerts (`enqueue <correlator>`; the child prints `acked <correlator>`
 * once the enqueue committed), SIGKILLs it at a random moment, restarts it on the same file, again
 * and again; a last child delivers what is left (start() sends what the outbox holds). Then:
 * - every acked correlator reached the simulator at least once (duplicates are allowed: a kill
 *   between the server's answer and the outbox's acknowledgement sends an alert again);
 * - after every kill the file opens cleanly (Store.open runs quick_check; integrity_check is ok)
 *   and every acked alert is still pending or already delivered;
 * - the outbox is empty at the end, and no child is left running (checked by PID).
 *
 * DMGW_NB_CRASH_RUNS sets the number of kills (default 8), DMGW_CRASH_SEED the seed of the timing.
 */
import { LineChild } from "../helpers/line-child.js";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import { Store } from "../../src/tree/store.js";
import { CRASH_CHILD_BOUNDS } from "../helpers/northbound-gateway-child.js";
import { NB_DEV_ID, NB_SERVER_ID, nbDeviceSettings } from "../helpers/northbound.js";
import { TamperProxy } from "../helpers/tamper-proxy.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHILD = fileURLToPath(new URL("../helpers/northbound-gateway-child.ts", import.meta.url));

const RUNS = Number(process.env["DMGW_NB_CRASH_RUNS"] ?? "8");
const SEED = process.env["DMGW_CRASH_SEED"] ?? String(Math.floor(Math.random() * 1e9));
/** A child that has not printed READY (or finished its drain) by then is stuck. */
const STEP_LIMIT_MS = 20_000;

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

/** A gateway child: its stdout lines as they come, and its end. */
class Child extends LineChild {
  constructor(db: string, url: string) {
    super(CHILD, [db, url], ROOT);
  }

  /** Correlators the child printed `acked` for. */
  acked(): string[] {
    return this.lines.flatMap((l) => {
      const [word, correlator] = l.split(" ");
      return word === "acked" && correlator !== undefined ? [correlator] : [];
    });
  }

  override waitLine(prefix: string, limitMs = STEP_LIMIT_MS): Promise<string | undefined> {
    return super.waitLine(prefix, limitMs);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Opens the file as the gateway does (quick_check), checks integrity, reads the pending correlators. */
function observe(db: string): string[] {
  const store = Store.open(db, { create: false });
  try {
    assert.equal(store.db.pragma("integrity_check", { simple: true }), "ok");
    const outbox = new AlertOutbox(store, CRASH_CHILD_BOUNDS);
    assert.equal(outbox.stats().dropped, 0, "nothing dropped by the outbox bounds");
    return outbox.pending(NB_SERVER_ID).map((a) => a.correlator ?? "");
  } finally {
    store.close();
  }
}

describe("northbound crash safety (SIGKILL of the gateway process mid-session)", function () {
  this.timeout(60_000 + RUNS * 15_000);
  let dir: string;
  let proxy: TamperProxy;
  let sim: DmServerSimulator;
  const children: Child[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-nb-crash-"));
    proxy = new TamperProxy();
    const { origin } = await proxy.start();
    sim = new DmServerSimulator({ publicOrigin: origin });
    proxy.target = new URL((await sim.start()).url).origin;
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
  });

  after(async () => {
    await Promise.all(children.map((c) => c.kill()));
    await proxy.stop();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`delivers every acked alert over ${RUNS} kills and a restart`, async () => {
    assert.ok(Number.isInteger(RUNS) && RUNS >= 1, "DMGW_NB_CRASH_RUNS must be a positive integer");
    const db = join(dir, "gw.db");
    const url = `${proxy.origin}/dm`;
    const random = prng(SEED);
    // Each answer held back 10..110 ms: sessions last long enough for kills to land inside them.
    proxy.hook = () => ({ delayMs: 10 + Math.floor(random() * 100) });
    const acked = new Set<string>();
    let sessionLines = 0;

    for (let run = 1; run <= RUNS; run++) {
      const child = new Child(db, url);
      children.push(child);
      const context = `seed ${SEED}, run ${run}`;
      assert.ok(
        (await child.waitLine("READY")) !== undefined,
        `${context}: no READY (exited: ${child.exited}):\n${child.stderr}`,
      );
      const killAt = Date.now() + 50 + Math.floor(random() * 700);
      let k = 0;
      while (Date.now() < killAt) {
        child.send(`enqueue r${run}.${++k}`);
        await sleep(5 + Math.floor(random() * 60));
      }
      const end = await child.kill();
      assert.equal(end.signal, "SIGKILL", `${context}: the child ended by itself:\n${child.stderr}`);
      assert.ok(!running(child.pid), `${context}: the child ${child.pid} still runs`);
      for (const c of child.acked()) acked.add(c);
      sessionLines += child.lines.filter((l) => l.startsWith("session ")).length;
      assert.deepEqual(
        child.lines.filter((l) => !/^(READY|acked \S+|session (ok|failed) \d+)$/.test(l)),
        [],
        `${context}: unexpected lines on the child's stdout`,
      );

      // The file opens cleanly, and nothing acked is lost: pending, or already at the server.
      const pending = new Set(observe(db));
      const delivered = new Set(sim.alerts().map((a) => a.alert.correlator));
      const lost = [...acked].filter((c) => !pending.has(c) && !delivered.has(c));
      assert.deepEqual(lost, [], `${context}: acked alerts neither pending nor delivered`);
    }
    assert.ok(acked.size > 0, `seed ${SEED}: no run got to ack an alert`);

    // A last start delivers what the outbox holds.
    const last = new Child(db, url);
    children.push(last);
    assert.ok((await last.waitLine("READY")) !== undefined, `no READY:\n${last.stderr}`);
    last.send("drain");
    const drained = await last.waitLine("drained ");
    assert.ok(drained !== undefined, `seed ${SEED}: the last child did not drain:\n${last.stderr}`);
    last.send("exit");
    const end = await last.closed;
    assert.equal(end.code, 0, `the last child exited with ${end.code} (${end.signal}):\n${last.stderr}`);

    const delivered = sim.alerts().map((a) => a.alert.correlator);
    const missing = [...acked].filter((c) => !delivered.includes(c));
    assert.deepEqual(missing, [], `seed ${SEED}: acked alerts never reached the server`);
    assert.deepEqual(observe(db), [], "the outbox is empty at the end");
    for (const c of children) assert.ok(!running(c.pid), `child ${c.pid} still runs`);
    const duplicates = delivered.length - new Set(delivered).size;
    console.log(
      `      ${RUNS} kills, seed ${SEED}: ${acked.size} alerts acked, ${delivered.length} delivered ` +
        `(${duplicates} again after a kill), ${sessionLines} sessions ended before the kills, last: ${drained}`,
    );
  });
});
