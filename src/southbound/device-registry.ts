/**
 * The device registry: the inventory of end devices (design.md sections 3-4). Devices appear (a
 * first session, an MQTT birth message, a listed serial port), update (their DevInfo, address,
 * last-seen time), go unreachable and detach. Every change is a row in the `device` table; an attach
 * or a detach also puts the GwMO Generic Alert (`deviceattached` / `devicedetached`, protocol.md
 * 1.4) into the northbound outbox, in the same transaction, so neither is ever lost nor sent
 * without the change it reports.
 *
 *   attached --unreachable()--> unreachable --seen()--> attached        (no alert: still attached)
 *   attached | unreachable --detach()--> detached --seen()--> attached  (alert each way)
 *
 * Listeners (the Inventory MO, metrics) hear every change after it committed; one that throws is
 * logged and the others still hear it.
 *
 * A sighting of an attached device at the same address (every session: its last-seen time, and the
 * DevInfo of its Package 1) is a "touch": kept in memory and written with the other touches of the
 * last `touchFlushMs` in one relaxed transaction (Store.relaxed: no fsync of its own), its
 * "updated" change heard then. A fan-out over thousands of devices would otherwise pay two fsynced
 * commits a device (the row and the Inventory MO's mirror) for a time stamp; a power cut loses at
 * most that interval of last-seen times and DevInfo, which acknowledge nothing to anyone and which
 * the device's next session brings again. Status changes and new addresses are written at once. Records are cached in memory (write-through:
 * a write drops the cached copy, so a rolled-back write is read again from the table).
 */
import type { TransportKind } from "../../drivers/driver.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import type { NewAlert } from "../northbound/outbox.js";
import type { Item } from "../syncml/index.js";
import type { Store } from "../tree/store.js";
import { childPath } from "../tree/uri.js";

export type DeviceStatus = "attached" | "detached" | "unreachable";
export type DeviceMode = "proxy" | "adaptation";

/** DevInfo-like leaves as the device reports them (Man, Mod, FwV, SwV, HwV, DevId...). */
export type DeviceInfo = Readonly<Record<string, string>>;

export interface DeviceRecord {
  readonly deviceId: string;
  readonly transport: TransportKind;
  readonly mode: DeviceMode;
  /** Where the gateway reaches it (udp://host:port, the MQTT id, the port path, MAC, endpoint). */
  readonly address: string;
  readonly status: DeviceStatus;
  /** Ms since the epoch; undefined before the device was ever heard. */
  readonly lastSeenMs: number | undefined;
  readonly devInfo: DeviceInfo;
  /** When it (last) attached, ms since the epoch. */
  readonly attachedMs: number;
}

export interface DeviceSighting {
  readonly deviceId: string;
  readonly transport: TransportKind;
  readonly mode: DeviceMode;
  readonly address: string;
  /** Merged into the stored DevInfo (a session's Package 1). */
  readonly devInfo?: DeviceInfo;
}

export type RegistryChange =
  | { readonly kind: "attached"; readonly device: DeviceRecord }
  | { readonly kind: "updated"; readonly device: DeviceRecord }
  | { readonly kind: "unreachable"; readonly device: DeviceRecord; readonly reason: string }
  | { readonly kind: "detached"; readonly device: DeviceRecord; readonly reason: string };

/** Where the registry's alerts go: the northbound outbox (AlertOutbox fits). */
export interface AlertSink {
  enqueue(alert: NewAlert): unknown;
}

export interface DeviceRegistryOptions {
  readonly store: Store;
  readonly outbox: AlertSink;
  /** The DM servers that hear of attaches and detaches (the DMAcc ServerIDs), read at each change. */
  readonly alertServers: () => readonly string[];
  /** The alert's Source: the device's inventory node; default `./GwMO/Inventory/Devices/<id>`. */
  readonly sourceOf?: (deviceId: string) => string;
  /** `urn:oma:at:oma-gwmo` by default (protocol.md 1.4: make it configurable). */
  readonly alertRoot?: string;
  readonly now?: () => number;
  readonly log?: Logger;
  /** How long last-seen touches wait to be written together, ms; default 1000. */
  readonly touchFlushMs?: number;
}

export const GWMO_ALERT_ROOT = "urn:oma:at:oma-gwmo";

interface DeviceRow {
  readonly device_id: string;
  readonly transport: string;
  readonly mode: string;
  readonly address: string;
  readonly status: string;
  readonly last_seen: number | null;
  readonly devinfo: string;
  readonly attached: number;
}

export class DeviceRegistry {
  readonly #o: DeviceRegistryOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #listeners = new Set<(change: RegistryChange) => void>();
  readonly #stmt: ReturnType<typeof prepare>;
  readonly #cache = new Map<string, DeviceRecord>();
  /** Devices touched since the last flush (their cached record holds the new last-seen time). */
  readonly #touched = new Set<string>();
  #touchTimer: NodeJS.Timeout | undefined;

  constructor(options: DeviceRegistryOptions) {
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
    this.#now = options.now ?? Date.now;
    this.#stmt = prepare(options.store);
  }

  /** Hears every committed change; returns the function that stops it. */
  onChange(listener: (change: RegistryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get(deviceId: string): DeviceRecord | undefined {
    const cached = this.#cache.get(deviceId);
    if (cached !== undefined) return cached;
    const row = this.#stmt.get.get(deviceId) as DeviceRow | undefined;
    if (row === undefined) return undefined;
    const record = toRecord(row);
    this.#cache.set(deviceId, record);
    return record;
  }

  /** Every device, by id. */
  list(): DeviceRecord[] {
    this.flush();
    return (this.#stmt.all.all() as DeviceRow[]).map(toRecord);
  }

  /** Counts by status and transport (metrics, `./DMGW`). */
  counts(): Record<DeviceStatus, number> {
    const out: Record<DeviceStatus, number> = { attached: 0, detached: 0, unreachable: 0 };
    for (const row of this.#stmt.counts.all() as { status: DeviceStatus; n: number }[])
      out[row.status] = row.n;
    return out;
  }

  /**
   * A device was heard: it attaches (alert) when new or detached, comes back from unreachable, or
   * has its address, DevInfo and last-seen time updated.
   */
  seen(sighting: DeviceSighting): DeviceRecord {
    const now = this.#now();
    const known = this.get(sighting.deviceId);
    if (known !== undefined && onlyTouches(known, sighting)) {
      const record: DeviceRecord = {
        ...known,
        lastSeenMs: now,
        devInfo: { ...known.devInfo, ...sighting.devInfo },
      };
      this.#cache.set(record.deviceId, record);
      this.#touched.add(record.deviceId);
      this.#touchTimer ??= setTimeout(() => {
        this.flush();
      }, this.#o.touchFlushMs ?? 1000).unref();
      return record;
    }
    const change = this.#o.store.db.transaction((): RegistryChange => {
      const before = this.get(sighting.deviceId);
      const devInfo = { ...(before?.devInfo ?? {}), ...(sighting.devInfo ?? {}) };
      const attaching = before === undefined || before.status === "detached";
      const record: DeviceRecord = {
        deviceId: sighting.deviceId,
        transport: sighting.transport,
        mode: sighting.mode,
        address: sighting.address,
        status: "attached",
        lastSeenMs: now,
        devInfo,
        attachedMs: attaching ? now : before.attachedMs,
      };
      this.#write(record);
      if (attaching) this.#alert("deviceattached:1.0", record);
      return attaching ? { kind: "attached", device: record } : { kind: "updated", device: record };
    })();
    this.#emit(change);
    return change.device;
  }

  /** Writes the pending last-seen touches (one relaxed transaction) and tells the listeners. */
  flush(): void {
    clearTimeout(this.#touchTimer);
    this.#touchTimer = undefined;
    if (this.#touched.size === 0) return;
    const records = [...this.#touched].flatMap((id) => {
      const r = this.#cache.get(id);
      return r === undefined ? [] : [r];
    });
    this.#touched.clear();
    const store = this.#o.store;
    // The listeners run inside the same transaction: the Inventory MO's writes nest in it, so the
    // batch is one commit, not one per device.
    store.relaxed(() => {
      store.db.transaction(() => {
        for (const r of records) {
          const written = this.#stmt.touch.run(r.lastSeenMs ?? null, JSON.stringify(r.devInfo), r.deviceId);
          if (written.changes === 0) continue;
          this.#emit({ kind: "updated", device: r });
        }
      })();
    });
  }

  /** A device stopped answering (no alert: it is still attached). */
  unreachable(deviceId: string, reason: string): DeviceRecord | undefined {
    const before = this.get(deviceId);
    if (before === undefined || before.status !== "attached") return before;
    const record: DeviceRecord = { ...before, status: "unreachable" };
    this.#write(record);
    this.#emit({ kind: "unreachable", device: record, reason });
    return record;
  }

  /** A device left (its last will, an operator, a de-registration): detached, with the alert. */
  detach(deviceId: string, reason: string): DeviceRecord | undefined {
    const change = this.#o.store.db.transaction((): RegistryChange | undefined => {
      const before = this.get(deviceId);
      if (before === undefined || before.status === "detached") return undefined;
      const record: DeviceRecord = { ...before, status: "detached" };
      this.#write(record);
      this.#alert("devicedetached:1.0", record);
      return { kind: "detached", device: record, reason };
    })();
    if (change === undefined) return this.get(deviceId);
    this.#emit(change);
    return change.device;
  }

  /** Forgets a device entirely (no alert: an operator's clean-up of a detached device). */
  remove(deviceId: string): boolean {
    this.#cache.delete(deviceId);
    this.#touched.delete(deviceId);
    return this.#stmt.remove.run(deviceId).changes > 0;
  }

  #write(r: DeviceRecord): void {
    // Dropped, not replaced: if the enclosing transaction rolls back, the next get reads the table.
    this.#cache.delete(r.deviceId);
    this.#touched.delete(r.deviceId);
    this.#stmt.put.run(
      r.deviceId,
      r.transport,
      r.mode,
      r.address,
      r.status,
      r.lastSeenMs ?? null,
      JSON.stringify(r.devInfo),
      r.attachedMs,
    );
  }

  /** The GwMO alert for every northbound server (protocol.md 1.4, 3.8). */
  #alert(type: string, device: DeviceRecord): void {
    const source =
      this.#o.sourceOf?.(device.deviceId) ?? childPath("./GwMO/Inventory/Devices", device.deviceId);
    const item: Item = {
      source: { locUri: source },
      meta: { type: `${this.#o.alertRoot ?? GWMO_ALERT_ROOT}:${type}`, format: "chr", mark: "informational" },
      data: { kind: "text", text: device.deviceId },
    };
    for (const serverId of this.#o.alertServers()) {
      this.#o.outbox.enqueue({ serverId, code: 1226, items: [item] });
    }
  }

  #emit(change: RegistryChange): void {
    // An update (address, DevInfo, last seen) is not lifecycle: debug (style.md 2.5).
    const level = change.kind === "updated" ? "debug" : "info";
    this.#log[level](`device ${change.kind}`, {
      deviceId: change.device.deviceId,
      transport: change.device.transport,
      ...("reason" in change && { reason: change.reason }),
    });
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (e) {
        this.#log.error("a registry listener threw", { error: e instanceof Error ? e.message : String(e) });
      }
    }
  }
}

function prepare(store: Store) {
  const db = store.db;
  return {
    get: db.prepare(`SELECT * FROM device WHERE device_id = ?`),
    all: db.prepare(`SELECT * FROM device ORDER BY device_id`),
    counts: db.prepare(`SELECT status, count(*) AS n FROM device GROUP BY status`),
    put: db.prepare(
      `INSERT OR REPLACE INTO device (device_id, transport, mode, address, status, last_seen, devinfo, attached)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    remove: db.prepare(`DELETE FROM device WHERE device_id = ?`),
    // Only an attached device is touched: a detach or an unreachable in between wins.
    touch: db.prepare(
      `UPDATE device SET last_seen = ?, devinfo = ? WHERE device_id = ? AND status = 'attached'`,
    ),
  };
}

/** The sighting changes nothing of `known` but its last-seen time and DevInfo. */
function onlyTouches(known: DeviceRecord, s: DeviceSighting): boolean {
  return (
    known.status === "attached" &&
    known.transport === s.transport &&
    known.mode === s.mode &&
    known.address === s.address
  );
}

function toRecord(row: DeviceRow): DeviceRecord {
  let devInfo: DeviceInfo = {};
  try {
    const parsed: unknown = JSON.parse(row.devinfo);
    if (typeof parsed === "object" && parsed !== null) devInfo = parsed as DeviceInfo;
  } catch {
    // A row written by us always parses; a hand-edited one loses only its DevInfo.
  }
  return {
    deviceId: row.device_id,
    transport: row.transport as TransportKind,
    mode: row.mode === "adaptation" ? "adaptation" : "proxy",
    address: row.address,
    status: row.status === "detached" || row.status === "unreachable" ? row.status : "attached",
    lastSeenMs: row.last_seen ?? undefined,
    devInfo,
    attachedMs: row.attached,
  };
}
