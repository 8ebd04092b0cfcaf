/**
 * The GwMO Fanout MO (design.md section 4; GwMO CR 8.3; MOID in the root's Type):
 *
 *   <root>                               Type urn:oma:mo:oma-gwmo-fanout:1.0; jobs are added by servers
 *     <job>/FanOut/FanOutCommands        xml   the commands (`DMCommands` is accepted as an alias)
 *     <job>/FanOut/TargetGroupRef        chr   a GroupID, or the URI of a Groups/<x> node
 *     <job>/FanOut/Start                 Exec  202, runs after the session, echoes the Correlator
 *     <job>/FanOut/Cancel                Exec
 *     <job>/Status                       chr   Idle|InProgress|Completed|PartiallyCompleted|Failed|Cancelled
 *     <job>/Ext/Progress/{Total,Done,Succeeded,Failed}   int
 *     <job>/Ext/Options/{Concurrency,DeviceTimeout,Retries,ResultFormat,AlertType,AbortThreshold,Rate}
 *                                        Rate: device sessions started per second, 0 = unlimited
 *     <job>/Results/<n>/{DeviceID, DevResultXML | DevResultWBXML}
 *
 * When a server adds a job, its DDF children are created with it (`added`): Start, Cancel, Status,
 * Progress, Options with their defaults, Results. Status, Progress and Results are Get-only; the
 * engine writes them.
 */
import { Access, type ExecRequest, type MoPlugin, type NodeSpec } from "../tree/plugin.js";

export const GWMO_FANOUT_MOID = "urn:oma:mo:oma-gwmo-fanout:1.0";
export const DEFAULT_GWMO_FANOUT_ROOT = "./GwMO/Fanout";

/** What the MO asks of the fan-out engine (src/fanout/engine.ts). */
export interface FanoutControl {
  start(
    jobPath: string,
    serverId: string,
    correlator: string | undefined,
    afterCommit: (fn: () => void) => void,
  ): { readonly status: number };
  cancel(jobPath: string): { readonly status: number };
}

export interface GwmoFanoutOptions {
  readonly root?: string;
  /** The DM servers that run jobs. */
  readonly serverIds: readonly string[];
  /** Bound late: the engine is built after the tree. */
  readonly control: () => FanoutControl | undefined;
}

const OPTION_DEFAULTS: readonly [string, "int" | "chr", string][] = [
  ["Concurrency", "int", "50"],
  ["DeviceTimeout", "int", "30000"],
  ["Retries", "int", "1"],
  ["ResultFormat", "chr", "xml"],
  ["AlertType", "chr", "completionstatus"],
  ["AbortThreshold", "int", "100"],
  ["Rate", "int", "0"],
];

export function gwmoFanoutPlugin(options: GwmoFanoutOptions): MoPlugin {
  const root = options.root ?? DEFAULT_GWMO_FANOUT_ROOT;
  const depth = root.split("/").length - 1;
  const servers = options.serverIds.join("+");
  const rel = (segments: readonly string[]): readonly string[] => segments.slice(depth);
  return {
    id: "gwmo-fanout",
    root,
    moid: GWMO_FANOUT_MOID,
    seed: () => [
      {
        path: root,
        format: "node",
        type: GWMO_FANOUT_MOID,
        // Replace on the root keeps a job free of the creator ACL: it inherits this one, Exec included.
        acl: `Add=${servers}&Delete=${servers}&Exec=${servers}&Get=${servers}&Replace=${servers}`,
        permanent: true,
      },
    ],
    policyFor: (segments) => {
      const r = rel(segments);
      const allowed =
        r.length === 1 ||
        (r.length === 2 && r[1] === "FanOut") ||
        (r.length === 3 &&
          r[1] === "FanOut" &&
          ["FanOutCommands", "DMCommands", "TargetGroupRef"].includes(r[2] ?? ""));
      return allowed ? undefined : { refuse: 405 };
    },
    check: (request) => {
      const r = rel(request.segments);
      if (r[1] === "Ext" && r[2] === "Options" && request.command === "Replace") {
        const spec = OPTION_DEFAULTS.find(([name]) => name === r[3]);
        const text = typeof request.value === "string" ? request.value : "";
        if (spec?.[1] === "int" && !/^[0-9]{1,9}$/.test(text)) return 400;
      }
      return undefined;
    },
    added: (path, segments): readonly NodeSpec[] => {
      if (rel(segments).length !== 1) return [];
      const get = Access.Get;
      return [
        { path: `${path}/FanOut`, format: "node" },
        { path: `${path}/FanOut/Start`, format: "null", access: Access.Exec | get },
        { path: `${path}/FanOut/Cancel`, format: "null", access: Access.Exec | get },
        { path: `${path}/Status`, format: "chr", value: "Idle", access: get },
        ...["Total", "Done", "Succeeded", "Failed"].map((name): NodeSpec => ({
          path: `${path}/Ext/Progress/${name}`,
          format: "int",
          value: "0",
          access: get,
        })),
        ...OPTION_DEFAULTS.map(([name, format, value]): NodeSpec => ({
          path: `${path}/Ext/Options/${name}`,
          format,
          value,
          access: get | Access.Replace,
        })),
        { path: `${path}/Results`, format: "node", access: get },
      ];
    },
    exec: (request: ExecRequest) => {
      const r = rel(request.segments);
      const control = options.control();
      if (r.length !== 3 || r[1] !== "FanOut" || control === undefined) return { status: 405 };
      const jobPath = `${root}/${request.path.slice(root.length + 1).split("/")[0] ?? ""}`;
      if (r[2] === "Start")
        return control.start(jobPath, request.serverId, request.correlator, (fn) => {
          request.afterCommit(fn);
        });
      if (r[2] === "Cancel") return control.cancel(jobPath);
      return { status: 405 };
    },
  };
}
