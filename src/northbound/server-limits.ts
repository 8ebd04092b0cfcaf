/**
 * The size limits each DM server declared (SyncHdr Meta MaxMsgSize / MaxObjSize, protocol.md 3.2,
 * 3.6), kept per server id from one session to the next, and the bound they put on a
 * resultaggregation alert's inline Data (GwMO resultaggregation:1.0; the rule: the
 * aggregated results inline when they fit the server's MaxObjSize, otherwise their URI).
 *
 *   session-runner: session ends, server authenticated -> recordServerLimits(store, id, limits)
 *   fan-out engine: job ends -> ServerLimitsStore.inlineResultBound(id) -> inline Data or the URI
 *
 * Why stored: the alert is built when the job ends, before the session that carries it, so the
 * only limits known then are those of the server's last session.
 *
 * Where: the store's `setting` table, one row per server (`server-limits:<id>`, JSON). These are
 * a cache the next session refreshes, not state: a row needs no schema step, and a schema step
 * would make an older dmgw refuse the file (Store_TooNew) for the sake of a size hint.
 */
import type { Store } from "../tree/store.js";

/** What a server declared, bytes; a limit it did not declare is absent. */
export interface ServerLimits {
  readonly maxMsgSize?: number;
  readonly maxObjSize?: number;
}

export interface StoredServerLimits extends ServerLimits {
  /** When the session that declared them ended, ms since the epoch. */
  readonly updated: number;
}

/**
 * Bytes of a message kept for everything beside the inline Data: the alert travels in Package 1
 * (protocol.md 3.1), with the SyncHdr and its Cred, Alert 1201, the DevInfo Replace and the Generic
 * Alert's own Correlator, Source and Meta. Measured: about 1.8 KiB in XML with MD5 credentials and
 * long URIs (0.7 KiB in WBXML); the rest is headroom for longer names and a small second alert.
 */
export const ALERT_MESSAGE_MARGIN = 3072;

const KEY_PREFIX = "server-limits:";

/**
 * Stores what an authenticated server declared in the session that just ended (call it inside the
 * session's persisting transaction). The row is replaced, not merged: a limit the server no longer
 * declares no longer holds (an absent MaxObjSize means no limit, protocol.md 3.6).
 */
export function recordServerLimits(
  store: Store,
  serverId: string,
  limits: ServerLimits,
  now: number = Date.now(),
): void {
  const row: StoredServerLimits = {
    ...(positive(limits.maxMsgSize) && { maxMsgSize: limits.maxMsgSize }),
    ...(positive(limits.maxObjSize) && { maxObjSize: limits.maxObjSize }),
    updated: now,
  };
  store.setSetting(`${KEY_PREFIX}${serverId}`, JSON.stringify(row));
}

/** The stored limits of `serverId`, or undefined when none were stored (or the row is unreadable). */
export function readServerLimits(store: Store, serverId: string): StoredServerLimits | undefined {
  const raw = store.setting(`${KEY_PREFIX}${serverId}`);
  if (typeof raw !== "string") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined; // written by us as JSON; a damaged row counts as unknown (the next session rewrites it)
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const { maxMsgSize, maxObjSize, updated } = parsed as Record<string, unknown>;
  return {
    ...(positive(maxMsgSize) && { maxMsgSize }),
    ...(positive(maxObjSize) && { maxObjSize }),
    updated: typeof updated === "number" ? updated : 0,
  };
}

/**
 * The largest inline Data (bytes, as `inlineDataBytes` in fanout/results.ts measures it) a server
 * with these limits takes in a Generic Alert:
 * - at most its MaxObjSize: the Data is one object (protocol.md 3.6);
 * - at most its MaxMsgSize minus `ALERT_MESSAGE_MARGIN`: the alert must fit in one message. Large
 *   objects (MoreData chunks) are for Add/Replace and Results Items; DM 1.2 has no chunking of an
 *   Alert's Data, and without it "the alert must fit in one message" (protocol.md 3.8).
 * With neither limit known, undefined: the engine's default applies (8 KiB,
 * `DEFAULT_MAX_INLINE_RESULT_BYTES` in fanout/engine.ts). Never negative: 0 means always the URI.
 */
export function inlineResultBound(limits: ServerLimits | undefined): number | undefined {
  const bounds: number[] = [];
  if (positive(limits?.maxObjSize)) bounds.push(limits.maxObjSize);
  if (positive(limits?.maxMsgSize)) bounds.push(limits.maxMsgSize - ALERT_MESSAGE_MARGIN);
  if (bounds.length === 0) return undefined;
  return Math.max(0, Math.min(...bounds));
}

/**
 * The store-backed lookup the composition root gives the fan-out engine:
 * `new FanoutEngine({ ..., maxInlineResultBytes: (id) => limits.inlineResultBound(id) })`.
 */
export class ServerLimitsStore {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  get(serverId: string): StoredServerLimits | undefined {
    return readServerLimits(this.#store, serverId);
  }

  record(serverId: string, limits: ServerLimits, now?: number): void {
    recordServerLimits(this.#store, serverId, limits, now);
  }

  /** `inlineResultBound` of the server's stored limits; undefined for a server never heard from. */
  inlineResultBound(serverId: string): number | undefined {
    return inlineResultBound(this.get(serverId));
  }
}

function positive(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0;
}
