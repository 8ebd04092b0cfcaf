/**
 * The GwMO objects together (design.md section 4): the Gateway Config, Device Inventory and Fanout
 * MOs under one `./GwMO` interior node. A server finds each MO by the MOID in its root's Type, so the
 * roots may move; the parent exists only so the default roots have one.
 */
import type { MoPlugin } from "../tree/plugin.js";
import { gwmoConfigPlugin, type GwmoConfigOptions } from "./gwmo-config.js";
import { gwmoFanoutPlugin, type FanoutControl } from "./gwmo-fanout.js";
import { gwmoInventoryPlugin } from "./gwmo-inventory.js";

export const DEFAULT_GWMO_ROOT = "./GwMO";

export interface GwmoOptions {
  /** The DM servers that manage groups, read the inventory and run jobs. */
  readonly serverIds: readonly string[];
  readonly deviceExists: GwmoConfigOptions["deviceExists"];
  /** The fan-out engine, bound once it exists. */
  readonly control: () => FanoutControl | undefined;
}

/** Config, Inventory and Fanout at their default roots, and their `./GwMO` parent. */
export function gwmoPlugins(options: GwmoOptions): MoPlugin[] {
  const servers = options.serverIds.join("+");
  return [
    gwmoConfigPlugin({ serverIds: options.serverIds, deviceExists: options.deviceExists }),
    gwmoInventoryPlugin({ serverIds: options.serverIds }),
    gwmoFanoutPlugin({ serverIds: options.serverIds, control: options.control }),
    {
      id: "gwmo",
      root: DEFAULT_GWMO_ROOT,
      seed: () => [{ path: DEFAULT_GWMO_ROOT, format: "node", acl: `Get=${servers}`, permanent: true }],
      policyFor: () => ({ refuse: 405 }),
    },
  ];
}
