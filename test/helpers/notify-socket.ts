/**
 * A fake sd_notify socket, standing in for PID 1's `$NOTIFY_SOCKET` (platform.md 8): a python3
 * child (notify_socket.py) binds an AF_UNIX datagram socket in a fresh temporary directory and
 * prints each datagram as a JSON line. Node cannot bind such a socket itself, hence the child.
 * `stop()` ends the child by its PID and removes the directory.
 *
 * `BARRIER=1` datagrams (systemd-notify's handshake, sd_notify_barrier(3)) are not messages the
 * service sends; they are left out of `messages()`.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stopChild } from "./process.js";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "notify_socket.py");

/** One datagram as received: its text and the sender PID systemd would attribute it to. */
export interface NotifyDatagram {
  readonly msg: string;
  readonly pid: number | null;
}

export interface NotifySocket {
  /** The socket's path: the value for `NOTIFY_SOCKET`. */
  readonly path: string;
  /** The messages received so far, in order (BARRIER=1 left out). */
  messages(): string[];
  /** The same with the sender PIDs. */
  datagrams(): NotifyDatagram[];
  /** The first message (received before or after the call) for which `pred` holds; rejects after `timeoutMs`. */
  waitFor(pred: (msg: string) => boolean, timeoutMs: number): Promise<string>;
  /** Kills the child by its PID, waits for it and removes the directory; idempotent. */
  stop(): Promise<void>;
}

/** Starts the fake socket; resolves once it is bound. */
export async function start(): Promise<NotifySocket> {
  const dir = mkdtempSync(join(tmpdir(), "dmgw-notify-"));
  const path = join(dir, "notify.sock");
  const child = spawn("python3", [SCRIPT, path], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => {
    child.once("close", () => {
      resolve();
    });
  });
  const received: NotifyDatagram[] = [];
  let waiters: (() => void)[] = [];
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  let listening = false;
  let stderr = "";
  let pending = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const parsed = JSON.parse(line) as { listening?: string; msg?: string; pid?: number | null };
      if (parsed.listening !== undefined) listening = true;
      else if (parsed.msg !== undefined && parsed.msg !== "BARRIER=1") {
        received.push({ msg: parsed.msg, pid: parsed.pid ?? null });
      }
    }
    wake();
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s: string) => {
    stderr = (stderr + s).slice(-2000);
  });
  child.once("close", wake);
  child.once("error", wake);

  const until = async (cond: () => boolean, timeoutMs: number): Promise<boolean> => {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > end) return cond();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 20);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= stopChild(child, exited).then(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    return stopping;
  };

  if (!(await until(() => listening, 5000))) {
    await stop();
    throw new Error(`the fake notify socket did not start (python3 ${SCRIPT}): ${stderr}`);
  }

  return {
    path,
    messages: () => received.map((d) => d.msg),
    datagrams: () => [...received],
    waitFor: async (pred, timeoutMs) => {
      const find = (): NotifyDatagram | undefined => received.find((d) => pred(d.msg));
      await until(() => find() !== undefined, timeoutMs);
      const found = find();
      if (found === undefined) {
        throw new Error(
          `no matching sd_notify message within ${timeoutMs} ms; got ${JSON.stringify(received.map((d) => d.msg))}`,
        );
      }
      return found.msg;
    },
    stop,
  };
}
