import assert from "node:assert/strict";
import { Reassembler, type ConcatPart } from "../../board/modem/concat.js";

const T0 = 1_000_000;

function part(
  sequence: number,
  total: number,
  bytes: number[],
  over: Partial<ConcatPart<string>> = {},
): ConcatPart<string> {
  return {
    originator: "+491720000001",
    reference: 0x42,
    referenceBits: 8,
    total,
    sequence,
    data: Uint8Array.from(bytes),
    tag: `slot${sequence}`,
    ...over,
  };
}

describe("Reassembler", () => {
  it("joins parts that arrive in any order, in part order", () => {
    for (const order of [
      [1, 2, 3],
      [3, 2, 1],
      [2, 3, 1],
    ]) {
      const r = new Reassembler<string>();
      const results = order.map((seq) => r.add(part(seq, 3, [seq * 10, seq * 10 + 1]), T0).result);
      const last = results[results.length - 1];
      assert.ok(last?.kind === "complete", JSON.stringify(order));
      assert.deepEqual([...last.data], [10, 11, 20, 21, 30, 31]);
      assert.deepEqual(last.tags, ["slot1", "slot2", "slot3"]);
      assert.deepEqual(
        results.slice(0, -1).map((x) => x.kind),
        ["pending", "pending"],
      );
      assert.equal(r.pendingCount, 0);
      assert.equal(r.counters.completed, 1);
    }
  });

  it("reports how many parts are in while pending", () => {
    const r = new Reassembler<string>();
    const res = r.add(part(2, 4, [2]), T0).result;
    assert.deepEqual(res, { kind: "pending", key: Reassembler.keyOf(part(2, 4, [])), received: 1, total: 4 });
    assert.equal(r.holds("slot2"), true);
    assert.equal(r.holds("slot1"), false);
  });

  it("ignores a duplicate part, keeping the first copy, and completes once", () => {
    const r = new Reassembler<string>();
    r.add(part(1, 2, [1]), T0);
    const dup = r.add(part(1, 2, [9], { tag: "other" }), T0).result;
    assert.deepEqual(dup, { kind: "duplicate", key: Reassembler.keyOf(part(1, 2, [])), tag: "other" });
    const done = r.add(part(2, 2, [2]), T0).result;
    assert.ok(done.kind === "complete");
    assert.deepEqual([...done.data], [1, 2]);
    assert.equal(r.counters.duplicates, 1);
    // A copy of a part arriving after completion starts a new message; it never completes twice.
    const late = r.add(part(2, 2, [2], { tag: "late" }), T0).result;
    assert.equal(late.kind, "pending");
    assert.equal(r.counters.completed, 1);
  });

  it("keeps messages apart by originator, reference width, reference and total", () => {
    const r = new Reassembler<string>();
    const variants: Partial<ConcatPart<string>>[] = [
      {},
      { originator: "+491720000002" },
      { reference: 0x43 },
      { referenceBits: 16 },
      { total: 3 },
    ];
    for (const v of variants) assert.equal(r.add(part(1, v.total ?? 2, [1], v), T0).result.kind, "pending");
    assert.equal(r.pendingCount, variants.length);
    const done = r.add(part(2, 2, [2], { originator: "+491720000002" }), T0).result;
    assert.ok(done.kind === "complete");
    assert.equal(r.pendingCount, variants.length - 1);
  });

  it("completes a single-part message at once", () => {
    const r = new Reassembler<string>();
    const res = r.add(part(1, 1, [5]), T0).result;
    assert.ok(res.kind === "complete");
    assert.deepEqual([...res.data], [5]);
    assert.equal(r.pendingCount, 0);
  });

  it("refuses a part numbered outside 1..total", () => {
    const r = new Reassembler<string>();
    assert.equal(r.add(part(0, 2, [1]), T0).result.kind, "invalid");
    assert.equal(r.add(part(3, 2, [1]), T0).result.kind, "invalid");
    assert.equal(r.add(part(1, 0, [1]), T0).result.kind, "invalid");
    assert.equal(r.add(part(1, 256, [1]), T0).result.kind, "invalid");
    assert.equal(r.counters.invalid, 4);
    assert.equal(r.pendingCount, 0);
  });

  it("drops an incomplete message timeoutMs after its first part, counting it", () => {
    const r = new Reassembler<string>({ timeoutMs: 1000 });
    r.add(part(1, 3, [1]), T0);
    r.add(part(2, 3, [2]), T0 + 900);
    assert.equal(r.nextDeadline(), T0 + 1000);
    assert.deepEqual(r.expire(T0 + 999), []);
    const dropped = r.expire(T0 + 1000);
    assert.deepEqual(dropped, [
      {
        key: Reassembler.keyOf(part(1, 3, [])),
        reason: "timeout",
        received: 2,
        total: 3,
        tags: ["slot1", "slot2"],
      },
    ]);
    assert.equal(r.counters.expired, 1);
    assert.equal(r.pendingCount, 0);
    assert.equal(r.nextDeadline(), undefined);
    // The missing part alone now starts over instead of completing a message that is gone.
    assert.equal(r.add(part(3, 3, [3]), T0 + 1001).result.kind, "pending");
  });

  it("expires due messages when a part is added", () => {
    const r = new Reassembler<string>({ timeoutMs: 1000 });
    r.add(part(1, 2, [1], { reference: 1 }), T0);
    const { result, dropped } = r.add(part(1, 2, [1], { reference: 2 }), T0 + 5000);
    assert.equal(result.kind, "pending");
    assert.equal(dropped.length, 1);
    assert.equal(dropped[0]?.reason, "timeout");
  });

  it("evicts the oldest incomplete message beyond maxPending, counting it", () => {
    const r = new Reassembler<string>({ maxPending: 2, timeoutMs: 60_000 });
    r.add(part(1, 2, [1], { reference: 1, tag: "r1" }), T0);
    r.add(part(1, 2, [1], { reference: 2, tag: "r2" }), T0 + 1);
    const { result, dropped } = r.add(part(1, 2, [1], { reference: 3, tag: "r3" }), T0 + 2);
    assert.equal(result.kind, "pending");
    assert.deepEqual(
      dropped.map((d) => [d.reason, d.tags]),
      [["evicted", ["r1"]]],
    );
    assert.equal(r.pendingCount, 2);
    assert.equal(r.counters.evicted, 1);
    // Parts of a message already held do not evict anything.
    assert.deepEqual(r.add(part(2, 2, [2], { reference: 2 }), T0 + 3).dropped, []);
  });

  it("stays bounded under a flood of distinct references", () => {
    const r = new Reassembler<string>({ maxPending: 8 });
    for (let i = 0; i < 1000; i++) r.add(part(1, 2, [i & 0xff], { reference: i, referenceBits: 16 }), T0 + i);
    assert.equal(r.pendingCount, 8);
    assert.equal(r.counters.evicted, 992);
  });

  it("clear() hands back what was held without counting it as dropped", () => {
    const r = new Reassembler<string>();
    r.add(part(1, 2, [1]), T0);
    const held = r.clear();
    assert.deepEqual(
      held.map((d) => d.tags),
      [["slot1"]],
    );
    assert.equal(r.pendingCount, 0);
    assert.equal(r.counters.evicted, 0);
  });
});
