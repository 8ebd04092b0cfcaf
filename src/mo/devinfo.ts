/**
 * `./DevInfo` (OMA DM 1.2 StdObj; protocol.md 4.1): who the gateway is, as every DM session's Package
 * #1 reports it. Every node is Get-only and permanent; a server can neither change nor extend it.
 */
import { StatusCode } from "../syncml/constants.js";
import { Access, type MoPlugin, type NodePolicy, type NodeSpec } from "../tree/plugin.js";

export const DEVINFO_ROOT = "./DevInfo";
export const DEVINFO_MOID = "urn:oma:mo:oma-dm-devinfo:1.0";

/** The DevInfo leaves, as `GatewayIdentity` (standard.ts) carries them. */
export interface DevInfoIdentity {
  /** Unique device id, a URN (`IMEI:...`, `MAC:...`). */
  readonly devId: string;
  readonly man: string;
  readonly mod: string;
  /** DM client version string (`1.2`). */
  readonly dmV: string;
  /** Current language tag (RFC 1766 / ISO 639). */
  readonly lang: string;
}

/**
 * A read-only MO refuses every node a server tries to add below it (405): the structure is the
 * client's, and `Ext`/`Bearer` are the gateway's to fill.
 */
export function readOnlyMoPolicy(): NodePolicy {
  return { refuse: StatusCode.CommandNotAllowed };
}

/** The DevInfo MO: DevId, Man, Mod, DmV, Lang, chr, Get-only, permanent; the root is Get-only too. */
export function devInfoPlugin(identity: DevInfoIdentity): MoPlugin {
  const leaf = (name: string, value: string): NodeSpec => ({
    path: `${DEVINFO_ROOT}/${name}`,
    format: "chr",
    value,
    access: Access.Get,
    permanent: true,
  });
  return {
    id: "devinfo",
    root: DEVINFO_ROOT,
    moid: DEVINFO_MOID,
    seed: () => [
      { path: DEVINFO_ROOT, format: "node", access: Access.Get, permanent: true },
      leaf("DevId", identity.devId),
      leaf("Man", identity.man),
      leaf("Mod", identity.mod),
      leaf("DmV", identity.dmV),
      leaf("Lang", identity.lang),
    ],
    policyFor: readOnlyMoPolicy,
  };
}
