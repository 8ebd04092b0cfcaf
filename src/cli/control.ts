/**
 * What the subcommands that talk to a running service share: their I/O, the `--socket` option, the
 * connection, and how a control failure becomes one line on stderr and a sysexits status.
 */
import { ErrorCode, isGatewayError } from "../core/errors.js";
import {
  connectControl,
  defaultControlSocketPath,
  type ControlConnection,
  type ControlEnv,
} from "../runtime/control-client.js";
import { ExitCode } from "./exit-codes.js";
import type { Output } from "./io.js";

/** Where a subcommand writes, and what it reads of its environment. */
export interface CliIo {
  readonly stdout: Output & { readonly isTTY?: boolean | undefined; readonly columns?: number | undefined };
  readonly stderr: Output;
  readonly env: ControlEnv & { readonly STATE_DIRECTORY?: string | undefined };
}

/** The process's own I/O. */
export function processIo(): CliIo {
  return {
    stdout: {
      write: (chunk) => process.stdout.write(chunk),
      get isTTY() {
        return process.stdout.isTTY;
      },
      get columns() {
        return process.stdout.columns;
      },
    },
    stderr: { write: (chunk) => process.stderr.write(chunk) },
    env: process.env,
  };
}

/** The control failures a command reports itself, and their exit statuses. */
const EXIT_STATUS: ReadonlyMap<ErrorCode, number> = new Map([
  [ErrorCode.Control_Unavailable, ExitCode.Unavailable],
  [ErrorCode.Control_Protocol, ExitCode.Unavailable],
  [ErrorCode.Control_BadRequest, ExitCode.Usage],
  [ErrorCode.Control_NotFound, ExitCode.Failure],
  [ErrorCode.Control_Refused, ExitCode.Failure],
  [ErrorCode.Control_UnknownMethod, ExitCode.Unavailable],
  [ErrorCode.Control_TooLarge, ExitCode.DataError],
]);

/** The socket: `--socket`, else the default for this environment. */
export function socketPath(option: string | undefined, env: ControlEnv): string {
  return option !== undefined && option !== "" ? option : defaultControlSocketPath(env);
}

/**
 * Connects to the service, runs `fn`, and closes. A control failure is one line on stderr
 * (`dmgw: ...`) and its exit status; anything else (a usage error) goes up to main.
 */
export async function withService(
  io: CliIo,
  socket: string | undefined,
  fn: (c: ControlConnection) => Promise<number>,
): Promise<number> {
  let connection: ControlConnection | undefined;
  try {
    connection = await connectControl(socketPath(socket, io.env));
    return await fn(connection);
  } catch (e) {
    const status = isGatewayError(e) ? EXIT_STATUS.get(e.code) : undefined;
    if (status === undefined || !isGatewayError(e)) throw e;
    io.stderr.write(`dmgw: ${e.message}\n`);
    return status;
  } finally {
    connection?.close();
  }
}

/** Pretty JSON, one document. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Rows as left-aligned columns separated by two spaces (the last column is not padded). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** A duration as `1d2h`, `3h04m`, `5m06s` or `7s`. */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number): string => String(n).padStart(2, "0");
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${two(m)}m`;
  if (m > 0) return `${m}m${two(sec)}s`;
  return `${sec}s`;
}
