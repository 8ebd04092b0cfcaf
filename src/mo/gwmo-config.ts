/**
 * The GwMO Gateway Config MO (design.md section 4, protocol.md 1.6.2; MOID in the root's Type so a
 * server finds it wherever the root is configured):
 *
 *   <root>                          Type urn:oma:mo:oma-gwmo-config:1.1
 *     Mode                          int, read-only: 2 (proxy)
 *     Groups/<x>/GroupID            chr
 *     Groups/<x>/Name               chr
 *     Groups/<x>/Members/<x>/DeviceID   chr, must name a device of the inventory (404 otherwise)
 *
 * Servers create and edit groups with ordinary Add/Replace/Delete; nothing else can be added (405).
 */
import type { MoPlugin, NodePolicy } from "../tree/plugin.js";
import { Access } from "../tree/plugin.js";
import { childPath, escapeSegment } from "../tree/uri.js";
import type { TreeNode } from "../tree/tree.js";

export const GWMO_CONFIG_MOID = "urn:oma:mo:oma-gwmo-config:1.1";
export const DEFAULT_GWMO_CONFIG_ROOT = "./GwMO/Config";
/** GwMO operating modes (Mode leaf): the gateway runs proxy mode. */
export const GWMO_MODE_PROXY = 2;

export interface GwmoConfigOptions {
  /** Canonical root path; default `./GwMO/Config`. */
  readonly root?: string;
  /** The DM servers that manage groups (the ACL of the root and of Groups). */
  readonly serverIds: readonly string[];
  /** True when the inventory holds `deviceId` (a member must name a known device). */
  readonly deviceExists: (deviceId: string) => boolean;
}

export function gwmoConfigPlugin(options: GwmoConfigOptions): MoPlugin {
  const root = options.root ?? DEFAULT_GWMO_CONFIG_ROOT;
  const depth = root.split("/").length - 1;
  const servers = options.serverIds.join("+");
  const rel = (segments: readonly string[]): readonly string[] => segments.slice(depth);
  return {
    id: "gwmo-config",
    root,
    moid: GWMO_CONFIG_MOID,
    seed: () => [
      { path: root, format: "node", type: GWMO_CONFIG_MOID, acl: `Get=${servers}`, permanent: true },
      {
        path: `${root}/Mode`,
        format: "int",
        value: String(GWMO_MODE_PROXY),
        access: Access.Get,
        permanent: true,
      },
      {
        path: `${root}/Groups`,
        format: "node",
        acl: `Add=${servers}&Delete=${servers}&Get=${servers}&Replace=${servers}`,
        permanent: true,
      },
    ],
    policyFor: (segments): NodePolicy | undefined =>
      groupShape(rel(segments)) ? undefined : { refuse: 405 },
    check: (request) => {
      const r = rel(request.segments);
      if (r.length === 5 && r[4] === "DeviceID") {
        const id = typeof request.value === "string" ? request.value : undefined;
        return id !== undefined && options.deviceExists(id) ? undefined : 404;
      }
      return undefined;
    },
  };
}

/** Groups/<x>[/GroupID|Name|Members[/<x>[/DeviceID]]]: the only nodes a server may add. */
function groupShape(r: readonly string[]): boolean {
  if (r[0] !== "Groups" || r.length < 2) return false;
  if (r.length === 2) return true;
  if (r.length === 3) return r[2] === "GroupID" || r[2] === "Name" || r[2] === "Members";
  if (r[2] !== "Members") return false;
  return r.length === 4 || (r.length === 5 && r[4] === "DeviceID");
}

/** What resolving a TargetGroupRef gave. */
export type GroupResolution =
  | { readonly ok: true; readonly groupPath: string; readonly members: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/** The part of the tree group resolution reads. */
export interface GroupReader {
  read(path: string): TreeNode | undefined;
  childNames(path: string): string[] | undefined;
}

/**
 * A TargetGroupRef: the URI of a `Groups/<x>` node (absolute, or relative to the Config root), or a
 * GroupID value. Members are the DeviceIDs listed, without duplicates, in node order.
 */
export function resolveGroup(
  tree: GroupReader,
  ref: string,
  root = DEFAULT_GWMO_CONFIG_ROOT,
): GroupResolution {
  const text = ref.trim();
  if (text === "") return { ok: false, reason: "TargetGroupRef is empty" };
  const groups = `${root}/Groups`;
  let groupPath: string | undefined;
  const asPath = text.startsWith("./") ? text.replace(/\/+$/, "") : undefined;
  if (asPath !== undefined && asPath.startsWith(`${groups}/`) && tree.read(asPath)?.format === "node") {
    groupPath = asPath;
  } else if (text.startsWith("Groups/") && tree.read(`${root}/${text}`)?.format === "node") {
    groupPath = `${root}/${text.replace(/\/+$/, "")}`;
  } else {
    for (const name of tree.childNames(groups) ?? []) {
      const path = childPath(groups, name);
      if (textOf(tree.read(`${path}/GroupID`)) === text) {
        groupPath = path;
        break;
      }
    }
  }
  if (groupPath === undefined) return { ok: false, reason: `no group ${JSON.stringify(text)}` };
  const members: string[] = [];
  const seen = new Set<string>();
  for (const name of tree.childNames(`${groupPath}/Members`) ?? []) {
    const id = textOf(tree.read(`${groupPath}/Members/${escapeSegment(name)}/DeviceID`));
    if (id !== undefined && !seen.has(id)) {
      seen.add(id);
      members.push(id);
    }
  }
  return { ok: true, groupPath, members };
}

function textOf(node: TreeNode | undefined): string | undefined {
  const v = node?.value;
  if (v === undefined) return undefined;
  return typeof v === "string" ? v : new TextDecoder().decode(v);
}
