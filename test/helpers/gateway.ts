/**
 * The gateway identity the DM session tests share, and a tree seeded with the standard MOs for it.
 */
import { standardMoPlugins, type DmAccountConfig, type GatewayIdentity } from "../../src/mo/standard.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";

/** A gateway as the standard MOs describe it: DevInfo and DevDetail values, no URI limits. */
export function testIdentity(devId: string): GatewayIdentity {
  return {
    devId,
    man: "ACME",
    mod: "GW-1",
    dmV: "1.2",
    lang: "en-US",
    oem: "ACME",
    fwV: "1.0",
    swV: "0.1.0",
    hwV: "A",
    uriLimits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 },
  };
}

/**
 * A seeded tree for `devId` on `file` (":memory:" by default), with the given DM accounts and, when
 * `vendorAcl` is set, a `./Vendor` subtree the named server may manage.
 */
export function seededGatewayTree(
  devId: string,
  options: { file?: string; accounts?: readonly DmAccountConfig[]; vendorAcl?: string } = {},
): DmTree {
  const tree = new DmTree(Store.open(options.file ?? ":memory:"), {
    plugins: standardMoPlugins(testIdentity(devId), options.accounts ?? []),
  });
  tree.seed();
  if (options.vendorAcl !== undefined)
    tree.write({ path: "./Vendor", format: "node", acl: options.vendorAcl });
  return tree;
}
