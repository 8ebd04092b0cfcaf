/**
 * A real MQTT broker, for `dmgw demo` and the integration tests: Debian's mosquitto (platform.md 5) on a free loopback
 * port, with a generated config in a fresh temporary directory (listener 127.0.0.1, anonymous,
 * no persistence, log to stdout). `startMosquitto()` resolves once the port accepts connections;
 * `stop()` kills mosquitto by its PID, waits for it to exit and removes the directory. Start it again
 * on the same port (`{ port }`) to test a broker restart. A missing mosquitto binary is an error
 * with the install hint (tests fail with it, never skip); the demo checks `findMosquitto()` first
 * and runs its embedded broker (mqtt-broker.ts) instead.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable, stopChild, waitUntilReady } from "./process.js";

export const MOSQUITTO_MISSING =
  "mosquitto is not installed: run `apt-get install mosquitto` (Debian package; the MQTT tests need a real broker)";

export interface Mosquitto {
  readonly port: number;
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  readonly pid: number;
  /** The last lines mosquitto logged (for failure messages). */
  log(): string;
  /** Kills mosquitto (SIGTERM, SIGKILL after 2 s; `SIGKILL` at once when `abrupt`) and waits; idempotent. */
  stop(options?: { readonly abrupt?: boolean }): Promise<void>;
}

export interface MosquittoOptions {
  /** Port to listen on; default a free one (port 0 bound and released, then given to mosquitto). */
  readonly port?: number;
  /** How long to wait for the listener; default 5000 ms. */
  readonly timeoutMs?: number;
  /** Extra config lines. */
  readonly extraConfig?: readonly string[];
  /**
   * Run mosquitto in a process group of its own (the demo): a terminal's Ctrl-C then reaches only
   * the caller, which stops it in order. Default false: tests want it to die with an interrupted run.
   */
  readonly ownProcessGroup?: boolean;
}

/** The mosquitto binary: on PATH, else /usr/sbin (not on a non-root PATH). Undefined when missing. */
export function findMosquitto(): string | undefined {
  return findExecutable("mosquitto", ["/usr/sbin", "/usr/local/sbin"]);
}

/** A port that was free a moment ago (bind 0, read it back, release it). */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/** Starts mosquitto and waits until it accepts TCP connections. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const binary = findMosquitto();
  if (binary === undefined) throw new Error(MOSQUITTO_MISSING);
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "dmgw-mosquitto-"));
  const config = join(dir, "mosquitto.conf");
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence false",
      "log_dest stdout",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "log_type information",
      ...(options.extraConfig ?? []),
      "",
    ].join("\n"),
  );
  const child = spawn(binary, ["-c", config], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.ownProcessGroup === true,
  });
  let output = "";
  const keep = (s: string): void => {
    output = (output + s).slice(-8000);
  };
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise<void>((resolve) => {
    child.once("close", () => {
      resolve();
    });
  });
  const cleanup = (): void => {
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(child, {
      name: "mosquitto",
      until: `listening on ${port}`,
      missing: MOSQUITTO_MISSING,
      ready: () => listening(port),
      timeoutMs: options.timeoutMs ?? 5000,
      intervalMs: 20,
      log: () => output,
    });
  } catch (e) {
    await stopChild(child, exited, false);
    cleanup();
    throw e;
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error("mosquitto started without a PID");
  let stopping: Promise<void> | undefined;
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    pid,
    log: () => output,
    stop: (stopOptions) => {
      stopping ??= stopChild(child, exited, stopOptions?.abrupt === true).then(cleanup);
      return stopping;
    },
  };
}

/** A TCP connection to the port succeeds. */
function listening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}
