import assert from "node:assert/strict";
import fs from "node:fs";
import Database from "better-sqlite3";
import { ErrorCode, isGatewayError, type GatewayError } from "../../src/core/errors.js";
import { APPLICATION_ID, ROOT_ID, Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import { SRV, tempDir, text, type TempDir } from "../helpers/tree.js";

/** What a file looks like on disk: its bytes, mtime, and the files next to it. */
interface FileState {
  readonly bytes: Buffer;
  readonly mtimeMs: number;
  readonly siblings: readonly string[];
}

function fileState(tmp: TempDir, name: string): FileState {
  const file = tmp.file(name);
  return {
    bytes: fs.readFileSync(file),
    mtimeMs: fs.statSync(file).mtimeMs,
    siblings: fs.readdirSync(tmp.dir).sort(),
  };
}

/** Asserts that Store.open(file) throws a GatewayError with `code` naming the file, and returns it. */
function assertRefused(file: string, code: ErrorCode, options: { create?: boolean } = {}): GatewayError {
  let caught: unknown;
  try {
    Store.open(file, options).close();
  } catch (e) {
    caught = e;
  }
  assert.ok(isGatewayError(caught), `expected a GatewayError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.ok(caught.message.includes(file), `the message names the file: ${caught.message}`);
  assert.equal(caught.context?.["path"], file);
  return caught;
}

/** A dmgw database with `n` leaves of 200 bytes (several pages), closed. */
function makeDmgwDb(file: string, n = 300): void {
  const store = Store.open(file);
  const tree = new DmTree(store);
  tree.seed();
  tree.transaction(() => {
    for (let i = 0; i < n; i++) tree.write({ path: `./Data/N${i}`, format: "chr", value: "v".repeat(200) });
  });
  store.close();
}

describe("Store.open refusals", () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => {
    tmp.cleanup();
  });

  it("a missing path with create: false -> Store_Missing, and no file is created", () => {
    const file = tmp.file("missing.db");
    assertRefused(file, ErrorCode.Store_Missing, { create: false });
    assert.deepEqual(fs.readdirSync(tmp.dir), []);
  });

  it("a path in a missing directory -> Store_Unavailable", () => {
    assertRefused(tmp.file("no/such/dir/dmgw.db"), ErrorCode.Store_Unavailable);
  });

  it("a directory -> Store_Unavailable (not a bare EISDIR)", () => {
    fs.mkdirSync(tmp.file("adir"));
    assertRefused(tmp.file("adir"), ErrorCode.Store_Unavailable);
  });

  // Each row: a file that is not a usable dmgw database, the code that refuses it, and why.
  const refusals: {
    what: string;
    make: (file: string) => void;
    code: ErrorCode;
  }[] = [
    {
      what: "4 KiB of random bytes",
      // A fixed pseudo-random sequence (xorshift), so that a failure can be reproduced.
      make: (file) => {
        let x = 0x9e3779b9;
        const bytes = Buffer.alloc(4096);
        for (let i = 0; i < bytes.length; i++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          bytes[i] = x & 0xff;
        }
        fs.writeFileSync(file, bytes);
      },
      code: ErrorCode.Store_Corrupt,
    },
    {
      what: "a text file (a config file put in the wrong place)",
      make: (file) => {
        fs.writeFileSync(file, "[dmgw]\nserver = https://dm.example.com/dm\n".repeat(20));
      },
      code: ErrorCode.Store_Corrupt,
    },
    {
      what: "a text file shorter than the 16-byte SQLite header",
      make: (file) => {
        fs.writeFileSync(file, "hello\n");
      },
      code: ErrorCode.Store_Corrupt,
    },
    {
      what: "the SQLite magic followed by garbage",
      make: (file) => {
        fs.writeFileSync(file, Buffer.concat([Buffer.from("SQLite format 3\u0000"), Buffer.alloc(200, 7)]));
      },
      code: ErrorCode.Store_Corrupt,
    },
    {
      what: "another program's SQLite database (its own tables, application_id 0)",
      make: (file) => {
        const db = new Database(file);
        db.exec(
          "CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO contacts VALUES (1, 'a')",
        );
        db.close();
      },
      code: ErrorCode.Store_Foreign,
    },
    {
      what: "another program's SQLite database with its own application_id and no tables",
      make: (file) => {
        const db = new Database(file);
        db.pragma("application_id = 1234");
        db.close();
      },
      code: ErrorCode.Store_Foreign,
    },
    {
      what: "a dmgw database whose user_version is above the migrations (a newer dmgw wrote it)",
      make: (file) => {
        makeDmgwDb(file, 3);
        const db = new Database(file);
        db.pragma("user_version = 99");
        db.close();
      },
      code: ErrorCode.Store_TooNew,
    },
    {
      // SQLite reads page 1 for any statement (even PRAGMA application_id); the header's page count
      // and the b-tree pointers run past the end of the shortened file, so the very first read fails
      // with SQLITE_CORRUPT ("database disk image is malformed"), which the store maps to
      // Store_Corrupt: the content is damaged. Store_Unavailable is for a file that cannot be opened
      // at all (a missing directory, a directory, no permission), whatever its content.
      what: "a dmgw database truncated to half its size",
      make: (file) => {
        makeDmgwDb(file);
        const size = fs.statSync(file).size;
        assert.ok(size > 8192, "the database spans several pages");
        fs.truncateSync(file, Math.floor(size / 2));
      },
      code: ErrorCode.Store_Corrupt,
    },
    {
      what: "a dmgw database truncated to its first 100 bytes (the header only)",
      make: (file) => {
        makeDmgwDb(file);
        fs.truncateSync(file, 100);
      },
      code: ErrorCode.Store_Corrupt,
    },
  ];

  for (const r of refusals) {
    it(`${r.what} -> ${r.code}`, () => {
      const file = tmp.file("dmgw.db");
      r.make(file);
      assertRefused(file, r.code);
    });

    it(`${r.what}: the refusal leaves the file unchanged (bytes, mtime, no -wal/-shm left)`, () => {
      const file = tmp.file("dmgw.db");
      r.make(file);
      const before = fileState(tmp, "dmgw.db");
      assertRefused(file, r.code);
      assertRefused(file, r.code); // and a retry (a restart loop) does not wear it down either
      const after = fileState(tmp, "dmgw.db");
      assert.ok(before.bytes.equals(after.bytes), "same bytes");
      assert.equal(after.mtimeMs, before.mtimeMs, "same mtime");
      assert.deepEqual(after.siblings, before.siblings, "no file created next to it");
    });
  }

  it("verify: false skips quick_check but the other checks still refuse (foreign -> Store_Foreign)", () => {
    const file = tmp.file("foreign.db");
    const db = new Database(file);
    db.exec("CREATE TABLE t (x)");
    db.close();
    let caught: unknown;
    try {
      Store.open(file, { verify: false });
    } catch (e) {
      caught = e;
    }
    assert.ok(isGatewayError(caught, ErrorCode.Store_Foreign));
  });
});

describe("Store.open on a good file", () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => {
    tmp.cleanup();
  });

  it("a new file -> journal_mode WAL and synchronous FULL (2)", () => {
    const store = Store.open(tmp.file("new.db"));
    try {
      assert.equal(store.db.pragma("journal_mode", { simple: true }), "wal");
      assert.equal(store.db.pragma("synchronous", { simple: true }), 2);
    } finally {
      store.close();
    }
  });

  it("a reopened file -> WAL and synchronous FULL again (synchronous is per connection)", () => {
    Store.open(tmp.file("re.db")).close();
    const store = Store.open(tmp.file("re.db"), { create: false });
    try {
      assert.equal(store.db.pragma("journal_mode", { simple: true }), "wal");
      assert.equal(store.db.pragma("synchronous", { simple: true }), 2);
    } finally {
      store.close();
    }
  });

  it("a new file carries the dmgw application_id, user_version = the migrations, and the root node", () => {
    const store = Store.open(tmp.file("new.db"));
    try {
      assert.equal(store.db.pragma("application_id", { simple: true }), APPLICATION_ID);
      assert.equal(store.schemaVersion, 4);
      const root = store.nodeById(ROOT_ID);
      assert.equal(root?.name, "");
      assert.deepEqual(store.childNames(ROOT_ID), []);
    } finally {
      store.close();
    }
  });

  it("reopening keeps the data (values, ACLs, bytes, settings)", () => {
    const file = tmp.file("keep.db");
    const first = Store.open(file);
    const tree = new DmTree(first);
    tree.seed();
    tree.transaction(() => {
      tree.write({ path: "./A/B", format: "chr", value: "kept", acl: "Get=*" });
      tree.write({ path: "./A/Bin", format: "bin", value: Uint8Array.from([0, 255, 7]) });
      first.setSetting("k", "v");
    });
    first.close();

    const second = Store.open(file, { create: false });
    try {
      const again = new DmTree(second);
      assert.equal(text(again.read("./A/B")?.value), "kept");
      assert.equal(again.read("./A/B")?.acl, "Get=*");
      assert.deepEqual([...(again.read("./A/Bin")?.value as Uint8Array)], [0, 255, 7]);
      assert.equal(second.setting("k"), "v");
      assert.equal(again.get(SRV, "./A/B").status, 200, "the root ACL set by seed() is kept");
    } finally {
      second.close();
    }
  });

  it("reopening an up-to-date file runs no migration and does not change user_version", () => {
    const file = tmp.file("v.db");
    Store.open(file).close();
    const store = Store.open(file);
    try {
      assert.equal(store.schemaVersion, 4);
      assert.equal(store.db.prepare("SELECT count(*) FROM node").pluck().get(), 1);
    } finally {
      store.close();
    }
  });

  it("relaxed() runs without the commit fsync and restores synchronous=FULL, also after a throw", () => {
    const store = Store.open(tmp.file("relaxed.db"));
    try {
      let inside = -1;
      store.relaxed(() => {
        inside = store.db.pragma("synchronous", { simple: true }) as number;
      });
      assert.equal(inside, 1, "NORMAL inside");
      assert.equal(store.db.pragma("synchronous", { simple: true }), 2, "FULL after");
      assert.throws(() =>
        store.relaxed(() => {
          throw new Error("boom");
        }),
      );
      assert.equal(store.db.pragma("synchronous", { simple: true }), 2, "FULL after a throw");
    } finally {
      store.close();
    }
  });

  it("a version-2 file (before the southbound tables) is upgraded in place, its data kept", () => {
    const file = tmp.file("v2.db");
    const old = Store.open(file);
    new DmTree(old).write({ path: "./Kept", format: "chr", value: "yes" });
    old.db.exec("DROP TABLE device; DROP TABLE device_account");
    old.db.pragma("user_version = 2");
    old.close();
    const store = Store.open(file, { create: false });
    try {
      assert.equal(store.schemaVersion, 4);
      assert.equal(text(new DmTree(store).read("./Kept")?.value), "yes");
      assert.equal(store.db.prepare("SELECT count(*) FROM device").pluck().get(), 0);
      assert.equal(store.db.prepare("SELECT count(*) FROM device_account").pluck().get(), 0);
    } finally {
      store.close();
    }
  });

  it("an empty (0-byte) file -> treated as a new database: migrated, with the root node", () => {
    const file = tmp.file("empty.db");
    fs.writeFileSync(file, "");
    const store = Store.open(file, { create: false });
    try {
      assert.equal(store.schemaVersion, 4);
      assert.equal(store.db.pragma("application_id", { simple: true }), APPLICATION_ID);
      assert.ok(store.nodeById(ROOT_ID) !== undefined);
    } finally {
      store.close();
    }
    assert.ok(fs.statSync(file).size > 0, "the file now holds the schema");
  });

  it("an empty SQLite database (no tables, application_id 0) is adopted as a new dmgw database", () => {
    const file = tmp.file("blank.db");
    const db = new Database(file);
    db.pragma("user_version = 0");
    db.exec("VACUUM");
    db.close();
    const store = Store.open(file);
    try {
      assert.equal(store.schemaVersion, 4);
    } finally {
      store.close();
    }
  });

  it(":memory: -> a usable store with the root node", () => {
    const store = Store.open(":memory:", { create: false });
    try {
      assert.equal(store.schemaVersion, 4);
      assert.ok(store.nodeById(ROOT_ID) !== undefined);
      assert.equal(store.fileBytes(), 0);
    } finally {
      store.close();
    }
  });

  it("a committed transaction is in the WAL before the connection closes (durable at commit)", () => {
    const file = tmp.file("wal.db");
    const store = Store.open(file);
    try {
      const tree = new DmTree(store);
      tree.seed();
      tree.transaction(() => {
        tree.write({ path: "./Durable", format: "chr", value: "yes" });
      });
      assert.ok(fs.existsSync(`${file}-wal`) && fs.statSync(`${file}-wal`).size > 0, "WAL written");
      // A second connection (another process after a crash would see the same) reads the commit.
      const reader = new Database(file, { readonly: true });
      try {
        assert.equal(reader.prepare("SELECT value FROM node WHERE name = 'Durable'").pluck().get(), "yes");
      } finally {
        reader.close();
      }
    } finally {
      store.close();
    }
  });
});
