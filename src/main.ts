#!/usr/bin/env node
/**
 * Process entry: argv -> subcommand. Exit statuses follow sysexits (cli/exit-codes.ts); an error
 * is one line on stderr, never a stack trace for bad input.
 */
import { isGatewayError, ErrorCode } from "./core/errors.js";
import { runCodec } from "./cli/codec.js";
import { processIo } from "./cli/control.js";
import { runDemo } from "./cli/demo.js";
import { runDevices } from "./cli/devices.js";
import { ExitCode } from "./cli/exit-codes.js";
import { runFanout } from "./cli/fanout.js";
import { runGroups } from "./cli/groups.js";
import { runService } from "./cli/run.js";
import { runStatus } from "./cli/status.js";
import { runTree } from "./cli/tree.js";

/** How long `dmgw run` may linger after its orderly stop before it exits anyway. */
const STOP_GRACE_MS = 2000;

const USAGE = `usage: dmgw <command> [options]

commands:
  run [--config FILE] [--check]          the service (dmgw run --help)
  demo [--devices N] [--transports LIST] [--json]
                                         the GwMO fan-out on loopback, simulated devices (dmgw demo --help)
  codec decode [FILE|-] [--json]         decode a DM message (XML or WBXML) and print it as XML
  codec encode --to wbxml|xml [FILE|-]   re-encode a DM message
  status [--json]                        the running service: health, servers, outbox, devices, jobs
  devices [--json]                       the inventory of end devices
  groups [--json]                        the device groups and their members
  fanout start --group G --commands FILE run commands on a group (dmgw fanout help)
  fanout jobs|watch JOB|results JOB      fan-out jobs: list, live progress, per-device results
  tree get URI [--json]                  a node of the management tree (dmgw tree help)
  tree set URI VALUE [--format F]        set a leaf, creating it when missing
  tree list URI [--depth N] [--json]     a subtree, one node a line
  tree export URI --tnds                 a subtree as TNDS XML
  help                                   this text

status, devices, groups, fanout and tree talk to the running service through its control socket
(--socket PATH, default the runtime directory's dmgw.sock); tree also works offline on --db FILE.
exit: 0 done, 1 refused, 64 usage, 65 bad data, 66 no input, 69 no service answers, 74 I/O error`;

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...args] = argv;
  const io = processIo();
  const stdout = io.stdout;
  try {
    switch (command) {
      case "run": {
        const code = await runService(args, io);
        // Everything is stopped and the store closed: nothing is left to lose. A device operation
        // still waiting on its own deadline (up to a job's DeviceTimeout) must not hold the process
        // past systemd's TimeoutStopSec; a clean stop exits sooner by itself.
        setTimeout(() => process.exit(code), STOP_GRACE_MS).unref();
        return code;
      }
      case "demo":
        return await runDemo(args, io);
      case "codec":
        runCodec(args, stdout);
        return ExitCode.Ok;
      case "tree":
        return await runTree(args, stdout, io.stderr, io.env);
      case "status":
        return await runStatus(args, io);
      case "devices":
        return await runDevices(args, io);
      case "groups":
        return await runGroups(args, io);
      case "fanout":
        return await runFanout(args, io);
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
      if (e.code === ErrorCode.Control_Unavailable) return ExitCode.Unavailable;
      return ExitCode.Failure;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
