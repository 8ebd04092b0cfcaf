/** `dmgw devices`: the inventory of end devices, through the control socket. */
import type { DeviceJson } from "../runtime/control-api.js";
import { parseCliArgs, usageError } from "./args.js";
import { json, table, withService, type CliIo } from "./control.js";
import { ExitCode } from "./exit-codes.js";

export const DEVICES_USAGE = `usage: dmgw devices [--socket PATH] [--json]
  one device a line: id, transport, mode, status, last seen (UTC), address
  --json     an array of the inventory records (with each device's DevInfo)
  exit: 0 done, 69 no service answers, 64 usage`;

export async function runDevices(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCliArgs(
    args,
    { socket: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" } },
    DEVICES_USAGE,
  );
  if (values.help === true) {
    io.stdout.write(`${DEVICES_USAGE}\n`);
    return ExitCode.Ok;
  }
  if (positionals.length > 0)
    throw usageError(`unexpected argument "${positionals[0] ?? ""}"`, DEVICES_USAGE);
  return withService(io, values.socket, async (c) => {
    const devices = (await c.request("devices")) as DeviceJson[];
    if (values.json === true) io.stdout.write(json(devices));
    else if (devices.length === 0) io.stdout.write("no devices\n");
    else {
      io.stdout.write(
        table([
          ["DEVICE", "TRANSPORT", "MODE", "STATUS", "LAST SEEN", "ADDRESS"],
          ...devices.map((d) => [
            d.deviceId,
            d.transport,
            d.mode,
            d.status,
            d.lastSeen === null ? "-" : d.lastSeen.replace(/\.\d+Z$/, "Z"),
            d.address,
          ]),
        ]),
      );
    }
    return ExitCode.Ok;
  });
}
