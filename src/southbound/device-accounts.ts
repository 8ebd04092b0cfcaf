/**
 * The accounts the gateway holds toward its proxy devices (design.md section 3): for each device,
 * the gateway's own ServerID toward it, what the device must present (its CLCRED), what the gateway
 * presents (the device's SRVCRED, which also keys the Pkg#0 digest), and the two nonces.
 *
 * Kept in the `device_account` table (store.ts migration 3), never in the management tree: no
 * northbound Get, `?list=` or TNDS export can reach a device secret.
 */
import type Database from "better-sqlite3";
import { createHmac } from "node:crypto";
import type { AuthScheme } from "../dm/auth.js";
import type { AuthConfig, Nonces } from "../dm/client-session.js";
import type { Store } from "../tree/store.js";

export interface DeviceAccount {
  readonly deviceId: string;
  /** The gateway's ServerID toward this device. */
  readonly serverId: string;
  /** What the device must present. */
  readonly clientAuth: AuthConfig;
  /** What the gateway presents to the device. */
  readonly serverAuth: AuthConfig;
  readonly nonces: Nonces;
}

/** What the southbound core needs of the account store. */
export interface DeviceAccounts {
  get(deviceId: string): DeviceAccount | undefined;
  /** Adds or replaces an account (provisioning, enrolment). */
  put(account: NewDeviceAccount): void;
  /** Stores the nonces a session settled on. */
  saveNonces(deviceId: string, nonces: Nonces): void;
}

/** An account to store; nonces default to 4 zero bytes. */
export type NewDeviceAccount = Omit<DeviceAccount, "nonces"> & { readonly nonces?: Nonces };

/**
 * Enrolment with a shared secret: a device the gateway holds no account for may still open a session
 * when it authenticates with credentials derived from the site's enrolment secret and its own id;
 * once it has, the account is stored like a provisioned one. A fleet is flashed with one secret, yet
 * every device ends up with its own credentials, and one device's secrets reveal no other's.
 */
export interface Enrolment {
  /** The site's enrolment secret (configuration; never logged). */
  readonly secret: string;
  readonly scheme: AuthScheme;
  /** The gateway's ServerID toward enrolled devices. */
  readonly serverId: string;
}

/**
 * The account enrolment gives `deviceId`: client name = the device id, secrets =
 * base64url(HMAC-SHA256(enrolment secret, "dmgw-enrol:<side>:<device id>")), 32 characters.
 */
export function enrolledAccount(deviceId: string, enrolment: Enrolment): NewDeviceAccount {
  const derive = (side: string): string =>
    createHmac("sha256", enrolment.secret)
      .update(`dmgw-enrol:${side}:${deviceId}`)
      .digest("base64url")
      .slice(0, 32);
  return {
    deviceId,
    serverId: enrolment.serverId,
    clientAuth: { scheme: enrolment.scheme, name: deviceId, secret: derive("client") },
    serverAuth: { scheme: enrolment.scheme, name: enrolment.serverId, secret: derive("server") },
  };
}

const ZERO_NONCE = new Uint8Array(4);
/** How long nonces wait for their group commit, ms. */
const NONCE_FLUSH_MS = 25;

interface AccountRow {
  readonly device_id: string;
  readonly server_id: string;
  readonly client_scheme: string;
  readonly client_name: string;
  readonly client_secret: string;
  readonly server_scheme: string;
  readonly server_name: string;
  readonly server_secret: string;
  readonly client_nonce: Buffer;
  readonly server_nonce: Buffer;
}

/** Device accounts in the store's `device_account` table. */
export class StoredDeviceAccounts implements DeviceAccounts {
  readonly #get: Database.Statement;
  readonly #put: Database.Statement;
  readonly #nonces: Database.Statement;
  readonly #remove: Database.Statement;
  readonly #count: Database.Statement;
  readonly #writeNonces: (batch: readonly (readonly [string, Nonces])[]) => void;
  readonly #pendingNonces = new Map<string, Nonces>();
  #flushTimer: NodeJS.Timeout | undefined;
  readonly #db: Database.Database;
  readonly #store: Store;

  constructor(store: Store) {
    const db = store.db;
    this.#db = db;
    this.#store = store;
    this.#get = db.prepare(`SELECT * FROM device_account WHERE device_id = ?`);
    this.#put = db.prepare(
      `INSERT OR REPLACE INTO device_account (device_id, server_id, client_scheme, client_name,
         client_secret, server_scheme, server_name, server_secret, client_nonce, server_nonce)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#nonces = db.prepare(
      `UPDATE device_account SET client_nonce = ?, server_nonce = ? WHERE device_id = ?`,
    );
    this.#remove = db.prepare(`DELETE FROM device_account WHERE device_id = ?`);
    this.#count = db.prepare(`SELECT count(*) FROM device_account`).pluck();
    this.#writeNonces = db.transaction((batch: readonly (readonly [string, Nonces])[]) => {
      for (const [id, n] of batch) this.#nonces.run(Buffer.from(n.client), Buffer.from(n.server), id);
    });
  }

  get(deviceId: string): DeviceAccount | undefined {
    const row = this.#get.get(deviceId) as AccountRow | undefined;
    if (row === undefined) return undefined;
    const pending = this.#pendingNonces.get(deviceId);
    return {
      deviceId: row.device_id,
      serverId: row.server_id,
      clientAuth: authOf(row.client_scheme, row.client_name, row.client_secret),
      serverAuth: authOf(row.server_scheme, row.server_name, row.server_secret),
      nonces: pending ?? {
        client: Uint8Array.from(row.client_nonce),
        server: Uint8Array.from(row.server_nonce),
      },
    };
  }

  put(account: NewDeviceAccount): void {
    this.#pendingNonces.delete(account.deviceId);
    const side = (a: AuthConfig): [string, string, string] =>
      a.scheme === "none" ? ["none", "", ""] : [a.scheme, a.name, a.secret];
    this.#put.run(
      account.deviceId,
      account.serverId,
      ...side(account.clientAuth),
      ...side(account.serverAuth),
      Buffer.from(account.nonces?.client ?? ZERO_NONCE),
      Buffer.from(account.nonces?.server ?? ZERO_NONCE),
    );
  }

  /**
   * Nonces are written in groups: one commit (one WAL fsync) for all sessions that ended within
   * `NONCE_FLUSH_MS`, since a commit per session was a quarter of the gateway's CPU at a thousand
   * sessions a second. A power cut may lose the last group; that costs the devices concerned one
   * challenge (401 + Chal) in their next session, never an acknowledged result.
   */
  saveNonces(deviceId: string, nonces: Nonces): void {
    this.#pendingNonces.set(deviceId, {
      client: Uint8Array.from(nonces.client),
      server: Uint8Array.from(nonces.server),
    });
    this.#flushTimer ??= setTimeout(() => {
      this.flush();
    }, NONCE_FLUSH_MS);
  }

  /** Writes the nonces waiting for their group commit (call before closing the store). */
  flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    // A store closed first (tests, a failed start) has nothing left to write to.
    if (this.#pendingNonces.size === 0 || !this.#db.open) return;
    const batch = [...this.#pendingNonces];
    this.#pendingNonces.clear();
    this.#store.relaxed(() => {
      this.#writeNonces(batch);
    });
  }

  remove(deviceId: string): boolean {
    this.#pendingNonces.delete(deviceId);
    return this.#remove.run(deviceId).changes > 0;
  }

  get size(): number {
    return this.#count.get() as number;
  }
}

function authOf(scheme: string, name: string, secret: string): AuthConfig {
  if (scheme === "basic" || scheme === "md5" || scheme === "hmac") {
    return { scheme: scheme satisfies AuthScheme, name, secret };
  }
  return { scheme: "none" };
}
