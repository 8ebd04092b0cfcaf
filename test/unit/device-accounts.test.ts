import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { enrolledAccount, StoredDeviceAccounts } from "../../src/southbound/device-accounts.js";
import { Store } from "../../src/tree/store.js";

describe("StoredDeviceAccounts", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-accounts-"));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const account = {
    deviceId: "dev-1",
    serverId: "gw",
    clientAuth: { scheme: "md5", name: "dev-1", secret: "c-secret" },
    serverAuth: { scheme: "hmac", name: "gw", secret: "s-secret" },
  } as const;

  it("keeps accounts with both secrets and zero nonces by default; none is in the tree's node table", () => {
    const store = Store.open(path.join(dir, "a.db"));
    const accounts = new StoredDeviceAccounts(store);
    accounts.put(account);
    const got = accounts.get("dev-1");
    assert.deepEqual(got?.clientAuth, account.clientAuth);
    assert.deepEqual(got.serverAuth, account.serverAuth);
    assert.deepEqual([...got.nonces.client], [0, 0, 0, 0]);
    const inTree = store.db
      .prepare("SELECT count(*) FROM node WHERE CAST(value AS TEXT) LIKE '%secret%'")
      .pluck()
      .get();
    assert.equal(inTree, 0);
    assert.equal(accounts.size, 1);
    assert.equal(accounts.remove("dev-1"), true);
    assert.equal(accounts.get("dev-1"), undefined);
    store.close();
  });

  it("nonces are read back at once and written in one group commit; flush() and a reopen see them", () => {
    const file = path.join(dir, "n.db");
    const store = Store.open(file);
    const accounts = new StoredDeviceAccounts(store);
    accounts.put(account);
    const nonces = { client: Uint8Array.from([1, 2]), server: Uint8Array.from([3, 4]) };
    accounts.saveNonces("dev-1", nonces);
    assert.deepEqual(accounts.get("dev-1")?.nonces, nonces, "pending nonces are what get() answers");
    const onDisk = store.db.prepare("SELECT client_nonce FROM device_account").pluck().get() as Buffer;
    assert.deepEqual([...onDisk], [0, 0, 0, 0], "not written before the group commit");
    accounts.flush();
    store.close();
    const again = Store.open(file);
    assert.deepEqual(new StoredDeviceAccounts(again).get("dev-1")?.nonces, nonces);
    again.close();
  });

  it("a store closed before the group commit: the timer does nothing and throws nothing", async () => {
    const store = Store.open(path.join(dir, "c.db"));
    const accounts = new StoredDeviceAccounts(store);
    accounts.put(account);
    accounts.saveNonces("dev-1", { client: Uint8Array.from([9]), server: Uint8Array.from([9]) });
    store.close();
    await new Promise((r) => setTimeout(r, 60));
    assert.doesNotThrow(() => {
      accounts.flush();
    });
  });

  it("enrolment derives per-device secrets from the site secret: stable, distinct, not the secret", () => {
    const e = { secret: "site", scheme: "hmac", serverId: "gw" } as const;
    const a = enrolledAccount("dev-a", e);
    const b = enrolledAccount("dev-b", e);
    assert.deepEqual(enrolledAccount("dev-a", e), a);
    assert.notEqual(
      a.clientAuth.scheme === "none" ? "" : a.clientAuth.secret,
      b.clientAuth.scheme === "none" ? "" : b.clientAuth.secret,
    );
    assert.ok(a.clientAuth.scheme !== "none" && a.serverAuth.scheme !== "none");
    assert.notEqual(a.clientAuth.secret, a.serverAuth.secret);
    assert.equal(a.clientAuth.secret.length, 32);
    assert.ok(!a.clientAuth.secret.includes("site"));
  });
});
