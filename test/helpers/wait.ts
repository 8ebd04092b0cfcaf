/**
 * Waiting in integration tests: polling a condition with a deadline (a failure names what was
 * awaited), and the pty descriptors this process holds (a stopped serial link must leave none).
 */
import { readdirSync, readlinkSync } from "node:fs";

/** Resolves once `cond()` holds; rejects naming `what` after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** This process's open file descriptors on ptys (Linux): the serial ports of both ends. */
export function ptyFds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith("/dev/pts/")) out.push(`${fd} -> ${target}`);
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return out;
}
