/**
 * `./DMGW` (design.md section 4): the gateway's own health and counters, for the DM Server. Every leaf
 * is read-only and computed on Get (NodeFlag.Dynamic: the tree asks `read` for the value each time),
 * so nothing is written on a timer and a Get, `?list=` or TNDS always sees the values of now.
 *
 *   ./DMGW                        Type urn:dmgw:mo:dmgw:1.0
 *     Health/Ok                   bool   the health check passes (the watchdog is pinged)
 *     Health/EventLoopLagMs       int    recent event loop delay, ms
 *     Health/StoreWritable        bool
 *     Uptime                      int    seconds since the runtime started
 *     Outbox/Depth                int    alerts waiting for a DM server
 *     Devices/<t>/Attached|Detached|Unreachable   int   for t in http, serial, ble, coap, mqtt
 *     Memory/RssKB                int    resident set size, KiB
 *     Sessions                    int    DM sessions since start, both sides
 *     CodecErrors                 int    device messages that did not decode, since start
 *
 * The values come from the same snapshot functions as `dmgw status` and `/metrics` (runtime/
 * observe.ts). Before the parts exist (the tree is built first) the leaves have no value.
 */
import { deviceCounts, northboundCodecErrors, northboundSessions, TRANSPORTS } from "../runtime/observe.js";
import type { GatewayParts } from "../runtime/parts.js";
import { Access, type MoPlugin, type NodeSpec } from "../tree/plugin.js";
import type { NodeValue } from "../tree/types.js";

export const DMGW_ROOT = "./DMGW";
export const DMGW_MOID = "urn:dmgw:mo:dmgw:1.0";

const STATUS_LEAVES = [
  ["Attached", "attached"],
  ["Detached", "detached"],
  ["Unreachable", "unreachable"],
] as const;

/** The `./DMGW` MO; `parts` is called on each Get (bound once the runtime has built them). */
export function dmgwMoPlugin(parts: () => GatewayParts | undefined): MoPlugin {
  const node = (path: string): NodeSpec => ({
    path: `${DMGW_ROOT}${path}`,
    format: "node",
    access: Access.Get,
    permanent: true,
  });
  const leaf = (path: string, format: "int" | "bool", title: string): NodeSpec => ({
    path: `${DMGW_ROOT}/${path}`,
    format,
    title,
    access: Access.Get,
    permanent: true,
    dynamic: true,
  });
  return {
    id: "dmgw",
    root: DMGW_ROOT,
    moid: DMGW_MOID,
    seed: () => [
      { ...node(""), type: DMGW_MOID },
      node("/Health"),
      leaf("Health/Ok", "bool", "health check passes"),
      leaf("Health/EventLoopLagMs", "int", "event loop delay, ms"),
      leaf("Health/StoreWritable", "bool", "the store accepts writes"),
      leaf("Uptime", "int", "seconds since start"),
      node("/Outbox"),
      leaf("Outbox/Depth", "int", "alerts waiting"),
      node("/Devices"),
      ...TRANSPORTS.flatMap((t) => [
        node(`/Devices/${t}`),
        ...STATUS_LEAVES.map(([name]) =>
          leaf(`Devices/${t}/${name}`, "int", `${t} devices ${name.toLowerCase()}`),
        ),
      ]),
      node("/Memory"),
      leaf("Memory/RssKB", "int", "resident set size, KiB"),
      leaf("Sessions", "int", "DM sessions since start"),
      leaf("CodecErrors", "int", "undecodable device messages since start"),
    ],
    // The gateway's own state: a server adds nothing here.
    policyFor: () => ({ refuse: 405 }),
    read: (_path, segments) => {
      const p = parts();
      return p === undefined ? undefined : readLeaf(p, segments.slice(1));
    },
  };
}

/** The value of the leaf at `rel` (segments below `./DMGW`). */
function readLeaf(parts: GatewayParts, rel: readonly string[]): NodeValue | undefined {
  const key = rel.join("/");
  switch (key) {
    case "Health/Ok":
      return String(parts.health().ok);
    case "Health/EventLoopLagMs":
      return String(Math.round(parts.health().eventLoopLagMs));
    case "Health/StoreWritable":
      return String(parts.health().storeWritable);
    case "Uptime":
      return String(Math.floor(Math.max(0, Date.now() - parts.startedAtMs) / 1000));
    case "Outbox/Depth":
      return String(parts.outbox.stats().count);
    case "Memory/RssKB":
      return String(Math.round(process.memoryUsage.rss() / 1024));
    case "Sessions":
      return String(northboundSessions(parts.northbound?.stats()) + parts.south.proxy.stats().sessions);
    case "CodecErrors":
      return String(northboundCodecErrors(parts.northbound?.stats()) + parts.south.proxy.stats().codecErrors);
  }
  if (rel.length === 3 && rel[0] === "Devices") {
    const status = STATUS_LEAVES.find(([name]) => name === rel[2])?.[1];
    const counts = deviceCounts(parts)[rel[1] ?? ""];
    if (status !== undefined && counts !== undefined) return String(counts[status]);
  }
  return undefined;
}
