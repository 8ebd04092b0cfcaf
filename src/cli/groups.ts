/** `dmgw groups`: the Gateway Config MO's device groups and their members, through the control socket. */
import type { GroupJson } from "../runtime/control-api.js";
import { parseCliArgs, usageError } from "./args.js";
import { json, table, withService, type CliIo } from "./control.js";
import { ExitCode } from "./exit-codes.js";

export const GROUPS_USAGE = `usage: dmgw groups [--socket PATH] [--json]
  one group a line: GroupID, Name, member count, members
  --json     an array of {node, groupId, name, members}
  exit: 0 done, 69 no service answers, 64 usage`;

export async function runGroups(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCliArgs(
    args,
    { socket: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" } },
    GROUPS_USAGE,
  );
  if (values.help === true) {
    io.stdout.write(`${GROUPS_USAGE}\n`);
    return ExitCode.Ok;
  }
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0] ?? ""}"`, GROUPS_USAGE);
  return withService(io, values.socket, async (c) => {
    const groups = (await c.request("groups")) as GroupJson[];
    if (values.json === true) io.stdout.write(json(groups));
    else if (groups.length === 0) io.stdout.write("no groups\n");
    else {
      io.stdout.write(
        table([
          ["GROUP", "NAME", "MEMBERS", ""],
          ...groups.map((g) => [
            g.groupId ?? g.node,
            g.name ?? "-",
            String(g.members.length),
            g.members.join(" "),
          ]),
        ]),
      );
    }
    return ExitCode.Ok;
  });
}
