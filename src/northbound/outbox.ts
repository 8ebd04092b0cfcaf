/**
 * The alert outbox (design.md sections 2 and 4): the Generic Alerts (1226) and client events (1224)
 * the gateway owes its DM servers, kept in the one SQLite file until a server answers them 200/202.
 *
 * Nothing acknowledged is ever lost: `enqueue` writes the alert in the caller's transaction when one
 * is open (so a fan-out result and its completion alert commit together) or in its own, and with
 * `synchronous=FULL` the alert is on disk when that transaction's COMMIT returns. An alert leaves
 * the table only through `acknowledge` (the ids of `ClientOutcome.alertsAcknowledged`) or through
 * the drop policy below, which counts every drop in a persisted counter and returns it.
 *
 * Drop policy (the outbox is bounded by `maxCount` alerts and `maxBytes` stored bytes, over all
 * servers). The Generic Alert `Mark` levels (protocol.md 3.8) rank an alert; the alert's rank is the
 * highest of its items' (a missing or unknown Mark is `informational`, the default):
 *
 * ```
 *   harmless 0  <  informational, indeterminate 1  <  warning 2  <  minor 3  <  critical 4  <  fatal 5
 * ```
 *
 * When an enqueue leaves the outbox over a bound, alerts are dropped lowest rank first and, within a
 * rank, oldest first, until it is within both bounds again; the new alert is a candidate like the
 * others. So an alert is never dropped to make room for a lower-ranked one (a flood of
 * informational alerts cannot push out a critical one: the newcomers themselves are dropped), and
 * critical and fatal alerts go only when the outbox is full of alerts of at least their rank, which
 * keeps the bounds hard. An alert larger than `maxBytes` on its own is dropped at once and drops
 * nothing else. A drop in a transaction that rolls back is undone with it (counter included).
 *
 * Ids are the decimal row ids (AUTOINCREMENT): a committed id is never reused, even after its alert
 * is gone, so a late acknowledgement cannot remove another alert. Only an id handed out inside a
 * transaction that then rolled back may come again, and such an alert never existed.
 *
 * Items are stored as JSON of the syncml model, with WBXML opaque bytes as base64.
 */
import assert from "node:assert/strict";
import type Database from "better-sqlite3";
import type { PendingAlert } from "../dm/client-session.js";
import type { Data, Item } from "../syncml/model.js";
import type { Store } from "../tree/store.js";

/** Drop ranks of the Generic Alert Mark levels (protocol.md 3.8); lower ranks are dropped first. */
export const MARK_RANK: Readonly<Record<string, number>> = {
  harmless: 0,
  informational: 1,
  indeterminate: 1,
  warning: 2,
  minor: 3,
  critical: 4,
  fatal: 5,
};

/** The rank of an alert without a Mark, or with one not in protocol.md 3.8: `informational`. */
export const DEFAULT_RANK = 1;

const RANK_NAME = ["harmless", "informational", "warning", "minor", "critical", "fatal"] as const;
export type AlertSeverity = (typeof RANK_NAME)[number];

/** The rank of one Mark value (case and surrounding blanks ignored). */
export function rankOfMark(mark: string | undefined): number {
  if (mark === undefined) return DEFAULT_RANK;
  return MARK_RANK[mark.trim().toLowerCase()] ?? DEFAULT_RANK;
}

/** The rank of an alert: the highest of its items'; DEFAULT_RANK for an alert without items. */
export function rankOfItems(items: readonly Item[]): number {
  let rank = -1;
  for (const item of items) rank = Math.max(rank, rankOfMark(item.meta?.mark));
  return rank < 0 ? DEFAULT_RANK : rank;
}

export interface OutboxOptions {
  /** At most this many alerts are kept (>= 1). */
  readonly maxCount: number;
  /** At most this many stored bytes (items JSON, correlator, server id; UTF-8) are kept (>= 1). */
  readonly maxBytes: number;
  /** Milliseconds since the epoch (creation and attempt times). Default Date.now. */
  readonly now?: () => number;
}

/** An alert to send. */
export interface NewAlert {
  /** The DM server (DMAcc ServerID) it is for. */
  readonly serverId: string;
  readonly code: PendingAlert["code"];
  readonly correlator?: string;
  readonly items: readonly Item[];
}

/** An alert the drop policy removed (or refused), for the caller to log. */
export interface DroppedAlert {
  readonly id: string;
  readonly serverId: string;
  readonly code: number;
  readonly correlator?: string;
  readonly severity: AlertSeverity;
  readonly bytes: number;
  /** `evicted`: dropped to make room; `too-large`: larger than maxBytes on its own. */
  readonly reason: "evicted" | "too-large";
}

export interface EnqueueResult {
  /** The alert's id (also when it was dropped at once). */
  readonly id: string;
  /** False when the new alert itself was dropped (it is then in `dropped` too). */
  readonly stored: boolean;
  /** Every alert this enqueue dropped, oldest first within a rank; counted in `stats().dropped`. */
  readonly dropped: readonly DroppedAlert[];
}

/** A pending alert with the outbox's bookkeeping; usable wherever a PendingAlert is. */
export interface OutboxAlert extends PendingAlert {
  readonly serverId: string;
  /** When it was enqueued, ms since the epoch. */
  readonly createdMs: number;
  /** Sessions it was sent in without an answer (recordAttempt calls). */
  readonly attempts: number;
  readonly lastAttemptMs: number | undefined;
}

export interface OutboxStats {
  readonly count: number;
  readonly bytes: number;
  /** Alerts dropped by the bounds since the file was created (persisted). */
  readonly dropped: number;
}

interface AlertRow {
  readonly seq: number;
  readonly server_id: string;
  readonly code: number;
  readonly correlator: string | null;
  readonly items: string;
  readonly bytes: number;
  readonly rank: number;
  readonly created: number;
  readonly attempts: number;
  readonly last_attempt: number | null;
}

type VictimRow = Pick<AlertRow, "seq" | "server_id" | "code" | "correlator" | "bytes" | "rank">;

export class AlertOutbox {
  readonly #db: Database.Database;
  readonly #maxCount: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  readonly #stmt: ReturnType<typeof prepare>;
  readonly #enqueue: (alert: NewAlert) => EnqueueResult;
  readonly #acknowledge: (seqs: readonly number[]) => number;
  readonly #recordAttempt: (seqs: readonly number[], at: number) => number;

  /** Prepares the outbox's statements on the store's tables. */
  constructor(store: Store, options: OutboxOptions) {
    assert.ok(Number.isSafeInteger(options.maxCount) && options.maxCount >= 1, "maxCount must be >= 1");
    assert.ok(Number.isSafeInteger(options.maxBytes) && options.maxBytes >= 1, "maxBytes must be >= 1");
    this.#db = store.db;
    this.#maxCount = options.maxCount;
    this.#maxBytes = options.maxBytes;
    this.#now = options.now ?? Date.now;
    const db = this.#db;
    // The tables come from the store's migration 2 (one schema, one owner: tree/store.ts).
    this.#stmt = prepare(db);
    // better-sqlite3 turns these into SAVEPOINTs inside an open transaction: the caller's COMMIT
    // or ROLLBACK then decides for them.
    this.#enqueue = db.transaction((alert: NewAlert) => this.#enqueueNow(alert));
    this.#acknowledge = db.transaction((seqs: readonly number[]) => {
      let removed = 0;
      for (const seq of seqs) removed += this.#stmt.remove.run(seq).changes;
      return removed;
    });
    this.#recordAttempt = db.transaction((seqs: readonly number[], at: number) => {
      let changed = 0;
      for (const seq of seqs) changed += this.#stmt.attempt.run(at, seq).changes;
      return changed;
    });
  }

  /**
   * Stores an alert for `serverId`, then applies the drop policy. Inside an open transaction the
   * alert (and any drop) commits or rolls back with it; otherwise it is committed when this
   * returns.
   */
  enqueue(alert: NewAlert): EnqueueResult {
    assert.ok(alert.serverId.length > 0, "an alert needs a serverId");
    const code: number = alert.code; // checked for callers that bypass the type
    assert.ok(code === 1226 || code === 1224, `alert code ${code} is not 1226 or 1224`);
    return this.#enqueue(alert);
  }

  #enqueueNow(alert: NewAlert): EnqueueResult {
    const s = this.#stmt;
    const items = encodeItems(alert.items);
    const correlator = alert.correlator ?? null;
    const bytes =
      Buffer.byteLength(items) + Buffer.byteLength(correlator ?? "") + Buffer.byteLength(alert.serverId);
    const rank = rankOfItems(alert.items);
    const seq = Number(
      s.insert.run(alert.serverId, alert.code, correlator, items, bytes, rank, this.#now()).lastInsertRowid,
    );
    const dropped: DroppedAlert[] = [];
    const drop = (row: VictimRow, reason: DroppedAlert["reason"]): void => {
      s.remove.run(row.seq);
      dropped.push({
        id: String(row.seq),
        serverId: row.server_id,
        code: row.code,
        ...(row.correlator === null ? {} : { correlator: row.correlator }),
        severity: RANK_NAME[row.rank] ?? "informational",
        bytes: row.bytes,
        reason,
      });
    };
    if (bytes > this.#maxBytes) {
      drop({ seq, server_id: alert.serverId, code: alert.code, correlator, bytes, rank }, "too-large");
    } else {
      const totals = s.totals.get() as { count: number; bytes: number };
      let count = totals.count;
      let total = totals.bytes;
      while (count > this.#maxCount || total > this.#maxBytes) {
        const victim = s.victim.get() as VictimRow | undefined;
        if (victim === undefined) break; // cannot happen: the new alert alone fits
        drop(victim, "evicted");
        count--;
        total -= victim.bytes;
      }
    }
    if (dropped.length > 0) s.addDropped.run(dropped.length);
    return { id: String(seq), stored: !dropped.some((d) => d.id === String(seq)), dropped };
  }

  /** The alerts pending for `serverId`, oldest first; at most `limit` (default: all). */
  pending(serverId: string, limit?: number): OutboxAlert[] {
    const rows = this.#stmt.pending.all(serverId, limit ?? -1) as AlertRow[];
    return rows.map(toAlert);
  }

  /** The servers that have pending alerts (to trigger a session for each), in name order. */
  serverIds(): string[] {
    return this.#stmt.servers.pluck().all() as string[];
  }

  /**
   * Removes the alerts a server answered 200/202 (`ClientOutcome.alertsAcknowledged`). Unknown
   * ids (already removed, dropped, or not ours) are ignored. Returns how many were removed.
   */
  acknowledge(ids: readonly string[]): number {
    return this.#acknowledge(toSeqs(ids));
  }

  /** Counts one send attempt for each alert at the injected time. Returns how many it found. */
  recordAttempt(ids: readonly string[]): number {
    return this.#recordAttempt(toSeqs(ids), this.#now());
  }

  stats(): OutboxStats {
    const row = this.#stmt.stats.get() as OutboxStats;
    return { count: row.count, bytes: row.bytes, dropped: row.dropped };
  }
}

function prepare(db: Database.Database) {
  const cols = "seq, server_id, code, correlator, items, bytes, rank, created, attempts, last_attempt";
  return {
    insert: db.prepare(
      `INSERT INTO alert_outbox (server_id, code, correlator, items, bytes, rank, created)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    remove: db.prepare(`DELETE FROM alert_outbox WHERE seq = ?`),
    attempt: db.prepare(`UPDATE alert_outbox SET attempts = attempts + 1, last_attempt = ? WHERE seq = ?`),
    pending: db.prepare(`SELECT ${cols} FROM alert_outbox WHERE server_id = ? ORDER BY seq LIMIT ?`),
    servers: db.prepare(`SELECT DISTINCT server_id FROM alert_outbox ORDER BY server_id`),
    victim: db.prepare(
      `SELECT seq, server_id, code, correlator, bytes, rank FROM alert_outbox ORDER BY rank, seq LIMIT 1`,
    ),
    totals: db.prepare(`SELECT count, bytes FROM alert_outbox_state WHERE id = 1`),
    stats: db.prepare(`SELECT count, bytes, dropped FROM alert_outbox_state WHERE id = 1`),
    addDropped: db.prepare(`UPDATE alert_outbox_state SET dropped = dropped + ? WHERE id = 1`),
  };
}

/** Ids are decimal row ids; anything else cannot name an alert and is skipped. */
function toSeqs(ids: readonly string[]): number[] {
  const seqs: number[] = [];
  for (const id of ids) if (/^[1-9][0-9]{0,15}$/.test(id)) seqs.push(Number(id));
  return seqs;
}

function toAlert(row: AlertRow): OutboxAlert {
  return {
    id: String(row.seq),
    serverId: row.server_id,
    code: row.code === 1224 ? 1224 : 1226,
    ...(row.correlator === null ? {} : { correlator: row.correlator }),
    items: decodeItems(row.items),
    createdMs: row.created,
    attempts: row.attempts,
    lastAttemptMs: row.last_attempt ?? undefined,
  };
}

/** Stored form of a Data: opaque bytes as base64, the rest as in the model. */
type StoredData = Exclude<Data, { kind: "opaque" }> | { readonly kind: "opaque"; readonly bytes: string };

/** JSON of the items, with opaque bytes as base64. */
export function encodeItems(items: readonly Item[]): string {
  return JSON.stringify(
    items.map((item) => {
      const data = item.data;
      if (data?.kind !== "opaque") return item;
      const bytes = Buffer.from(data.bytes.buffer, data.bytes.byteOffset, data.bytes.byteLength);
      const stored: StoredData = { kind: "opaque", bytes: bytes.toString("base64") };
      return { ...item, data: stored };
    }),
  );
}

/** The inverse of encodeItems. */
export function decodeItems(json: string): Item[] {
  const stored = JSON.parse(json) as (Omit<Item, "data"> & { readonly data?: StoredData })[];
  return stored.map((item) => {
    const data = item.data;
    if (data?.kind !== "opaque") return item as Item;
    return { ...item, data: { kind: "opaque", bytes: Uint8Array.from(Buffer.from(data.bytes, "base64")) } };
  });
}
