/**
 * A virtual serial cable, for `dmgw demo` and the integration tests: `socat -d -d
 * pty,raw,echo=0,link=$T/a pty,raw,echo=0,link=$T/b` (platform.md 3, style.md 2.9). `startPtyPair()`
 * resolves once both links exist; `stop()` kills socat by its PID, waits for it to exit and removes
 * the temporary directory. A missing socat is an error naming the package to install; the demo
 * checks `socatPath()` first and skips the serial transport instead.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable, stopChild, waitUntilReady } from "./process.js";

export const SOCAT_MISSING = "install socat (apt-get install socat)";

/** socat's path, or undefined when it is not installed. */
export function socatPath(): string | undefined {
  return findExecutable("socat", ["/usr/bin", "/usr/local/bin"]);
}

export interface PtyPair {
  /** One end (the host side in tests). */
  readonly a: string;
  /** The other end (the device/simulator side). */
  readonly b: string;
  /** socat's PID. */
  readonly pid: number;
  /** The temporary directory holding the links. */
  readonly dir: string;
  /** Kills socat (SIGTERM, then SIGKILL after 2 s) and waits for it; idempotent. */
  stop(): Promise<void>;
}

export interface PtyPairOptions {
  /** Directory for the links (created if missing, kept by `stop()`); default a fresh temporary one (removed). */
  readonly dir?: string;
  /** How long to wait for both links; default 5000 ms. */
  readonly timeoutMs?: number;
  /**
   * Run socat in a process group of its own (the demo): a terminal's Ctrl-C then reaches only the
   * caller, which stops it in order. Default false: tests want it to die with an interrupted run.
   */
  readonly ownProcessGroup?: boolean;
}

/** Starts socat and waits until both pty links exist. */
export async function startPtyPair(options: PtyPairOptions = {}): Promise<PtyPair> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "dmgw-pty-"));
  mkdirSync(dir, { recursive: true });
  const a = join(dir, "a");
  const b = join(dir, "b");
  // A reused directory may still hold dangling links of an earlier socat; they must not count as ready.
  rmSync(a, { force: true });
  rmSync(b, { force: true });
  const child = spawn("socat", ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: options.ownProcessGroup === true,
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s: string) => {
    stderr = (stderr + s).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once("close", () => {
      resolve();
    });
  });
  const cleanup = (): void => {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitUntilReady(child, {
      name: "socat",
      until: `making the pty links ${a}, ${b}`,
      missing: SOCAT_MISSING,
      ready: () => existsSync(a) && existsSync(b),
      timeoutMs: options.timeoutMs ?? 5000,
      intervalMs: 10,
      log: () => stderr,
    });
  } catch (e) {
    await stopChild(child, exited);
    cleanup();
    throw e;
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error("socat started without a PID");

  let stopping: Promise<void> | undefined;
  return {
    a,
    b,
    pid,
    dir,
    stop: () => {
      stopping ??= stopChild(child, exited).then(cleanup);
      return stopping;
    },
  };
}
