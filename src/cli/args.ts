/** Argument parsing shared by the subcommands: node:util parseArgs, strict, errors as usage errors. */
import { parseArgs } from "node:util";
import { ErrorCode, GatewayError } from "../core/errors.js";

type ParsedValues<T> = { [K in keyof T]?: T[K] extends { type: "boolean" } ? boolean : string };

export type OptionSpec = Record<string, { type: "boolean" | "string" }>;

/**
 * Parses `args` against `options`; an unknown option or a missing value becomes a Cli_Usage error
 * whose message ends with `usageText`.
 */
export function parseCliArgs<T extends OptionSpec>(
  args: readonly string[],
  options: T,
  usageText: string,
): { values: ParsedValues<T>; positionals: string[] } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (cause) {
    throw usageError((cause as Error).message, usageText, cause);
  }
  // parseArgs types its values loosely; `options` fixes each key's type, which ParsedValues states.
  return { values: parsed.values as ParsedValues<T>, positionals: parsed.positionals };
}

/** A Cli_Usage error: the message, then the subcommand's usage text. */
export function usageError(message: string, usageText: string, cause?: unknown): GatewayError {
  return new GatewayError(
    `${message}\n${usageText}`,
    ErrorCode.Cli_Usage,
    cause === undefined ? {} : { cause },
  );
}
