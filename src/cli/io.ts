/** Small I/O helpers shared by the subcommands: read a file or stdin, write bytes to stdout. */
import { readFileSync } from "node:fs";
import { ErrorCode, GatewayError } from "../core/errors.js";

/** Reads FILE, or standard input for `-` or no argument. */
export function readInput(path: string | undefined): Uint8Array {
  try {
    return readFileSync(path === undefined || path === "-" ? 0 : path);
  } catch (cause) {
    const name = path === undefined || path === "-" ? "standard input" : path;
    throw new GatewayError(
      `cannot read ${name}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
      ErrorCode.Cli_Io,
      {
        cause,
        context: { path: name },
      },
    );
  }
}

export interface Output {
  write(chunk: string | Uint8Array): void;
}
