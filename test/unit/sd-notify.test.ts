/**
 * sd_notify through the real /usr/bin/systemd-notify (systemd 252) against a fake notify socket
 * (test/helpers/notify-socket.ts); failure cases use small shell scripts in place of the binary.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MemoryLogger } from "../../src/core/log.js";
import type { HealthReport } from "../../src/runtime/parts.js";
import {
  createNotifier,
  startWatchdog,
  watchdogPeriodMs,
  SYSTEMD_NOTIFY,
} from "../../src/runtime/sd-notify.js";
import { start, type NotifySocket } from "../helpers/notify-socket.js";

const HEALTHY: HealthReport = { ok: true, eventLoopLagMs: 1, storeWritable: true, problems: [] };
const SICK: HealthReport = {
  ok: false,
  eventLoopLagMs: 1,
  storeWritable: false,
  problems: ["store is not writable: SQLITE_BUSY: database is locked"],
};

describe("sd_notify", function () {
  let sock: NotifySocket;
  let dir: string;

  before(function () {
    assert.ok(existsSync(SYSTEMD_NOTIFY), `${SYSTEMD_NOTIFY} is needed (apt-get install systemd)`);
  });

  beforeEach(async function () {
    sock = await start();
    dir = mkdtempSync(join(tmpdir(), "dmgw-sdn-"));
  });

  afterEach(async function () {
    await sock.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A stand-in for systemd-notify: a shell script. */
  function script(name: string, body: string): string {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  }

  describe("createNotifier", function () {
    it("sends READY=1 with STATUS and MAINPID of this process", async function () {
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      assert.equal(n.enabled, true);
      await n.ready("up: 2 drivers, northbound connected");
      const msg = await sock.waitFor((m) => m.includes("READY=1"), 2000);
      const vars = msg.split("\n");
      assert.ok(vars.includes("READY=1"), msg);
      assert.ok(vars.includes("STATUS=up: 2 drivers, northbound connected"), msg);
      assert.ok(vars.includes(`MAINPID=${process.pid}`), msg);
    });

    it("sends STOPPING=1", async function () {
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      await n.stopping();
      assert.deepEqual(sock.messages(), ["STOPPING=1"]);
    });

    it("keeps a STATUS on one line (sd_notify(3) separates variables by newlines)", async function () {
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      await n.status("first\nREADY=1");
      assert.deepEqual(sock.messages(), ["STATUS=first READY=1"]);
    });

    it("keeps the order of messages sent without waiting", async function () {
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      const all = [
        n.status("one"),
        n.status("two"),
        n.ready(),
        n.watchdog(),
        n.status("three"),
        n.stopping(),
      ];
      await Promise.all(all);
      assert.deepEqual(
        sock.messages().map((m) => m.split("\n")[0]),
        ["STATUS=one", "STATUS=two", "READY=1", "WATCHDOG=1", "STATUS=three", "STOPPING=1"],
      );
    });

    it("without NOTIFY_SOCKET is disabled, sends nothing and spawns nothing", async function () {
      const marker = join(dir, "spawned");
      const command = script("notify", `touch ${marker}`);
      const n = createNotifier({ PATH: process.env["PATH"] ?? "" }, { command });
      assert.equal(n.enabled, false);
      await n.ready("x");
      await n.watchdog();
      await n.status("y");
      await n.stopping();
      const w = startWatchdog(n, () => HEALTHY, { WATCHDOG_USEC: "20000" });
      await sleep(100);
      w.stop();
      assert.equal(existsSync(marker), false, "the command was not run");
      assert.deepEqual(sock.messages(), []);
    });

    it("passes only NOTIFY_SOCKET to the child, not the rest of the environment", async function () {
      const out = join(dir, "env");
      const command = script("notify", `env > ${out}`);
      const n = createNotifier({ NOTIFY_SOCKET: sock.path, DMGW_SECRET: "hunter2" }, { command });
      await n.watchdog();
      const env = readFileSync(out, "utf8");
      assert.match(env, new RegExp(`^NOTIFY_SOCKET=${sock.path}$`, "m"));
      assert.doesNotMatch(env, /hunter2/);
    });

    it("logs a missing systemd-notify at warn and resolves", async function () {
      const log = new MemoryLogger();
      const n = createNotifier({ NOTIFY_SOCKET: sock.path }, { log, command: join(dir, "absent") });
      await n.ready("secret-free status");
      const warns = log.records.filter((r) => r.level === "warn");
      assert.equal(warns.length, 1);
      assert.match(warns[0]!.text, /READY failed/);
      assert.match(String(warns[0]!.fields["reason"]), /ENOENT.*\[Runtime_NotifyFailed\]/);
      assert.doesNotMatch(log.dump(), /secret-free status/, "the STATUS text is not logged");
    });

    it("logs a failing systemd-notify at warn and keeps sending the next messages", async function () {
      const log = new MemoryLogger();
      const fails = script("notify", 'echo "Failed to notify init system: Permission denied" >&2; exit 1');
      const bad = createNotifier({ NOTIFY_SOCKET: sock.path }, { log, command: fails });
      await bad.stopping();
      assert.equal(log.records.filter((r) => r.level === "warn").length, 1);
      assert.match(
        String(log.records[0]!.fields["reason"]),
        /exited with 1: Failed to notify.*Permission denied/,
      );
      const good = createNotifier({ NOTIFY_SOCKET: sock.path }, { log });
      await good.stopping();
      assert.deepEqual(sock.messages(), ["STOPPING=1"]);
    });

    it("warns once for repeated failures of one kind, and says when it gets through again", async function () {
      const log = new MemoryLogger();
      const flag = join(dir, "fail");
      writeFileSync(flag, "");
      // Fails while the flag file exists, then behaves as systemd-notify would for WATCHDOG=1.
      const flaky = script("notify", `[ -e ${flag} ] && exit 1; exec ${SYSTEMD_NOTIFY} "$@"`);
      const n = createNotifier({ NOTIFY_SOCKET: sock.path }, { log, command: flaky });
      await n.watchdog();
      await n.watchdog();
      await n.watchdog();
      assert.deepEqual(
        log.records.map((r) => r.level),
        ["warn", "debug", "debug"],
      );
      rmSync(flag);
      await n.watchdog();
      assert.deepEqual(sock.messages(), ["WATCHDOG=1"]);
      assert.equal(log.records.at(-1)?.level, "info");
      assert.match(log.records.at(-1)?.text ?? "", /WATCHDOG delivered again/);
    });

    it("kills a hung systemd-notify after the timeout and goes on with the queue", async function () {
      const log = new MemoryLogger();
      const pidFile = join(dir, "pid");
      const hangs = script("notify", `echo $$ > ${pidFile}; exec sleep 30`);
      const n = createNotifier({ NOTIFY_SOCKET: sock.path }, { log, command: hangs, timeoutMs: 300 });
      const t0 = Date.now();
      const first = n.watchdog();
      const second = n.status("after");
      await Promise.all([first, second]);
      assert.ok(Date.now() - t0 < 2000, "both settled soon after the timeouts");
      const warns = log.records.filter((r) => r.level === "warn");
      assert.equal(warns.length, 2);
      assert.match(String(warns[0]!.fields["reason"]), /did not finish within 300 ms/);
      const pid = Number(readFileSync(pidFile, "utf8"));
      // The script exec'd sleep, so the PID is that of the process the timeout killed.
      assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
    });
  });

  describe("startWatchdog", function () {
    it("pings every WATCHDOG_USEC/2 only while the health check passes", async function () {
      const log = new MemoryLogger();
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      let report = HEALTHY;
      const w = startWatchdog(n, () => report, { WATCHDOG_USEC: "200000" }, log);
      try {
        await sleep(550);
        const healthyPings = sock.messages().filter((m) => m === "WATCHDOG=1").length;
        assert.ok(
          healthyPings >= 2 && healthyPings <= 6,
          `about 5 pings expected at 100 ms, got ${healthyPings}`,
        );

        report = SICK;
        await sleep(120); // a ping already spawned may still arrive
        const atSick = sock.messages().length;
        await sleep(400);
        assert.equal(sock.messages().length, atSick, "no ping while the health check fails");
        const warns = log.records.filter((r) => r.level === "warn");
        assert.equal(warns.length, 1, "one warn per state change, not per tick");
        assert.deepEqual(warns[0]!.fields["problems"], SICK.problems);

        report = HEALTHY;
        await sleep(350);
        assert.ok(sock.messages().length >= atSick + 2, "pings resume once healthy");
        assert.equal(log.records.filter((r) => r.level === "info").length, 1);
      } finally {
        w.stop();
      }
      await sleep(150);
      const atStop = sock.messages().length;
      await sleep(300);
      assert.equal(sock.messages().length, atStop, "no ping after stop()");
    });

    it("treats a throwing health check as failing and does not throw", async function () {
      const log = new MemoryLogger();
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      const w = startWatchdog(
        n,
        () => {
          throw new Error("boom");
        },
        { WATCHDOG_USEC: "100000" },
        log,
      );
      await sleep(300);
      w.stop();
      assert.deepEqual(sock.messages(), []);
      assert.match(JSON.stringify(log.records[0]?.fields), /health check failed: boom/);
    });

    it("starts no timer without WATCHDOG_USEC or when WATCHDOG_PID is another process", async function () {
      const n = createNotifier({ NOTIFY_SOCKET: sock.path });
      let calls = 0;
      const health = (): HealthReport => {
        calls++;
        return HEALTHY;
      };
      const a = startWatchdog(n, health, {});
      const b = startWatchdog(n, health, { WATCHDOG_USEC: "50000", WATCHDOG_PID: String(process.pid + 1) });
      await sleep(200);
      a.stop();
      b.stop();
      assert.equal(calls, 0);
      assert.deepEqual(sock.messages(), []);
    });

    it("reads the period as half of WATCHDOG_USEC", function () {
      assert.equal(watchdogPeriodMs({ WATCHDOG_USEC: "30000000" }), 15000);
      assert.equal(watchdogPeriodMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: String(process.pid) }), 15000);
      assert.equal(watchdogPeriodMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "1" }), undefined);
      assert.equal(watchdogPeriodMs({ WATCHDOG_USEC: "0" }), undefined);
      assert.equal(watchdogPeriodMs({ WATCHDOG_USEC: "soon" }), undefined);
      assert.equal(watchdogPeriodMs({}), undefined);
    });
  });
});
