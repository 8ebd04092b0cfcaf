/**
 * sd_notify for dmgw under systemd (`Type=notify`, style.md 2.12, platform.md 8): READY once the
 * gateway is up, WATCHDOG pings while the health check passes, STOPPING on shutdown, STATUS lines.
 *
 * Node has no AF_UNIX SOCK_DGRAM socket (platform.md 8), so rather than a native addon each message
 * spawns `/usr/bin/systemd-notify` with `$NOTIFY_SOCKET`:
 *
 *   Notifier.ready()  --queue-->  spawn systemd-notify --ready --pid=<node> --status=..  --> $NOTIFY_SOCKET
 *                     (one at a time, killed after a timeout; a failure is a warn line, never a throw)
 *
 * systemd 252's systemd-notify sends `BARRIER=1` after the message and waits until systemd has read
 * it (sd_notify_barrier(3)), so a message is processed before its sender exits and the next one is
 * spawned: the queue keeps the messages in order. As a non-root user the datagram carries the
 * child's PID, not node's; the unit therefore needs `NotifyAccess=all` (systemd.service(5)), and
 * READY carries `MAINPID=` so that systemd keeps watching node, not the short-lived child.
 */
import { spawn } from "node:child_process";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import type { HealthReport } from "./parts.js";

/** The systemd-notify of Debian 12 and Raspberry Pi OS. */
export const SYSTEMD_NOTIFY = "/usr/bin/systemd-notify";

/**
 * How long one systemd-notify may run. Its barrier waits up to 5 s for systemd (sd_notify_barrier(3)
 * in systemd-notify 252); a little more, then it is killed so a hung manager cannot stall the queue.
 */
export const NOTIFY_TIMEOUT_MS = 6000;

/**
 * Messages to the service manager (sd_notify(3)). Every method resolves, also when sending failed;
 * a failure is a warn line (once per kind until a message of that kind gets through again).
 */
export interface Notifier {
  /** False without `$NOTIFY_SOCKET` (not started by systemd): every method does nothing. */
  readonly enabled: boolean;
  /** `READY=1` (+ `STATUS=`, `MAINPID=`): systemd considers the unit started (Type=notify). */
  ready(status?: string): Promise<void>;
  /** `STOPPING=1`: the service began its shutdown. */
  stopping(): Promise<void>;
  /** `WATCHDOG=1`: the keep-alive ping (WatchdogSec=). */
  watchdog(): Promise<void>;
  /** `STATUS=`: one line shown by `systemctl status`. */
  status(text: string): Promise<void>;
}

export interface NotifierOptions {
  readonly log?: Logger;
  /** The systemd-notify binary; default `/usr/bin/systemd-notify` (tests point it elsewhere). */
  readonly command?: string;
  /** Kill a systemd-notify still running after this many ms; default `NOTIFY_TIMEOUT_MS`. */
  readonly timeoutMs?: number;
}

const DISABLED: Notifier = {
  enabled: false,
  ready: () => Promise.resolve(),
  stopping: () => Promise.resolve(),
  watchdog: () => Promise.resolve(),
  status: () => Promise.resolve(),
};

/**
 * The notifier for this process: a no-op without `NOTIFY_SOCKET` in `env` (default `process.env`).
 * Never throws, also not from its methods; a failed message is logged at warn.
 */
export function createNotifier(env: NodeJS.ProcessEnv = process.env, opts: NotifierOptions = {}): Notifier {
  const socket = env["NOTIFY_SOCKET"];
  if (socket === undefined || socket === "") return DISABLED;
  return new SpawnNotifier(socket, opts);
}

class SpawnNotifier implements Notifier {
  readonly enabled = true;
  readonly #socket: string;
  readonly #command: string;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #tail: Promise<void> = Promise.resolve();
  /** A WATCHDOG=1 queued and not yet sent: a second one adds nothing. */
  #pingQueued: Promise<void> | undefined;
  /** Kinds whose last message failed: a failure is logged at warn once, not every ping (style.md 2.5). */
  readonly #failing = new Set<string>();

  constructor(socket: string, opts: NotifierOptions) {
    this.#socket = socket;
    this.#command = opts.command ?? SYSTEMD_NOTIFY;
    this.#timeoutMs = opts.timeoutMs ?? NOTIFY_TIMEOUT_MS;
    this.#log = opts.log ?? SILENT_LOGGER;
  }

  ready(status?: string): Promise<void> {
    // --pid= makes systemd-notify add MAINPID=<node>; as root it also sends with node's credentials.
    const args = ["--ready", `--pid=${process.pid}`];
    if (status !== undefined) args.push(`--status=${oneLine(status)}`);
    return this.#enqueue("READY", args);
  }

  stopping(): Promise<void> {
    return this.#enqueue("STOPPING", ["STOPPING=1"]);
  }

  watchdog(): Promise<void> {
    if (this.#pingQueued !== undefined) return this.#pingQueued;
    const sent = this.#enqueue("WATCHDOG", ["WATCHDOG=1"], () => {
      this.#pingQueued = undefined;
    });
    this.#pingQueued = sent;
    return sent;
  }

  status(text: string): Promise<void> {
    return this.#enqueue("STATUS", [`--status=${oneLine(text)}`]);
  }

  #enqueue(kind: string, args: readonly string[], onStart?: () => void): Promise<void> {
    const next = this.#tail.then(async () => {
      onStart?.();
      try {
        await this.#run(args);
        if (this.#failing.delete(kind)) this.#log.info(`sd_notify ${kind} delivered again`);
        else this.#log.trace(`sd_notify ${kind} sent`);
      } catch (e: unknown) {
        // Only the kind and the reason: a STATUS text is ours, but a log line needs none of it.
        const fields = { kind, reason: e instanceof Error ? e.message : String(e) };
        if (this.#failing.has(kind)) this.#log.debug(`sd_notify ${kind} failed again`, fields);
        else this.#log.warn(`sd_notify ${kind} failed`, fields);
        this.#failing.add(kind);
      }
    });
    this.#tail = next;
    return next;
  }

  #run(args: readonly string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const fail = (message: string, cause?: unknown): void => {
        reject(new GatewayError(message, ErrorCode.Runtime_NotifyFailed, { cause }));
      };
      let stderr = "";
      let timer: NodeJS.Timeout | undefined;
      try {
        // Only NOTIFY_SOCKET: systemd-notify reads nothing else, and the rest of our environment
        // (which may hold secrets) has no business in a child.
        const child = spawn(this.#command, args, {
          env: { NOTIFY_SOCKET: this.#socket },
          stdio: ["ignore", "ignore", "pipe"],
        });
        child.stderr.setEncoding("utf8");
        child.stderr.on("data", (s: string) => {
          stderr = (stderr + s).slice(-500);
        });
        timer = setTimeout(() => {
          // Settle once the child is gone (reaped), so the next message never overtakes it.
          const timedOut = (): void => {
            fail(`systemd-notify did not finish within ${this.#timeoutMs} ms`);
          };
          if (child.exitCode !== null || child.signalCode !== null) timedOut();
          else child.once("exit", timedOut);
          child.kill("SIGKILL");
        }, this.#timeoutMs);
        child.once("error", (e) => {
          clearTimeout(timer);
          fail(`cannot run ${this.#command}: ${e.message}`, e);
        });
        child.once("close", (code, signal) => {
          clearTimeout(timer);
          if (code === 0) resolve();
          else fail(`systemd-notify exited with ${code ?? signal ?? "?"}: ${stderr.trim()}`);
        });
      } catch (e: unknown) {
        // spawn throws synchronously for a malformed command or argument (e.g. a NUL byte).
        clearTimeout(timer);
        fail(`cannot run ${this.#command}: ${e instanceof Error ? e.message : String(e)}`, e);
      }
    });
  }
}

/** sd_notify(3) separates variables by newlines, so a STATUS= value must stay on one line. */
function oneLine(text: string): string {
  return text.replace(/[\r\n\0]+/g, " ");
}

/**
 * Pings the service manager's watchdog while `health()` reports ok (style.md 2.12). The period is
 * half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends. No timer without `WATCHDOG_USEC`,
 * when `WATCHDOG_PID` names another process (the watchdog is that process's, sd_watchdog_enabled(3)),
 * or when the notifier is disabled. A wedged event loop sends nothing either, so systemd's
 * `WatchdogSec=` restarts a gateway that is stuck as well as one that reports itself unhealthy.
 */
export function startWatchdog(
  notifier: Notifier,
  health: () => HealthReport,
  env: NodeJS.ProcessEnv = process.env,
  log: Logger = SILENT_LOGGER,
): { stop(): void } {
  const periodMs = watchdogPeriodMs(env);
  if (periodMs === undefined || !notifier.enabled) return { stop: () => undefined };
  let healthy = true;
  const tick = (): void => {
    let report: HealthReport;
    try {
      report = health();
    } catch (e: unknown) {
      report = {
        ok: false,
        eventLoopLagMs: 0,
        storeWritable: false,
        problems: [`health check failed: ${e instanceof Error ? e.message : String(e)}`],
      };
    }
    if (report.ok !== healthy) {
      healthy = report.ok;
      if (healthy) log.info("health check passes again; watchdog pings resume");
      else
        log.warn("health check fails; watchdog pings withheld", {
          problems: report.problems,
          eventLoopLagMs: report.eventLoopLagMs,
          storeWritable: report.storeWritable,
        });
    }
    if (report.ok) void notifier.watchdog();
  };
  const timer = setInterval(tick, periodMs);
  // The watchdog must not keep a stopping process alive.
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
    },
  };
}

/** Half of `WATCHDOG_USEC` in ms, or undefined when the watchdog is not ours or not enabled. */
export function watchdogPeriodMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const usecText = env["WATCHDOG_USEC"];
  if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
  const usec = Number(usecText);
  if (usec <= 0) return undefined;
  const pidText = env["WATCHDOG_PID"];
  if (pidText !== undefined && pidText !== "" && Number(pidText) !== process.pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}
