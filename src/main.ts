#!/usr/bin/env node
/**
 * Process entry: argv -> subcommand. Exit statuses follow sysexits (cli/exit-codes.ts); an error
 * is one line on stderr, never a stack trace for bad input.
 */
import { isGatewayError, ErrorCode } from "./core/errors.js";
import { runCodec } from "./cli/codec.js";
import { runDemo } from "./cli/demo.js";
import { ExitCode } from "./cli/exit-codes.js";
import { runTree } from "./cli/tree.js";

const USAGE = `usage: dmgw <command> [options]

commands:
  demo                                   run the demo (a DM package through the codec, for now)
  codec decode [FILE|-] [--json]         decode a DM message (XML or WBXML) and print it as XML
  codec encode --to wbxml|xml [FILE|-]   re-encode a DM message
  tree get URI [--json]                  a node of the management tree (--db FILE; dmgw tree help)
  tree set URI VALUE [--format F]        set a leaf, creating it when missing
  tree list URI [--depth N] [--json]     a subtree, one node a line
  tree export URI --tnds                 a subtree as TNDS XML
  help                                   this text`;

export function main(argv: readonly string[]): number {
  const [command, ...args] = argv;
  const stdout = { write: (chunk: string | Uint8Array) => process.stdout.write(chunk) };
  try {
    switch (command) {
      case "demo":
        return runDemo(stdout) ? ExitCode.Ok : ExitCode.DataError;
      case "codec":
        runCodec(args, stdout);
        return ExitCode.Ok;
      case "tree":
        return runTree(args, stdout, { write: (chunk: string | Uint8Array) => process.stderr.write(chunk) });
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(USAGE + "\n");
        return command === undefined ? ExitCode.Usage : ExitCode.Ok;
      default:
        process.stderr.write(`dmgw: unknown command "${command}"\n${USAGE}\n`);
        return ExitCode.Usage;
    }
  } catch (e) {
    if (isGatewayError(e)) {
      process.stderr.write(`dmgw: ${e.message}\n`);
      if (e.code === ErrorCode.Cli_Usage) return ExitCode.Usage;
      if (e.code === ErrorCode.Cli_Io) return ExitCode.NoInput;
      if (e.code.startsWith("Codec_")) return ExitCode.DataError;
      if (e.code === ErrorCode.Store_Missing) return ExitCode.NoInput;
      if (
        e.code === ErrorCode.Store_Corrupt ||
        e.code === ErrorCode.Store_Foreign ||
        e.code === ErrorCode.Store_TooNew
      ) {
        return ExitCode.DataError;
      }
      if (e.code === ErrorCode.Store_Unavailable) return ExitCode.IoError;
      return ExitCode.Failure;
    }
    throw e;
  }
}

process.exitCode = main(process.argv.slice(2));
