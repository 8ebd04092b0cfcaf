/**
 * `dmgw run [--config FILE] [--check]`: the service (design.md 6). Loads and validates the
 * configuration, starts the gateway, waits for SIGTERM or SIGINT, stops it.
 *
 * Exit statuses (sysexits, cli/exit-codes.ts), which systemd's `RestartPreventExitStatus=78` reads:
 *   0   stopped cleanly (or `--check` found the configuration valid)
 *   1   a start or stop step failed (the log and stderr name it)
 *   64  bad command line
 *   65  the database is not one dmgw can use (corrupt, foreign, newer)
 *   74  the database cannot be opened
 *   78  the configuration (or the board profile) is invalid: every problem printed, one a line
 */
import { ErrorCode, GatewayError, isGatewayError } from "../core/errors.js";
import { createLogger, type LogFormat } from "../core/logger.js";
import { defaultConfigFile } from "../config/paths.js";
import { loadConfigFile } from "../config/load.js";
import { formatProblem, type ConfigProblem, type GatewayConfig } from "../config/schema.js";
import type { ControlEnv } from "../runtime/control-client.js";
import { startGateway, type StartGatewayOptions } from "../runtime/gateway.js";
import { parseCliArgs } from "./args.js";
import { ExitCode } from "./exit-codes.js";
import type { Output } from "./io.js";

const USAGE = `usage: dmgw run [--config FILE] [--check]

  --config FILE   the configuration (YAML or JSON); default $CONFIGURATION_DIRECTORY/config.yaml
                  (or config.json), $DMGW_DATA/config.yaml with DMGW_DATA set
  --check         validate the configuration and exit (0: valid, 78: every problem printed)`;

export interface RunIo {
  /** Log lines go here (one per event). `isTTY` picks the human format under `log.format: auto`. */
  readonly stdout: Output & { readonly isTTY?: boolean | undefined };
  /** Configuration problems and start failures, one a line. */
  readonly stderr: Output;
  /** Ends the service instead of SIGTERM/SIGINT (tests, embedding). */
  readonly stopSignal?: AbortSignal;
  /**
   * Environment (paths, NOTIFY_SOCKET, WATCHDOG_USEC); default `process.env`. The CLI's `processIo()`
   * declares only the keys the control client reads (`ControlEnv`), but passes `process.env` itself.
   */
  readonly env?: ControlEnv | NodeJS.ProcessEnv;
  /** Passed to `startGateway` (a fake model file for `board: auto`, a notifier). */
  readonly gateway?: Omit<StartGatewayOptions, "env" | "log">;
}

const LOG_FORMATS: Readonly<Record<GatewayConfig["log"]["format"], LogFormat | "auto">> = {
  auto: "auto",
  json: "json",
  human: "pretty",
  journald: "journald",
};

/** Runs the service until a signal; resolves with the exit status. Never rejects for bad input. */
export async function runService(args: readonly string[], io: RunIo): Promise<number> {
  // Every key is read as an optional string, which is what an environment is (see `RunIo.env`).
  const env = (io.env ?? process.env) as NodeJS.ProcessEnv;
  const err = (line: string): void => {
    io.stderr.write(`dmgw: ${line}\n`);
  };
  let values: { config?: string; check?: boolean };
  try {
    const parsed = parseCliArgs(args, { config: { type: "string" }, check: { type: "boolean" } }, USAGE);
    if (parsed.positionals.length > 0) {
      err(`unexpected argument "${parsed.positionals[0] ?? ""}"\n${USAGE}`);
      return ExitCode.Usage;
    }
    values = parsed.values;
  } catch (e) {
    if (isGatewayError(e, ErrorCode.Cli_Usage)) {
      err(e.message);
      return ExitCode.Usage;
    }
    throw e;
  }

  const file = values.config ?? defaultConfigFile(env);
  let config: GatewayConfig;
  try {
    config = loadConfigFile(file, { env });
  } catch (e) {
    if (isGatewayError(e, ErrorCode.Config_Invalid)) {
      const problems = (e.context?.["problems"] ?? []) as readonly ConfigProblem[];
      err(`${file}: ${problems.length} configuration problem${problems.length === 1 ? "" : "s"}`);
      for (const p of problems) err(`${file}: ${formatProblem(p)}`);
      return ExitCode.Config;
    }
    if (isGatewayError(e, ErrorCode.Config_Unreadable)) {
      err(e.message);
      return ExitCode.Config;
    }
    throw e;
  }
  if (values.check === true) {
    io.stdout.write(`${file}: configuration OK\n`);
    return ExitCode.Ok;
  }

  const stdout = io.stdout;
  const log = createLogger({
    level: config.log.level,
    format: LOG_FORMATS[config.log.format],
    env,
    destination: {
      write: (line: string) => {
        stdout.write(line);
      },
      isTTY: stdout.isTTY ?? false,
    },
  });

  // Signals before READY count too: systemd may stop a unit that is still starting.
  const stop = waitForStop(io.stopSignal, (name) => {
    log.info(`${name} received`);
  });
  let gateway;
  try {
    gateway = await startGateway(config, { ...io.gateway, env, log });
  } catch (e) {
    stop.dispose();
    const cause = e instanceof GatewayError && e.cause !== undefined ? e.cause : e;
    err(e instanceof Error ? e.message : String(e));
    log.flush();
    return startExitCode(cause);
  }
  await stop.stopped;
  const report = await gateway.stop();
  stop.dispose();
  for (const f of report.failed) err(`stopping ${f.step} failed: ${f.error}`);
  log.flush();
  return report.ok ? ExitCode.Ok : ExitCode.Failure;
}

/** The exit status of a start failure, by the failed step's error. */
function startExitCode(cause: unknown): number {
  if (!isGatewayError(cause)) return ExitCode.Failure;
  if (cause.code.startsWith("Config_")) return ExitCode.Config;
  const data: readonly ErrorCode[] = [
    ErrorCode.Store_Corrupt,
    ErrorCode.Store_Foreign,
    ErrorCode.Store_TooNew,
  ];
  if (data.includes(cause.code)) return ExitCode.DataError;
  if (cause.code === ErrorCode.Store_Unavailable) return ExitCode.IoError;
  return ExitCode.Failure;
}

/**
 * Resolves on the first SIGTERM/SIGINT (or `signal`'s abort). Later signals are logged and ignored
 * while the gateway stops: the default action would kill the process mid-stop, and systemd sends
 * SIGKILL after TimeoutStopSec anyway.
 */
function waitForStop(
  signal: AbortSignal | undefined,
  onSignal: (name: string) => void,
): { stopped: Promise<void>; dispose(): void } {
  let resolve: () => void = () => undefined;
  const stopped = new Promise<void>((r) => {
    resolve = r;
  });
  let seen = false;
  const handler = (name: NodeJS.Signals): void => {
    onSignal(seen ? `${name} (already stopping)` : name);
    seen = true;
    resolve();
  };
  const onAbort = (): void => {
    resolve();
  };
  if (signal === undefined) {
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
  } else if (signal.aborted) resolve();
  else signal.addEventListener("abort", onAbort, { once: true });
  return {
    stopped,
    dispose: () => {
      process.off("SIGTERM", handler);
      process.off("SIGINT", handler);
      signal?.removeEventListener("abort", onAbort);
    },
  };
}
