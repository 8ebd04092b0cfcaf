/**
 * `dmgw codec decode [FILE|-] [--json]` and `dmgw codec encode --to wbxml|xml [FILE|-]`.
 * Input of either encoding is detected from its first byte. Bad input: one line on stderr, exit 65,
 * nothing on stdout (the output is written only once the whole conversion succeeded).
 */
import type { GatewayError } from "../core/errors.js";
import { decodeMessage, encodeMessage, type Encoding } from "../syncml/index.js";
import { parseCliArgs, usageError, type OptionSpec } from "./args.js";
import { readInput, type Output } from "./io.js";

export const CODEC_USAGE = `usage: dmgw codec decode [FILE|-] [--json]
       dmgw codec encode --to wbxml|xml [FILE|-]`;

export function runCodec(args: readonly string[], stdout: Output): void {
  const [verb, ...rest] = args;
  if (verb === "decode") {
    const { values, positionals } = parse(rest, { json: { type: "boolean" } });
    const decoded = decodeMessage(readInput(single(positionals)));
    if (values.json === true) {
      stdout.write(
        JSON.stringify({ encoding: decoded.encoding, message: decoded.message }, jsonBytes, 2) + "\n",
      );
    } else {
      const xml = encodeMessage(decoded.message, "xml", { xml: { indent: "  ", binary: "base64" } });
      stdout.write(xml);
      stdout.write("\n");
    }
    return;
  }
  if (verb === "encode") {
    const { values, positionals } = parse(rest, { to: { type: "string" } });
    const to = values.to;
    if (to !== "wbxml" && to !== "xml") throw usage("--to must be wbxml or xml");
    const decoded = decodeMessage(readInput(single(positionals)));
    stdout.write(encodeMessage(decoded.message, to satisfies Encoding));
    return;
  }
  throw usage(verb === undefined ? "missing subcommand" : `unknown subcommand "${verb}"`);
}

function parse<T extends OptionSpec>(
  args: readonly string[],
  options: T,
): ReturnType<typeof parseCliArgs<T>> {
  return parseCliArgs(args, options, CODEC_USAGE);
}

function single(positionals: readonly string[]): string | undefined {
  if (positionals.length > 1) throw usage("give at most one input FILE");
  return positionals[0];
}

function usage(message: string, cause?: unknown): GatewayError {
  return usageError(message, CODEC_USAGE, cause);
}

/** JSON.stringify replacer: binary Data is shown as base64. */
function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { base64: Buffer.from(value).toString("base64") } : value;
}
