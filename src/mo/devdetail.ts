/**
 * `./DevDetail` (OMA DM 1.2 StdObj; protocol.md 4.2): the gateway's build and the URI limits it
 * enforces. Not sent in Package #1; servers Get it. Every node is Get-only and permanent.
 */
import { Access, type MoPlugin, type NodeSpec } from "../tree/plugin.js";
import type { UriLimits } from "../tree/types.js";
import { readOnlyMoPolicy } from "./devinfo.js";

export const DEVDETAIL_ROOT = "./DevDetail";
export const DEVDETAIL_MOID = "urn:oma:mo:oma-dm-devdetail:1.0";

/** The DevDetail leaves, as `GatewayIdentity` (standard.ts) carries them. */
export interface DevDetailIdentity {
  /** Device type; `gateway` when absent. */
  readonly devTyp?: string;
  readonly oem: string;
  readonly fwV: string;
  readonly swV: string;
  readonly hwV: string;
  /** What `./DevDetail/URI/*` publishes; give the tree the same limits (`TreeOptions.uriLimits`). */
  readonly uriLimits: UriLimits;
}

/**
 * The DevDetail MO: URI/MaxDepth, URI/MaxTotLen, URI/MaxSegLen (chr numeric strings, 0 = unlimited),
 * DevTyp, OEM, FwV, SwV, HwV (chr), LrgObj (bool `true`: the gateway supports Large Objects).
 */
export function devDetailPlugin(identity: DevDetailIdentity): MoPlugin {
  const node = (path: string): NodeSpec => ({ path, format: "node", access: Access.Get, permanent: true });
  const leaf = (name: string, value: string, format: "chr" | "bool" = "chr"): NodeSpec => ({
    path: `${DEVDETAIL_ROOT}/${name}`,
    format,
    value,
    access: Access.Get,
    permanent: true,
  });
  const limits = identity.uriLimits;
  return {
    id: "devdetail",
    root: DEVDETAIL_ROOT,
    moid: DEVDETAIL_MOID,
    seed: () => [
      node(DEVDETAIL_ROOT),
      node(`${DEVDETAIL_ROOT}/URI`),
      leaf("URI/MaxDepth", String(limits.maxDepth)),
      leaf("URI/MaxTotLen", String(limits.maxTotLen)),
      leaf("URI/MaxSegLen", String(limits.maxSegLen)),
      leaf("DevTyp", identity.devTyp ?? "gateway"),
      leaf("OEM", identity.oem),
      leaf("FwV", identity.fwV),
      leaf("SwV", identity.swV),
      leaf("HwV", identity.hwV),
      leaf("LrgObj", "true", "bool"),
    ],
    policyFor: readOnlyMoPolicy,
  };
}
