/**
 * `dmgw run` under a fake service manager: `NOTIFY_SOCKET` points at test/helpers/notify-socket.ts,
 * so the real /usr/bin/systemd-notify delivers what the gateway sends. READY=1 must come only once
 * the gateway is ready: when it arrives, the control socket already answers `status` with this
 * process's PID and a passing health check, and the store is on disk with its schema. SIGTERM gives
 * STOPPING=1, then exit 0. WATCHDOG=1 pings come while the gateway is healthy.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import type { StatusResult } from "../../src/runtime/control-api.js";
import { connectControl } from "../../src/runtime/control-client.js";
import { APPLICATION_ID } from "../../src/tree/store.js";
import { start, type NotifySocket } from "../helpers/notify-socket.js";
import { stopChild } from "../helpers/process.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MAIN = join(ROOT, "src", "main.ts");

describe("dmgw run with NOTIFY_SOCKET", function () {
  this.timeout(60_000);
  let sock: NotifySocket;
  let dir: string;
  let child: ChildProcessWithoutNullStreams | undefined;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  let output = "";

  beforeEach(async function () {
    sock = await start();
    dir = mkdtempSync(join(tmpdir(), "dmgw-run-notify-"));
    output = "";
  });

  afterEach(async function () {
    if (child !== undefined && exited !== undefined) {
      const done = exited.then(() => undefined);
      await stopChild(child, done, true);
    }
    child = undefined;
    exited = undefined;
    await sock.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("sends READY=1 only once the gateway answers, WATCHDOG=1 while healthy, STOPPING=1 on SIGTERM, exits 0", async function () {
    const state = join(dir, "state");
    const runtime = join(dir, "run");
    const socketPath = join(runtime, "dmgw.sock");
    const config = join(dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        board: "sim",
        paths: { state, runtime },
        identity: { devId: "IMEI:490154203237518" },
        servers: [],
        northbound: { udpPush: false },
        southbound: { drivers: { http: { host: "127.0.0.1", port: 0 } } },
        control: { socket: socketPath },
        metrics: false,
        log: { level: "info", format: "json" },
      }),
    );
    const dbFile = join(state, "dmgw.db");

    const proc = spawn(process.execPath, ["--import", "tsx", MAIN, "run", "--config", config], {
      cwd: ROOT,
      env: {
        PATH: process.env["PATH"] ?? "/usr/bin:/bin",
        NOTIFY_SOCKET: sock.path,
        // 400 ms: a ping every 200 ms, so a few arrive within the test.
        WATCHDOG_USEC: "400000",
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    child = proc;
    const pid = proc.pid;
    assert.ok(pid !== undefined);
    proc.stdout.setEncoding("utf8");
    proc.stderr.setEncoding("utf8");
    proc.stdout.on("data", (s: string) => (output = (output + s).slice(-20_000)));
    proc.stderr.on("data", (s: string) => (output = (output + s).slice(-20_000)));
    exited = new Promise((resolve) => {
      proc.once("close", (code, signal) => {
        resolve({ code, signal });
      });
    });

    // Nothing but READY counts here; the moment it arrives, everything must already be up.
    const ready = await Promise.race([
      sock.waitFor((m) => m.split("\n").includes("READY=1"), 45_000),
      exited.then(({ code, signal }) => {
        throw new Error(`dmgw run ended (${code ?? signal ?? "?"}) before READY=1:\n${output}`);
      }),
    ]);
    assert.ok(existsSync(socketPath), "the control socket exists at READY");
    const control = await connectControl(socketPath, { timeoutMs: 2000 });
    let status: StatusResult;
    try {
      status = (await control.request("status")) as StatusResult;
    } finally {
      control.close();
    }
    assert.equal(status.pid, pid, "the service that answers is the one that sent READY");
    assert.equal(status.health.ok, true, status.health.problems.join("; "));

    const db = new Database(dbFile, { readonly: true, fileMustExist: true });
    try {
      assert.equal(db.pragma("application_id", { simple: true }), APPLICATION_ID);
      assert.ok((db.pragma("user_version", { simple: true }) as number) >= 1, "the schema is in place");
    } finally {
      db.close();
    }

    const vars = ready.split("\n");
    assert.ok(vars.includes(`MAINPID=${pid}`), ready);
    assert.ok(
      vars.some((v) => v.startsWith("STATUS=")),
      ready,
    );
    const before = sock.messages();
    assert.equal(before.filter((m) => m.includes("READY=1")).length, 1, "READY once");
    assert.equal(before.filter((m) => m === "STOPPING=1").length, 0);

    await sock.waitFor((m) => m === "WATCHDOG=1", 5000);

    proc.kill("SIGTERM");
    await sock.waitFor((m) => m === "STOPPING=1", 20_000);
    const end = await exited;
    assert.deepEqual(end, { code: 0, signal: null }, output);

    const all = sock.messages();
    const readyAt = all.findIndex((m) => m.split("\n").includes("READY=1"));
    const stoppingAt = all.indexOf("STOPPING=1");
    assert.ok(readyAt >= 0 && stoppingAt > readyAt, `order: ${JSON.stringify(all)}`);
  });
});
