/**
 * Stopping a helper process the demo or a test started (socat, mosquitto, dbus-daemon) by its PID:
 * SIGTERM, SIGKILL after a grace period (or at once when `abrupt`), and wait until it is gone. Never
 * by name: another socat on the machine is none of ours.
 */
import type { ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** How long a helper gets to exit on SIGTERM before SIGKILL, ms. */
const GRACE_MS = 2000;

/** `exited` settles when the child is gone (its "exit" or "close" event). */
export async function stopChild(child: ChildProcess, exited: Promise<void>, abrupt = false): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    await exited;
    return;
  }
  child.kill(abrupt ? "SIGKILL" : "SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const forced = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve();
    }, GRACE_MS);
  });
  await Promise.race([exited, forced]);
  clearTimeout(timer);
  await exited;
}

/** True while a process with this PID exists (signal 0 probes without signalling). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The executable `name`: on PATH, else in `extraDirs` (sbin directories are not on a non-root PATH,
 * yet Debian puts mosquitto there). Undefined when it is nowhere.
 */
export function findExecutable(name: string, extraDirs: readonly string[] = []): string | undefined {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), ...extraDirs];
  for (const dir of dirs) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  return undefined;
}

export interface ReadyWait {
  /** The program, for messages (`socat`, `mosquitto`). */
  readonly name: string;
  /** What it must do first, for messages (`listening on 1883`). */
  readonly until: string;
  /** The message when the program is not installed (ENOENT at spawn). */
  readonly missing: string;
  /** True once the program is ready; polled every `intervalMs`. */
  readonly ready: () => boolean | Promise<boolean>;
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** The program's recent output, for messages. */
  readonly log: () => string;
}

/**
 * Resolves once `w.ready()` says so. Rejects when the program is missing, exits first, or is not
 * ready within `w.timeoutMs`; the child's listeners are removed either way.
 */
export async function waitUntilReady(child: ChildProcess, w: ReadyWait): Promise<void> {
  // An object, not a variable: the listeners set it while the loop awaits.
  const seen: { failure?: Error } = {};
  const onError = (e: NodeJS.ErrnoException): void => {
    seen.failure ??= e.code === "ENOENT" ? new Error(w.missing, { cause: e }) : e;
  };
  const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    seen.failure ??= new Error(`${w.name} exited (${signal ?? String(code)}) before ${w.until}: ${w.log()}`);
  };
  const failIfSeen = (): void => {
    if (seen.failure !== undefined) throw seen.failure;
  };
  child.once("error", onError);
  child.once("exit", onExit);
  try {
    const started = Date.now();
    for (;;) {
      failIfSeen();
      if (await w.ready()) return;
      failIfSeen();
      if (Date.now() - started > w.timeoutMs)
        throw new Error(`${w.name} was not ${w.until} within ${w.timeoutMs} ms: ${w.log()}`);
      await new Promise((resolve) => setTimeout(resolve, w.intervalMs));
    }
  } finally {
    child.off("error", onError);
    child.off("exit", onExit);
  }
}
