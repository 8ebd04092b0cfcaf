/**
 * The running gateway's parts, as the composition root (runtime/gateway.ts) builds them. The control
 * socket, the metrics endpoint and the `./DMGW` MO read the gateway through this one shape, so none
 * of them builds or owns a part.
 */
import type { Logger } from "../core/log.js";
import type { FanoutEngine } from "../fanout/engine.js";
import type { AlertOutbox } from "../northbound/outbox.js";
import type { NorthboundService } from "../northbound/service.js";
import type { Southbound } from "../southbound/southbound.js";
import type { Store } from "../tree/store.js";
import type { DmTree } from "../tree/tree.js";

/** What the health check found (runtime/health.ts); the watchdog pings only while `ok`. */
export interface HealthReport {
  readonly ok: boolean;
  /** The event loop's recent delay (p99 over the last interval), ms. */
  readonly eventLoopLagMs: number;
  readonly storeWritable: boolean;
  /** One line per failed check; empty when ok. */
  readonly problems: readonly string[];
}

export interface GatewayParts {
  readonly store: Store;
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
  readonly south: Southbound;
  readonly engine: FanoutEngine;
  /** Absent while the northbound is not started (or not configured: a gateway with no server). */
  readonly northbound: NorthboundService | undefined;
  readonly log: Logger;
  /** Date.now() when the runtime started. */
  readonly startedAtMs: number;
  /** The last health check, recomputed on call. */
  readonly health: () => HealthReport;
  /** The board profile's name (`sim`, `raspberry-pi-4`, ...). */
  readonly board: string;
}
