/**
 * The GwMO Device Inventory MO (design.md section 4): one record per end device, kept by the
 * southbound registry and read-only to servers.
 *
 *   <root>                         Type urn:oma:mo:oma-gwmo-deviceinventory:1.1
 *     Devices/<x>/DeviceID         chr   the public id
 *     Devices/<x>/Transport        chr   http|serial|ble|coap|mqtt
 *     Devices/<x>/Mode             chr   proxy|adaptation
 *     Devices/<x>/Address          chr
 *     Devices/<x>/Status           chr   attached|detached|unreachable
 *     Devices/<x>/LastSeen         chr   ISO 8601 UTC
 *     Devices/<x>/DevInfo/<leaf>   chr   as the device reports them
 *
 * `<x>` is the DeviceID itself (escaped as a URI segment), so `Devices/<id>` is also the Source of
 * the registry's deviceattached/devicedetached alerts. The registry's rows are the truth; the tree is
 * a mirror written on every change (`mirrorInventory`), so Get, `?list=` and TNDS serve it as they
 * serve any node.
 */
import type { DeviceRecord, DeviceRegistry } from "../southbound/device-registry.js";
import { Access, type MoPlugin } from "../tree/plugin.js";
import { childPath } from "../tree/uri.js";
import type { DmTree } from "../tree/tree.js";

export const GWMO_INVENTORY_MOID = "urn:oma:mo:oma-gwmo-deviceinventory:1.1";
export const DEFAULT_GWMO_INVENTORY_ROOT = "./GwMO/Inventory";

export interface GwmoInventoryOptions {
  readonly root?: string;
  /** The DM servers that may read the inventory. */
  readonly serverIds: readonly string[];
}

export function gwmoInventoryPlugin(options: GwmoInventoryOptions): MoPlugin {
  const root = options.root ?? DEFAULT_GWMO_INVENTORY_ROOT;
  return {
    id: "gwmo-inventory",
    root,
    moid: GWMO_INVENTORY_MOID,
    seed: () => [
      {
        path: root,
        format: "node",
        type: GWMO_INVENTORY_MOID,
        acl: `Get=${options.serverIds.join("+")}`,
        access: Access.Get,
        permanent: true,
      },
      { path: `${root}/Devices`, format: "node", access: Access.Get, permanent: true },
    ],
    // Kept by the registry only: a server adds nothing here.
    policyFor: () => ({ refuse: 405 }),
  };
}

/** The inventory node of `deviceId` (also the Source of its attach/detach alerts). */
export function inventoryPath(deviceId: string, root = DEFAULT_GWMO_INVENTORY_ROOT): string {
  return childPath(`${root}/Devices`, deviceId);
}

/**
 * Writes every registry record into the tree now, then each change as it commits. Returns the
 * function that stops the mirroring.
 */
export function mirrorInventory(
  tree: DmTree,
  registry: DeviceRegistry,
  root = DEFAULT_GWMO_INVENTORY_ROOT,
): () => void {
  tree.transaction(() => {
    for (const record of registry.list()) writeRecord(tree, record, root);
  });
  return registry.onChange((change) => {
    tree.transaction(() => {
      writeRecord(tree, change.device, root);
    });
  });
}

function writeRecord(tree: DmTree, r: DeviceRecord, root: string): void {
  const base = inventoryPath(r.deviceId, root);
  // Most changes are a session's touch (LastSeen, the same DevInfo again): a leaf that already holds
  // its value is not rewritten (a read costs a fraction of a write, and a fan-out makes one a device).
  const leaf = (name: string, value: string): void => {
    const path = `${base}/${name}`;
    if (tree.read(path)?.value === value) return;
    tree.write({ path, format: "chr", value, access: Access.Get });
  };
  if (tree.read(base) === undefined) tree.write({ path: base, format: "node", access: Access.Get });
  leaf("DeviceID", r.deviceId);
  leaf("Transport", r.transport);
  leaf("Mode", r.mode);
  leaf("Address", r.address);
  leaf("Status", r.status);
  leaf("LastSeen", r.lastSeenMs === undefined ? "" : new Date(r.lastSeenMs).toISOString());
  if (tree.read(`${base}/DevInfo`) === undefined)
    tree.write({ path: `${base}/DevInfo`, format: "node", access: Access.Get });
  for (const [name, value] of Object.entries(r.devInfo)) {
    const path = childPath(`${base}/DevInfo`, name);
    if (tree.read(path)?.value !== value) tree.write({ path, format: "chr", value, access: Access.Get });
  }
}
