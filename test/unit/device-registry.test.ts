/**
 * The registry's last-seen touches: a sighting that changes nothing but the time is held in memory
 * and written in one batch (with the Inventory MO's mirror in the same commit); every other change
 * is written at once, and a change in between wins over a pending touch.
 */
import assert from "node:assert/strict";
import { mirrorInventory } from "../../src/mo/gwmo-inventory.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import type { NewAlert } from "../../src/northbound/outbox.js";
import { DeviceRegistry, type RegistryChange } from "../../src/southbound/device-registry.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";

describe("device registry: last-seen touches", () => {
  let store: Store;
  let tree: DmTree;
  let registry: DeviceRegistry;
  let clock: number;
  const alerts: NewAlert[] = [];
  const changes: RegistryChange[] = [];
  let stopMirror: () => void;
  const lastSeenRow = (id: string): unknown =>
    store.db.prepare("SELECT last_seen FROM device WHERE device_id = ?").pluck().get(id);
  const sighting = {
    deviceId: "d1",
    transport: "http",
    mode: "proxy",
    address: "udp://127.0.0.1:9",
  } as const;

  beforeEach(() => {
    store = Store.open(":memory:");
    tree = new DmTree(store, {
      plugins: gwmoPlugins({ serverIds: ["srv"], deviceExists: () => true, control: () => undefined }),
    });
    tree.seed();
    clock = 1_000_000;
    alerts.length = 0;
    changes.length = 0;
    registry = new DeviceRegistry({
      store,
      outbox: { enqueue: (a: NewAlert) => alerts.push(a) },
      alertServers: () => ["srv"],
      now: () => clock,
      touchFlushMs: 60_000, // the tests flush by hand
    });
    stopMirror = mirrorInventory(tree, registry);
    registry.onChange((c) => changes.push(c));
  });

  afterEach(() => {
    registry.flush();
    stopMirror();
    store.close();
  });

  it("a touch is visible at once, written (row and mirror) only by flush, as one update", () => {
    registry.seen(sighting);
    assert.equal(alerts.length, 1, "the first sighting attaches with its alert");
    changes.length = 0;
    clock += 5000;
    const touched = registry.seen({ ...sighting, devInfo: {} });
    assert.equal(touched.lastSeenMs, 1_005_000);
    assert.equal(registry.get("d1")?.lastSeenMs, 1_005_000, "get sees the touch before the flush");
    assert.equal(lastSeenRow("d1"), 1_000_000, "the row still holds the old time");
    assert.equal(changes.length, 0, "nobody heard of it yet");
    registry.flush();
    assert.equal(lastSeenRow("d1"), 1_005_000);
    assert.deepEqual(
      changes.map((c) => c.kind),
      ["updated"],
    );
    const mirrored = tree.read("./GwMO/Inventory/Devices/d1/LastSeen")?.value;
    assert.equal(mirrored, new Date(1_005_000).toISOString());
    assert.equal(alerts.length, 1, "a touch alerts nobody");
  });

  it("new DevInfo is a touch (merged, batched); a new address is a change, written at once", () => {
    registry.seen(sighting);
    changes.length = 0;
    registry.seen({ ...sighting, devInfo: { FwV: "2.0", Man: "ACME" } });
    registry.seen({ ...sighting, devInfo: { FwV: "2.1" } });
    assert.equal(changes.length, 0);
    assert.deepEqual(registry.get("d1")?.devInfo, { FwV: "2.1", Man: "ACME" });
    registry.flush();
    assert.deepEqual(
      changes.map((c) => c.kind),
      ["updated"],
    );
    assert.equal(tree.read("./GwMO/Inventory/Devices/d1/DevInfo/FwV")?.value, "2.1");
    assert.equal(
      store.db.prepare("SELECT devinfo FROM device WHERE device_id = ?").pluck().get("d1"),
      JSON.stringify({ FwV: "2.1", Man: "ACME" }),
    );
    registry.seen({ ...sighting, address: "udp://127.0.0.1:10" });
    assert.equal(changes.length, 2, "the new address is heard at once");
    assert.equal(
      store.db.prepare("SELECT address FROM device WHERE device_id = ?").pluck().get("d1"),
      "udp://127.0.0.1:10",
    );
  });

  it("an unreachable after a touch wins: the flush does not make the device attached again", () => {
    registry.seen(sighting);
    clock += 1000;
    registry.seen(sighting);
    registry.unreachable("d1", "no answer");
    registry.flush();
    assert.equal(registry.get("d1")?.status, "unreachable");
    assert.equal(
      store.db.prepare("SELECT status FROM device WHERE device_id = ?").pluck().get("d1"),
      "unreachable",
    );
    assert.equal(lastSeenRow("d1"), 1_001_000, "the unreachable write carried the touched time");
  });

  it("a write rolled back with its transaction is not served from the cache", () => {
    assert.throws(() =>
      store.db.transaction(() => {
        registry.seen(sighting);
        throw new Error("the enclosing message failed");
      })(),
    );
    assert.equal(registry.get("d1"), undefined);
  });
});
