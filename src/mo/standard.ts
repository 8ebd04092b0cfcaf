/**
 * The standard MOs every DM client hosts (protocol.md 4): DevInfo, DevDetail and DMAcc, built from the
 * gateway's identity and its northbound accounts. `DmTree.seed()` creates their nodes on first start
 * and never overwrites them later, so a value a server changed survives restarts.
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import type { MoPlugin, NodePolicy } from "../tree/plugin.js";
import { devDetailPlugin, DEVDETAIL_ROOT, type DevDetailIdentity } from "./devdetail.js";
import { devInfoPlugin, DEVINFO_ROOT, readOnlyMoPolicy, type DevInfoIdentity } from "./devinfo.js";
import { dmAccPlugin, dmAccPolicy, type DmAccountConfig } from "./dmacc.js";

export type { DmAccountConfig, DmCredential, DmAuthType, AddrType } from "./dmacc.js";

/** Who the gateway is: the DevInfo and DevDetail leaves (the tree enforces the same URI limits). */
export interface GatewayIdentity extends DevInfoIdentity, DevDetailIdentity {}

/**
 * DevInfo, DevDetail and DMAcc, in that order.
 *
 * @throws GatewayError(Tree_InvalidPlugin) for URI limits that are not integers in 0..65535 (MaxDepth)
 *   or non-negative, and for an account `dmAccPlugin` refuses.
 */
export function standardMoPlugins(
  identity: GatewayIdentity,
  accounts: readonly DmAccountConfig[],
): MoPlugin[] {
  const { maxDepth, maxTotLen, maxSegLen } = identity.uriLimits;
  const bad = (v: number, max: number): boolean => !Number.isInteger(v) || v < 0 || v > max;
  if (bad(maxDepth, 0xffff) || bad(maxTotLen, 0xffff_ffff) || bad(maxSegLen, 0xffff_ffff)) {
    throw new GatewayError(
      `invalid URI limits ${JSON.stringify(identity.uriLimits)} (integers, 0 = unlimited, MaxDepth a uint16)`,
      ErrorCode.Tree_InvalidPlugin,
      { context: { uriLimits: identity.uriLimits } },
    );
  }
  return [devInfoPlugin(identity), devDetailPlugin(identity), dmAccPlugin(accounts)];
}

/**
 * The policy the standard MOs give a node added at `segments` (decoded names from the root), without
 * building the plugins: for gateway-side writers (the `dmgw tree set` CLI) that must flag a new
 * AAuthSecret secret as a server's Add would.
 */
export function standardPolicyFor(segments: readonly string[]): NodePolicy | undefined {
  const top = `./${segments[0] ?? ""}`;
  if (segments.length > 1 && (top === DEVINFO_ROOT || top === DEVDETAIL_ROOT)) return readOnlyMoPolicy();
  return dmAccPolicy(segments);
}
