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
