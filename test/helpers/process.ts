/**
 * Stopping a test peer (socat, mosquitto, dbus-daemon) by its PID: SIGTERM, SIGKILL after a grace
 * period (or at once when `abrupt`), and wait until it is gone.
 */
import type { ChildProcess } from "node:child_process";

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
    }, 2000);
  });
  await Promise.race([exited, forced]);
  clearTimeout(timer);
  await exited;
}
