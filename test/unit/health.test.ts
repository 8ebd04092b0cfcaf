/**
 * The health check behind the watchdog: event-loop lag and a writable store. The lag cases block
 * the loop for real (a busy wait), as monitorEventLoopDelay measures the real loop.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { HealthMonitor } from "../../src/runtime/health.js";
import type { HealthReport } from "../../src/runtime/parts.js";
import { Store } from "../../src/tree/store.js";
import { tempDir, type TempDir } from "../helpers/tree.js";

function busyWait(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // Blocking the event loop is the point.
  }
}

/** check() must never throw: this asserts it and returns the report. */
function checked(m: HealthMonitor): HealthReport {
  let report: HealthReport | undefined;
  assert.doesNotThrow(() => {
    report = m.check();
  });
  assert.ok(report !== undefined);
  return report;
}

describe("HealthMonitor", function () {
  let tmp: TempDir;
  let store: Store;
  const others: Database.Database[] = [];
  let monitor: HealthMonitor | undefined;

  beforeEach(function () {
    tmp = tempDir("dmgw-health-");
    store = Store.open(tmp.file("dmgw.db"));
  });

  afterEach(function () {
    monitor?.stop();
    monitor = undefined;
    for (const db of others.splice(0)) if (db.open) db.close();
    store.close();
    tmp.cleanup();
  });

  it("reports a writable store and a quiet loop as ok", async function () {
    monitor = new HealthMonitor({ store });
    monitor.start();
    await sleep(100);
    const r = checked(monitor);
    assert.deepEqual(r.problems, []);
    assert.equal(r.ok, true);
    assert.equal(r.storeWritable, true);
    assert.ok(r.eventLoopLagMs < 1000, `lag ${r.eventLoopLagMs}`);
  });

  it("changes nothing in the store (the probe is rolled back)", function () {
    monitor = new HealthMonitor({ store });
    const before = store.db.pragma("data_version", { simple: true }) as number;
    const watcher = new Database(store.path);
    others.push(watcher);
    const seenBefore = watcher.pragma("data_version", { simple: true }) as number;
    for (let i = 0; i < 3; i++) assert.equal(checked(monitor).storeWritable, true);
    // data_version changes for a connection when another one commits: the probe never commits.
    assert.equal(watcher.pragma("data_version", { simple: true }), seenBefore);
    assert.equal(store.db.pragma("data_version", { simple: true }), before);
    assert.equal(store.db.inTransaction, false);
    assert.equal(store.db.pragma("busy_timeout", { simple: true }), 5000, "the busy timeout is restored");
  });

  it("detects event-loop lag above maxLagMs, and measures each interval afresh", async function () {
    monitor = new HealthMonitor({ store, maxLagMs: 100 });
    monitor.start();
    await sleep(60);
    checked(monitor); // starts a fresh interval
    await sleep(60);
    busyWait(400);
    await sleep(60);
    const lagging = checked(monitor);
    assert.equal(lagging.ok, false);
    assert.equal(lagging.storeWritable, true);
    assert.ok(lagging.eventLoopLagMs >= 300, `lag ${lagging.eventLoopLagMs}`);
    assert.equal(lagging.problems.length, 1);
    assert.match(lagging.problems[0]!, /^event loop lag \d+ ms \(p99\) exceeds 100 ms$/);

    await sleep(200);
    const after = checked(monitor);
    assert.equal(after.ok, true, after.problems.join("; "));
    assert.ok(after.eventLoopLagMs < 100, `lag ${after.eventLoopLagMs}`);
  });

  it("reports no lag before start() and after stop()", async function () {
    monitor = new HealthMonitor({ store, maxLagMs: 50 });
    busyWait(100);
    await sleep(30);
    assert.equal(checked(monitor).eventLoopLagMs, 0);
    monitor.start();
    monitor.stop();
    busyWait(100);
    await sleep(30);
    assert.equal(checked(monitor).eventLoopLagMs, 0);
  });

  it("reports a store locked by another connection's exclusive transaction as not writable", function () {
    const other = new Database(store.path);
    others.push(other);
    other.exec("BEGIN EXCLUSIVE");
    monitor = new HealthMonitor({ store });
    const t0 = Date.now();
    const r = checked(monitor);
    assert.ok(Date.now() - t0 < 1000, "the probe waits briefly, not the 5 s busy timeout");
    assert.equal(r.ok, false);
    assert.equal(r.storeWritable, false);
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /^store is not writable: SQLITE_BUSY/);
    other.exec("ROLLBACK");
    assert.equal(checked(monitor).storeWritable, true, "writable again once the lock is gone");
  });

  it("reports a read-only connection as not writable", function () {
    const readOnly = new Database(store.path, { readonly: true });
    others.push(readOnly);
    // Store has no read-only mode; the monitor only uses `store.db`, so a store-shaped object is enough.
    const roStore = { db: readOnly, path: store.path } as unknown as Store;
    monitor = new HealthMonitor({ store: roStore });
    const r = checked(monitor);
    assert.equal(r.ok, false);
    assert.equal(r.storeWritable, false);
    assert.deepEqual(r.problems, ["store is opened read-only"]);
  });

  it("reports a closed store and a transaction left open as not writable", function () {
    monitor = new HealthMonitor({ store });
    store.db.exec("BEGIN");
    assert.deepEqual(checked(monitor).problems, ["store has a transaction left open"]);
    store.db.exec("ROLLBACK");
    store.close();
    const r = checked(monitor);
    assert.equal(r.storeWritable, false);
    assert.deepEqual(r.problems, ["store is closed"]);
  });

  it("reports a store whose file was overwritten with garbage as not writable, without throwing", function () {
    monitor = new HealthMonitor({ store });
    assert.equal(checked(monitor).storeWritable, true);
    // Another program clobbers the file (and its WAL index) under the open connection.
    writeFileSync(store.path, Buffer.alloc(8192, 0x5a));
    writeFileSync(`${store.path}-shm`, Buffer.alloc(32768, 0x5a));
    const r = checked(monitor);
    assert.equal(r.ok, false);
    assert.equal(r.storeWritable, false);
    assert.deepEqual(r.problems, ["store file is no longer a SQLite database (overwritten or truncated)"]);
  });

  it("reports a store whose file was deleted under the open connection as not writable", function () {
    monitor = new HealthMonitor({ store });
    rmSync(store.path);
    const r = checked(monitor);
    assert.equal(r.storeWritable, false);
    assert.deepEqual(r.problems, ["store file cannot be read: ENOENT"]);
  });
});
