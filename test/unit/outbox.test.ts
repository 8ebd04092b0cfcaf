import assert from "node:assert/strict";
import {
  AlertOutbox,
  decodeItems,
  encodeItems,
  rankOfItems,
  rankOfMark,
  type NewAlert,
  type OutboxOptions,
} from "../../src/northbound/outbox.js";
import type { Item } from "../../src/syncml/model.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import { Clock, T0, tempDir, text, type TempDir } from "../helpers/tree.js";

const SRV = "dm.example.com";
const OTHER = "other.example.net";
const LARGE: OutboxOptions = { maxCount: 1000, maxBytes: 1_000_000 };

/** A Generic Alert with one item of the given Mark (none: informational) and a data payload. */
function alert(data: string, mark?: string, serverId = SRV): NewAlert {
  return {
    serverId,
    code: 1226,
    correlator: `corr-${data}`,
    items: [
      {
        source: { locUri: "./Jobs/1" },
        meta: { type: "urn:oma:at:oma-gwmo:completionstatus:1.0", format: "chr", ...(mark ? { mark } : {}) },
        data: { kind: "text", text: data },
      },
    ],
  };
}

function texts(outbox: AlertOutbox, serverId = SRV): string[] {
  return outbox.pending(serverId).map((a) => {
    const d = a.items[0]?.data;
    return d?.kind === "text" ? d.text : "?";
  });
}

describe("AlertOutbox", () => {
  let store: Store;
  let clock: Clock;

  beforeEach(() => {
    store = Store.open(":memory:");
    clock = new Clock();
  });
  afterEach(() => {
    store.close();
  });

  describe("enqueue, pending, acknowledge", () => {
    it("returns pending alerts oldest first, per server, with a limit", () => {
      const outbox = new AlertOutbox(store, { ...LARGE, now: clock.now });
      const ids = ["a", "b", "c"].map((d) => outbox.enqueue(alert(d)).id);
      outbox.enqueue(alert("x", undefined, OTHER));
      assert.equal(new Set(ids).size, 3);
      assert.deepEqual(texts(outbox), ["a", "b", "c"]);
      assert.deepEqual(
        outbox.pending(SRV).map((a) => a.id),
        ids,
      );
      assert.deepEqual(texts(outbox, OTHER), ["x"]);
      assert.deepEqual(
        outbox.pending(SRV, 2).map((a) => a.id),
        ids.slice(0, 2),
      );
      assert.deepEqual(outbox.serverIds(), [SRV, OTHER]);
      assert.deepEqual(outbox.pending("nobody"), []);
    });

    it("keeps code, correlator (or its absence) and the items of the model, bytes included", () => {
      const outbox = new AlertOutbox(store, { ...LARGE, now: clock.now });
      const items: Item[] = [
        {
          source: { locUri: "./A", locName: "n" },
          meta: { format: "chr", mark: "critical" },
          data: { kind: "text", text: "é<&>" },
        },
        {
          meta: { format: "bin", size: "4" },
          data: { kind: "opaque", bytes: Uint8Array.from([0, 255, 1, 128]) },
        },
        {
          target: { locUri: "./B" },
          data: {
            kind: "element",
            element: { name: "MgmtTree", namespace: "syncml:dmddf1.2", children: ["t"] },
          },
          moreData: false,
        },
        {},
      ];
      outbox.enqueue({ serverId: SRV, code: 1224, items });
      outbox.enqueue({ serverId: SRV, code: 1226, correlator: "c1", items: [] });
      const [first, second] = outbox.pending(SRV);
      assert.equal(first?.code, 1224);
      assert.ok(first);
      assert.equal(Object.hasOwn(first, "correlator"), false, "no correlator key when none was given");
      assert.deepEqual(first.items, items);
      const opaque = first.items[1]?.data;
      assert.ok(opaque?.kind === "opaque" && !Buffer.isBuffer(opaque.bytes), "bytes, not a Buffer");
      assert.equal(first.createdMs, T0);
      assert.equal(first.attempts, 0);
      assert.equal(first.lastAttemptMs, undefined);
      assert.equal(second?.code, 1226);
      assert.equal(second.correlator, "c1");
    });

    it("stores opaque bytes as base64 in the JSON", () => {
      const items: Item[] = [{ data: { kind: "opaque", bytes: Uint8Array.from([1, 2, 3]) } }];
      const json = encodeItems(items);
      assert.ok(json.includes('"AQID"'), json);
      assert.deepEqual(decodeItems(json), items);
    });

    it("acknowledge removes exactly the given alerts and ignores unknown ids", () => {
      const outbox = new AlertOutbox(store, LARGE);
      const [a, b, c] = ["a", "b", "c"].map((d) => outbox.enqueue(alert(d)).id);
      assert.equal(outbox.acknowledge([b!, "999", "x", "", "0"]), 1);
      assert.deepEqual(texts(outbox), ["a", "c"]);
      assert.equal(outbox.acknowledge([a!, c!, a!]), 2);
      assert.deepEqual(outbox.pending(SRV), []);
      assert.equal(outbox.stats().count, 0);
    });

    it("never reuses the id of an acknowledged alert", () => {
      const outbox = new AlertOutbox(store, LARGE);
      const first = outbox.enqueue(alert("a")).id;
      outbox.acknowledge([first]);
      const second = outbox.enqueue(alert("b")).id;
      assert.notEqual(second, first);
      assert.equal(outbox.acknowledge([first]), 0, "the old id removes nothing");
      assert.deepEqual(texts(outbox), ["b"]);
    });

    it("recordAttempt counts attempts at the injected time", () => {
      const outbox = new AlertOutbox(store, { ...LARGE, now: clock.now });
      const [a, b] = ["a", "b"].map((d) => outbox.enqueue(alert(d)).id);
      clock.tick(5000);
      assert.equal(outbox.recordAttempt([a!, b!]), 2);
      clock.tick(7000);
      assert.equal(outbox.recordAttempt([a!, "42"]), 1);
      const [pa, pb] = outbox.pending(SRV);
      assert.equal(pa?.attempts, 2);
      assert.equal(pa.lastAttemptMs, T0 + 12_000);
      assert.equal(pb?.attempts, 1);
      assert.equal(pb.lastAttemptMs, T0 + 5000);
      assert.equal(pa.createdMs, T0);
    });

    it("stats counts alerts, their stored bytes and drops", () => {
      const outbox = new AlertOutbox(store, LARGE);
      assert.deepEqual(outbox.stats(), { count: 0, bytes: 0, dropped: 0 });
      const one = alert("a");
      outbox.enqueue(one);
      outbox.enqueue(alert("b"));
      const per =
        Buffer.byteLength(encodeItems(one.items)) + Buffer.byteLength("corr-a") + Buffer.byteLength(SRV);
      assert.deepEqual(outbox.stats(), { count: 2, bytes: 2 * per, dropped: 0 });
    });

    it("keeps its totals equal to a recount through enqueues, drops, acknowledgements and rollbacks", () => {
      const outbox = new AlertOutbox(store, { maxCount: 5, maxBytes: 2000 });
      const recount = (): { count: number; bytes: number } =>
        store.db
          .prepare("SELECT count(*) AS count, coalesce(sum(bytes), 0) AS bytes FROM alert_outbox")
          .get() as { count: number; bytes: number };
      for (let i = 0; i < 40; i++) {
        const { id } = outbox.enqueue(
          alert("z".repeat((i * 37) % 300), i % 4 === 0 ? "critical" : undefined),
        );
        if (i % 3 === 0) outbox.acknowledge([id]);
        if (i % 7 === 0) {
          assert.throws(() =>
            store.db.transaction(() => {
              outbox.enqueue(alert("rolled back"));
              throw new Error("rollback");
            })(),
          );
        }
        const { count, bytes } = outbox.stats();
        assert.deepEqual({ count, bytes }, recount(), `after enqueue ${i}`);
        assert.ok(count <= 5 && bytes <= 2000);
      }
    });

    it("refuses bad bounds and bad alerts", () => {
      assert.throws(() => new AlertOutbox(store, { maxCount: 0, maxBytes: 10 }));
      assert.throws(() => new AlertOutbox(store, { maxCount: 1, maxBytes: 0.5 }));
      const outbox = new AlertOutbox(store, LARGE);
      assert.throws(() => outbox.enqueue({ ...alert("a"), serverId: "" }));
      assert.throws(() => outbox.enqueue({ ...alert("a"), code: 1200 as 1226 }));
      assert.equal(outbox.stats().count, 0);
    });
  });

  describe("ranks", () => {
    it("ranks the Mark levels of protocol.md 3.8; unknown or missing is informational", () => {
      const order = ["harmless", "informational", "warning", "minor", "critical", "fatal"];
      order.forEach((m, i) => {
        assert.equal(rankOfMark(m), i, m);
      });
      assert.equal(rankOfMark("indeterminate"), rankOfMark("informational"));
      assert.equal(rankOfMark(undefined), rankOfMark("informational"));
      assert.equal(rankOfMark("bogus"), rankOfMark("informational"));
      assert.equal(rankOfMark(" Critical "), rankOfMark("critical"));
    });

    it("an alert ranks as its highest item; an alert without items is informational", () => {
      const item = (mark: string): Item => ({ meta: { mark } });
      assert.equal(rankOfItems([item("harmless"), item("fatal"), item("warning")]), rankOfMark("fatal"));
      assert.equal(rankOfItems([item("harmless")]), rankOfMark("harmless"));
      assert.equal(rankOfItems([]), rankOfMark("informational"));
    });
  });

  describe("bounds and the drop policy", () => {
    it("over maxCount, the oldest alert of the lowest rank goes, counted and returned", () => {
      const outbox = new AlertOutbox(store, { maxCount: 3, maxBytes: 1_000_000 });
      const ids = ["a", "b", "c"].map((d) => outbox.enqueue(alert(d)).id);
      const r = outbox.enqueue(alert("d"));
      assert.equal(r.stored, true);
      assert.deepEqual(
        r.dropped.map((d) => [d.id, d.reason, d.severity, d.serverId, d.code, d.correlator]),
        [[ids[0], "evicted", "informational", SRV, 1226, "corr-a"]],
      );
      assert.deepEqual(texts(outbox), ["b", "c", "d"]);
      assert.equal(outbox.stats().dropped, 1);
      assert.equal(outbox.stats().count, 3);
    });

    it("drops lower ranks first, whatever their age", () => {
      const outbox = new AlertOutbox(store, { maxCount: 3, maxBytes: 1_000_000 });
      outbox.enqueue(alert("w", "warning"));
      outbox.enqueue(alert("i", "informational"));
      outbox.enqueue(alert("h", "harmless"));
      assert.deepEqual(
        outbox.enqueue(alert("m", "minor")).dropped.map((d) => d.severity),
        ["harmless"],
      );
      assert.deepEqual(
        outbox.enqueue(alert("n")).dropped.map((d) => d.severity),
        ["informational"],
        "the older informational goes before the newer one",
      );
      assert.deepEqual(texts(outbox), ["w", "m", "n"]);
    });

    it("never drops an alert for a lower-ranked one: the newcomer is dropped instead", () => {
      const outbox = new AlertOutbox(store, { maxCount: 2, maxBytes: 1_000_000 });
      outbox.enqueue(alert("c", "critical"));
      outbox.enqueue(alert("f", "fatal"));
      for (let i = 0; i < 5; i++) {
        const r = outbox.enqueue(alert(`i${i}`));
        assert.equal(r.stored, false);
        assert.deepEqual(
          r.dropped.map((d) => [d.id, d.reason]),
          [[r.id, "evicted"]],
        );
      }
      assert.deepEqual(texts(outbox), ["c", "f"]);
      assert.equal(outbox.stats().dropped, 5);
      // A critical newcomer displaces the older critical, never the fatal one.
      const r = outbox.enqueue(alert("c2", "critical"));
      assert.equal(r.stored, true);
      assert.deepEqual(
        r.dropped.map((d) => d.severity),
        ["critical"],
      );
      assert.deepEqual(texts(outbox), ["f", "c2"]);
    });

    it("over maxBytes, drops as many as needed to fit", () => {
      const size = (d: string): number => {
        const a = alert(d);
        return Buffer.byteLength(encodeItems(a.items)) + Buffer.byteLength(a.correlator ?? "") + SRV.length;
      };
      const outbox = new AlertOutbox(store, { maxCount: 100, maxBytes: 3 * size("a") });
      ["a", "b", "c"].forEach((d) => outbox.enqueue(alert(d)));
      // About 1.5 times an alert of ["a", "b", "c"]: two of them must go.
      const big = "x".repeat(Math.floor(size("a") / 2));
      const r = outbox.enqueue({ ...alert(big), correlator: "c" });
      assert.equal(r.stored, true);
      assert.equal(r.dropped.length, 2);
      assert.deepEqual(texts(outbox), ["c", big]);
      assert.ok(outbox.stats().bytes <= 3 * size("a"));
      assert.equal(outbox.stats().dropped, 2);
    });

    it("an alert larger than maxBytes alone is dropped at once and drops nothing else", () => {
      const outbox = new AlertOutbox(store, { maxCount: 100, maxBytes: 500 });
      outbox.enqueue(alert("small", "harmless"));
      const r = outbox.enqueue(alert("y".repeat(600), "fatal"));
      assert.equal(r.stored, false);
      assert.deepEqual(
        r.dropped.map((d) => [d.id, d.reason, d.severity]),
        [[r.id, "too-large", "fatal"]],
      );
      assert.deepEqual(texts(outbox), ["small"]);
      assert.equal(outbox.stats().dropped, 1);
    });
  });

  describe("transactions", () => {
    it("an enqueue inside the caller's transaction commits with it", () => {
      const tree = new DmTree(store);
      tree.seed();
      const outbox = new AlertOutbox(store, LARGE);
      tree.transaction(() => {
        tree.write({ path: "./R/Done", format: "chr", value: "1" });
        outbox.enqueue(alert("a"));
        assert.ok(store.db.inTransaction);
      });
      assert.equal(text(tree.read("./R/Done")?.value), "1");
      assert.deepEqual(texts(outbox), ["a"]);
    });

    it("a rollback takes the enqueued alert, its drops and the drop count back", () => {
      const tree = new DmTree(store);
      tree.seed();
      const outbox = new AlertOutbox(store, { maxCount: 1, maxBytes: 1_000_000 });
      outbox.enqueue(alert("kept"));
      assert.throws(
        () =>
          tree.transaction(() => {
            tree.write({ path: "./R/Done", format: "chr", value: "1" });
            const r = outbox.enqueue(alert("gone"));
            assert.equal(r.dropped.length, 1);
            assert.deepEqual(texts(outbox), ["gone"]);
            throw new Error("the fan-out result failed");
          }),
        /fan-out result failed/,
      );
      assert.equal(tree.read("./R/Done"), undefined);
      assert.deepEqual(texts(outbox), ["kept"]);
      assert.equal(outbox.stats().dropped, 0);
    });

    it("acknowledge inside a rolled-back transaction keeps the alert", () => {
      const outbox = new AlertOutbox(store, LARGE);
      const id = outbox.enqueue(alert("a")).id;
      assert.throws(() =>
        store.db.transaction(() => {
          outbox.acknowledge([id]);
          throw new Error("rollback");
        })(),
      );
      assert.deepEqual(texts(outbox), ["a"]);
    });
  });

  describe("on a file", () => {
    let tmp: TempDir;
    beforeEach(() => {
      tmp = tempDir("dmgw-outbox-");
    });
    afterEach(() => {
      tmp.cleanup();
    });

    it("alerts, attempts and the drop counter survive a reopen; a second outbox on the file agrees", () => {
      const file = tmp.file("dmgw.db");
      const first = Store.open(file);
      const outbox = new AlertOutbox(first, { maxCount: 2, maxBytes: 1_000_000, now: clock.now });
      const ids = ["a", "b", "c"].map((d) => outbox.enqueue(alert(d)).id);
      outbox.recordAttempt([ids[1]!]);
      first.close();

      const second = Store.open(file, { create: false });
      try {
        const again = new AlertOutbox(second, { maxCount: 2, maxBytes: 1_000_000 });
        assert.deepEqual(texts(again), ["b", "c"]);
        assert.equal(again.pending(SRV)[0]?.attempts, 1);
        assert.equal(again.stats().dropped, 1);
        assert.ok(second.schemaVersion >= 2, "the outbox tables come from migration 2 of the store");
        const more = again.enqueue(alert("d"));
        assert.ok(!ids.includes(more.id), "ids of a previous run are not reused");
        assert.deepEqual(texts(new AlertOutbox(second, LARGE)), ["c", "d"]);
      } finally {
        second.close();
      }
    });
  });
});
