/**
 * The one SQLite connection of dmgw (design.md section 2: one file, one owner). It opens and checks
 * the file, runs the migrations, and holds the prepared statements of the node table. Everything
 * else that persists (the tree, later the alert outbox and the fan-out journal) goes through it, so
 * that one transaction can cover a DM message's changes.
 *
 * Durability (issue #3): WAL with `synchronous=FULL`, so a COMMIT returns only once the WAL is on
 * disk; a DM message's changes are one transaction, committed before its Status is sent.
 */
import { existsSync, openSync, readSync, closeSync, statSync } from "node:fs";
import Database from "better-sqlite3";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { NODE_FORMATS } from "./types.js";

/** `PRAGMA application_id` of a dmgw database ("DMGW"): tells our file from any other SQLite file. */
export const APPLICATION_ID = 0x444d4757;

/** One schema step; `user_version` records how many have run. Append only, never edit. */
interface Migration {
  readonly description: string;
  readonly sql: string;
}

const MIGRATIONS: readonly Migration[] = [
  {
    description: "the management tree",
    sql: `
      CREATE TABLE node (
        id      INTEGER PRIMARY KEY,
        parent  INTEGER NOT NULL,
        name    TEXT NOT NULL,
        format  INTEGER NOT NULL,
        flags   INTEGER NOT NULL DEFAULT 0,
        access  INTEGER,
        type    TEXT,
        acl     TEXT,
        title   TEXT,
        tstamp  INTEGER,
        verno   INTEGER,
        value   BLOB
      );
      CREATE UNIQUE INDEX node_child ON node(parent, name);
      CREATE INDEX node_type ON node(type) WHERE type IS NOT NULL;
      CREATE TABLE setting (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    `,
  },
  {
    description: "the northbound alert outbox (northbound/outbox.ts)",
    sql: `
  CREATE TABLE IF NOT EXISTS alert_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id    TEXT NOT NULL,
    code         INTEGER NOT NULL,
    correlator   TEXT,
    items        TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    rank         INTEGER NOT NULL,
    created      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_attempt INTEGER
  );
  CREATE INDEX IF NOT EXISTS alert_outbox_server ON alert_outbox(server_id, seq);
  CREATE INDEX IF NOT EXISTS alert_outbox_victim ON alert_outbox(rank, seq);
  -- One row: the persisted drop counter, and the totals the bounds are checked against (kept by
  -- the triggers, so an enqueue does not scan the table).
  CREATE TABLE IF NOT EXISTS alert_outbox_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    dropped INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO alert_outbox_state (id, dropped, count, bytes) VALUES (1, 0, 0, 0);
  CREATE TRIGGER IF NOT EXISTS alert_outbox_added AFTER INSERT ON alert_outbox BEGIN
    UPDATE alert_outbox_state SET count = count + 1, bytes = bytes + NEW.bytes WHERE id = 1;
  END;
  CREATE TRIGGER IF NOT EXISTS alert_outbox_removed AFTER DELETE ON alert_outbox BEGIN
    UPDATE alert_outbox_state SET count = count - 1, bytes = bytes - OLD.bytes WHERE id = 1;
  END;
    `,
  },
  {
    description: "the southbound device registry and device accounts (southbound/)",
    sql: `
  -- One row per end device the gateway knows (the inventory, design.md section 4).
  CREATE TABLE IF NOT EXISTS device (
    device_id  TEXT PRIMARY KEY,
    transport  TEXT NOT NULL,
    mode       TEXT NOT NULL,
    address    TEXT NOT NULL,
    status     TEXT NOT NULL,
    last_seen  INTEGER,
    devinfo    TEXT NOT NULL DEFAULT '{}',
    attached   INTEGER NOT NULL
  ) WITHOUT ROWID;
  -- The account the gateway holds toward each proxy device: secrets live here, never in the tree,
  -- so no northbound Get can read them.
  CREATE TABLE IF NOT EXISTS device_account (
    device_id      TEXT PRIMARY KEY,
    server_id      TEXT NOT NULL,
    client_scheme  TEXT NOT NULL,
    client_name    TEXT NOT NULL,
    client_secret  TEXT NOT NULL,
    server_scheme  TEXT NOT NULL,
    server_name    TEXT NOT NULL,
    server_secret  TEXT NOT NULL,
    client_nonce   BLOB NOT NULL,
    server_nonce   BLOB NOT NULL
  ) WITHOUT ROWID;
    `,
  },
  {
    description: "the fan-out journal (fanout/journal.ts)",
    sql: `
  -- One row per fan-out job a server started: what to run, on which devices, and how it ended.
  CREATE TABLE IF NOT EXISTS fanout_job (
    job_path    TEXT PRIMARY KEY,
    server_id   TEXT NOT NULL,
    correlator  TEXT,
    commands    BLOB NOT NULL,
    options     TEXT NOT NULL,
    state       TEXT NOT NULL,
    status      TEXT NOT NULL,
    created     INTEGER NOT NULL,
    finished    INTEGER,
    alerted     INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  -- One row per target device: pending, dispatched (its commands may have reached it) or done.
  CREATE TABLE IF NOT EXISTS fanout_device (
    job_path   TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    n          INTEGER NOT NULL,
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    status     INTEGER,
    PRIMARY KEY (job_path, device_id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS fanout_device_state ON fanout_device(job_path, state);
    `,
  },
];

/** A row of the node table. */
export interface NodeRow {
  readonly id: number;
  readonly parent: number;
  readonly name: string;
  readonly format: number;
  readonly flags: number;
  readonly access: number | null;
  readonly type: string | null;
  readonly acl: string | null;
  readonly title: string | null;
  readonly tstamp: number | null;
  readonly verno: number | null;
  readonly value: string | Buffer | null;
}

/** A node to insert: a row without its id and version (VerNo starts at 0). */
export type NewNode = Omit<NodeRow, "id" | "verno" | "value"> & {
  readonly value: string | Uint8Array | null;
};

export const ROOT_ID = 1;
const INTERIOR_FORMAT = NODE_FORMATS.indexOf("node");
/** Interior rows kept; a gateway tree has a few thousand interior nodes, each row ~200 bytes. */
const INTERIOR_CACHE_LIMIT = 20_000;

export interface StoreOptions {
  /** Create the file when it does not exist (the service's first start). Default true. */
  readonly create?: boolean;
  /** Check every page at open (`PRAGMA quick_check`). Default true. */
  readonly verify?: boolean;
}

const SQLITE_MAGIC = "SQLite format 3\u0000";

export class Store {
  readonly db: Database.Database;
  readonly path: string;
  // Prepared once, after the migrations have created the tables.
  #prepared: ReturnType<typeof prepare> | undefined;
  /**
   * Interior rows by (parent id, name): path resolution walks every ancestor of a node, and one
   * SELECT per segment made a leaf Get cost ~60 us on a depth-7 tree. Only ancestors are served from
   * here (the node asked for is always read fresh); every change that touches what resolution uses
   * (ACL, name, type, title, deletion), a rollback, or a commit by another connection (the
   * `dmgw tree` CLI; seen through `PRAGMA data_version`) empties it.
   */
  readonly #interior = new Map<string, NodeRow>();
  #dataVersion = -1;

  private constructor(db: Database.Database, path: string) {
    this.db = db;
    this.path = path;
  }

  get #stmt(): ReturnType<typeof prepare> {
    this.#prepared ??= prepare(this.db);
    return this.#prepared;
  }

  /**
   * Opens (or creates) the database file. A file that is not SQLite, is another program's
   * database, is corrupt, or comes from a newer dmgw is refused with a GatewayError naming the
   * file; it is never recreated, because a gateway that silently forgets its state is worse than
   * one that stops and says why.
   */
  static open(path: string, options: StoreOptions = {}): Store {
    const memory = path === ":memory:";
    const exists = memory ? false : existsSync(path);
    if (!memory && !exists && options.create === false) {
      throw new GatewayError(`database ${path} does not exist`, ErrorCode.Store_Missing, {
        context: { path },
      });
    }
    if (exists) checkHeader(path);
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: exists });
    } catch (cause) {
      throw new GatewayError(
        `cannot open database ${path}: ${(cause as Error).message}`,
        ErrorCode.Store_Unavailable,
        {
          cause,
          context: { path },
        },
      );
    }
    try {
      const store = new Store(db, path);
      store.#initialise(exists, options.verify !== false);
      return store;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  #initialise(existed: boolean, verify: boolean): void {
    const db = this.db;
    try {
      if (existed) {
        const appId = db.pragma("application_id", { simple: true }) as number;
        const version = db.pragma("user_version", { simple: true }) as number;
        const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number };
        if (appId !== APPLICATION_ID && !(appId === 0 && tables.n === 0)) {
          throw new GatewayError(
            `database ${this.path} belongs to another program (application_id ${appId}), not dmgw`,
            ErrorCode.Store_Foreign,
            { context: { path: this.path, applicationId: appId } },
          );
        }
        if (version > MIGRATIONS.length) {
          throw new GatewayError(
            `database ${this.path} has schema version ${version}, newer than this dmgw (${MIGRATIONS.length})`,
            ErrorCode.Store_TooNew,
            { context: { path: this.path, version } },
          );
        }
        if (verify) {
          const result = db.pragma("quick_check", { simple: true }) as string;
          if (result !== "ok") {
            throw new GatewayError(`database ${this.path} is corrupt: ${result}`, ErrorCode.Store_Corrupt, {
              context: { path: this.path },
            });
          }
        }
      }
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
      db.pragma("foreign_keys = ON");
      // Written only when it differs: an unconditional write costs a WAL frame and an fsync per open.
      if ((db.pragma("application_id", { simple: true }) as number) !== APPLICATION_ID) {
        db.pragma(`application_id = ${APPLICATION_ID}`);
      }
      this.#migrate();
    } catch (e) {
      if (e instanceof GatewayError) throw e;
      const code = (e as { code?: string }).code ?? "";
      throw new GatewayError(
        `database ${this.path} is not usable (${code || (e as Error).message})`,
        code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT"
          ? ErrorCode.Store_Corrupt
          : ErrorCode.Store_Unavailable,
        { cause: e, context: { path: this.path, sqliteCode: code } },
      );
    }
  }

  #migrate(): void {
    const current = this.db.pragma("user_version", { simple: true }) as number;
    for (let v = current; v < MIGRATIONS.length; v++) {
      const m = MIGRATIONS[v];
      if (m === undefined) break;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        if (v === 0) {
          // The root node exists from the start; its ACL is set by the tree (Add=*&Get=*).
          this.db
            .prepare("INSERT INTO node (id, parent, name, format, flags) VALUES (?, 0, '', ?, ?)")
            .run(ROOT_ID, NODE_FORMATS.indexOf("node"), 0);
        }
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  get schemaVersion(): number {
    return this.db.pragma("user_version", { simple: true }) as number;
  }

  /**
   * Runs `fn` (which opens its own transaction) with `synchronous=NORMAL`: its COMMIT does not wait
   * for the WAL fsync, so a power cut may roll it back; the next FULL commit makes it durable too.
   * Only for writes that acknowledge nothing to anyone and that the protocol repairs when lost
   * (nonces: one challenge; the outbox's acknowledgements: an alert sent again). Nested inside an
   * open transaction it changes nothing (SQLite cannot change the mode there).
   */
  relaxed<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.db.pragma("synchronous = NORMAL");
    try {
      return fn();
    } finally {
      this.db.pragma("synchronous = FULL");
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---- node table ----

  nodeById(id: number): NodeRow | undefined {
    return this.#stmt.byId.get(id) as NodeRow | undefined;
  }

  child(parent: number, name: string): NodeRow | undefined {
    // Raw rows (arrays) and a literal object: better-sqlite3's own row objects cost ~40% of a Get.
    const r = this.#stmt.childRaw.get(parent, name) as RawRow | undefined;
    return r === undefined ? undefined : rowOf(r);
  }

  /** `child`, served from the interior-row cache; for ancestors on a path, never the target node. */
  interiorChild(parent: number, name: string): NodeRow | undefined {
    const key = `${parent}\u0000${name}`;
    const hit = this.#interior.get(key);
    if (hit !== undefined) return hit;
    const row = this.child(parent, name);
    if (row !== undefined && row.format === INTERIOR_FORMAT) {
      if (this.#interior.size >= INTERIOR_CACHE_LIMIT) this.#interior.clear();
      this.#interior.set(key, row);
    }
    return row;
  }

  /** The root row, cached like the interior rows. */
  rootRow(): NodeRow | undefined {
    const hit = this.#interior.get("root");
    if (hit !== undefined) return hit;
    const row = this.nodeById(ROOT_ID);
    if (row !== undefined) this.#interior.set("root", row);
    return row;
  }

  /** Empties the interior-row cache if another connection committed since the last look. */
  checkExternalChanges(): void {
    const version = this.#stmt.dataVersion.pluck().get() as number;
    if (version !== this.#dataVersion) {
      this.#interior.clear();
      this.#dataVersion = version;
    }
  }

  /** Empties the interior-row cache (after a rollback, or a change to an interior node). */
  invalidate(): void {
    this.#interior.clear();
  }

  children(parent: number): NodeRow[] {
    return this.#stmt.children.all(parent) as NodeRow[];
  }

  childNames(parent: number): string[] {
    return this.#stmt.childNames.pluck().all(parent) as string[];
  }

  hasChildren(parent: number): boolean {
    return this.#stmt.hasChild.get(parent) !== undefined;
  }

  /** All nodes below `id`, parents before children, in name order within a parent. */
  subtree(id: number): NodeRow[] {
    return this.#stmt.subtree.all(id) as NodeRow[];
  }

  insert(n: NewNode): number {
    const r = this.#stmt.insert.run(
      n.parent,
      n.name,
      n.format,
      n.flags,
      n.access,
      n.type,
      n.acl,
      n.title,
      n.tstamp,
      n.value,
    );
    return Number(r.lastInsertRowid);
  }

  setValue(id: number, format: number, value: string | Uint8Array | null, tstamp: number): void {
    this.#stmt.setValue.run(format, value, tstamp, id);
  }

  setAcl(id: number, acl: string | null): void {
    this.#interior.clear();
    this.#stmt.setAcl.run(acl, id);
  }

  setTitle(id: number, title: string | null): void {
    this.#interior.clear();
    this.#stmt.setTitle.run(title, id);
  }

  setType(id: number, type: string | null): void {
    this.#interior.clear();
    this.#stmt.setType.run(type, id);
  }

  rename(id: number, name: string, tstamp: number): void {
    this.#interior.clear();
    this.#stmt.rename.run(name, tstamp, id);
  }

  touch(id: number, tstamp: number): void {
    this.#stmt.touch.run(tstamp, id);
  }

  /** Deletes a node and its whole subtree. */
  deleteSubtree(id: number): void {
    this.#interior.clear();
    this.#stmt.deleteSubtree.run(id);
  }

  nodesOfType(type: string): NodeRow[] {
    return this.#stmt.ofType.all(type) as NodeRow[];
  }

  setting(key: string): unknown {
    return this.#stmt.getSetting.pluck().get(key);
  }

  setSetting(key: string, value: string | number | null): void {
    this.#stmt.setSetting.run(key, value);
  }

  /** File size in bytes (main file plus WAL), for the benchmark's bytes-per-node figure. */
  fileBytes(): number {
    if (this.path === ":memory:") return 0;
    const size = (p: string): number => (existsSync(p) ? statSync(p).size : 0);
    return size(this.path) + size(`${this.path}-wal`);
  }
}

/** A node row as better-sqlite3's raw mode returns it, in the column order of `prepare`. */
type RawRow = [
  number,
  number,
  string,
  number,
  number,
  number | null,
  string | null,
  string | null,
  string | null,
  number | null,
  number | null,
  string | Buffer | null,
];

function rowOf(r: RawRow): NodeRow {
  return {
    id: r[0],
    parent: r[1],
    name: r[2],
    format: r[3],
    flags: r[4],
    access: r[5],
    type: r[6],
    acl: r[7],
    title: r[8],
    tstamp: r[9],
    verno: r[10],
    value: r[11],
  };
}

function prepare(db: Database.Database) {
  const cols = "id, parent, name, format, flags, access, type, acl, title, tstamp, verno, value";
  return {
    byId: db.prepare(`SELECT ${cols} FROM node WHERE id = ?`),
    child: db.prepare(`SELECT ${cols} FROM node WHERE parent = ? AND name = ?`),
    childRaw: db.prepare(`SELECT ${cols} FROM node WHERE parent = ? AND name = ?`).raw(),
    children: db.prepare(`SELECT ${cols} FROM node WHERE parent = ? ORDER BY name`),
    childNames: db.prepare(`SELECT name FROM node WHERE parent = ? ORDER BY name`),
    hasChild: db.prepare(`SELECT 1 FROM node WHERE parent = ? LIMIT 1`),
    subtree: db.prepare(
      `WITH RECURSIVE sub(id, depth, key) AS (
         SELECT id, 0, name FROM node WHERE parent = ?
         UNION ALL
         SELECT n.id, sub.depth + 1, sub.key || char(1) || n.name FROM node n JOIN sub ON n.parent = sub.id
       )
       SELECT ${cols.replace(/(\w+)/g, "n.$1")} FROM sub JOIN node n ON n.id = sub.id ORDER BY sub.key`,
    ),
    insert: db.prepare(
      `INSERT INTO node (parent, name, format, flags, access, type, acl, title, tstamp, verno, value)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
    ),
    setValue: db.prepare(
      `UPDATE node SET format = ?, value = ?, tstamp = ?, verno = (coalesce(verno, 0) + 1) & 65535 WHERE id = ?`,
    ),
    setAcl: db.prepare(`UPDATE node SET acl = ? WHERE id = ?`),
    setTitle: db.prepare(`UPDATE node SET title = ? WHERE id = ?`),
    setType: db.prepare(`UPDATE node SET type = ? WHERE id = ?`),
    rename: db.prepare(
      `UPDATE node SET name = ?, tstamp = ?, verno = (coalesce(verno, 0) + 1) & 65535 WHERE id = ?`,
    ),
    touch: db.prepare(`UPDATE node SET tstamp = ?, verno = (coalesce(verno, 0) + 1) & 65535 WHERE id = ?`),
    deleteSubtree: db.prepare(
      `WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL SELECT n.id FROM node n JOIN sub ON n.parent = sub.id)
       DELETE FROM node WHERE id IN (SELECT id FROM sub)`,
    ),
    ofType: db.prepare(`SELECT ${cols} FROM node WHERE type = ?`),
    getSetting: db.prepare(`SELECT value FROM setting WHERE key = ?`),
    dataVersion: db.prepare(`PRAGMA data_version`),
    setSetting: db.prepare(
      `INSERT INTO setting (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
    ),
  };
}

/** Refuses a file that is not SQLite before SQLite gets to it, naming the file. */
function checkHeader(path: string): void {
  const header = Buffer.alloc(16);
  let read: number;
  try {
    const fd = openSync(path, "r");
    try {
      read = readSync(fd, header, 0, 16, 0);
    } finally {
      closeSync(fd);
    }
  } catch (cause) {
    // A path that cannot be read (a directory, no permission) is refused with a GatewayError naming
    // the file, like every other refusal of Store.open, not a bare fs error (EISDIR, EACCES).
    throw new GatewayError(
      `cannot read database ${path}: ${(cause as Error).message}`,
      ErrorCode.Store_Unavailable,
      { cause, context: { path } },
    );
  }
  if (read === 0) return; // an empty file: SQLite treats it as a new database
  if (read < 16 || header.toString("latin1") !== SQLITE_MAGIC) {
    throw new GatewayError(
      `database ${path} is not a SQLite database (corrupt or foreign file)`,
      ErrorCode.Store_Corrupt,
      {
        context: { path },
      },
    );
  }
}
