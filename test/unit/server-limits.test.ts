/**
 * The servers' declared size limits kept between sessions (northbound/server-limits.ts) and the
 * inline bound they give a resultaggregation alert.
 */
import assert from "node:assert/strict";
import {
  ALERT_MESSAGE_MARGIN,
  inlineResultBound,
  readServerLimits,
  recordServerLimits,
  ServerLimitsStore,
} from "../../src/northbound/server-limits.js";
import { Store } from "../../src/tree/store.js";

describe("server limits", () => {
  let store: Store;
  beforeEach(() => {
    store = Store.open(":memory:");
  });
  afterEach(() => {
    store.close();
  });

  it("stores what a server declared per server id, and replaces it with the next session's", () => {
    const limits = new ServerLimitsStore(store);
    assert.equal(limits.get("a"), undefined);
    limits.record("a", { maxMsgSize: 16_384, maxObjSize: 4000 }, 1000);
    limits.record("b", { maxMsgSize: 8192 }, 1001);
    assert.deepEqual(limits.get("a"), { maxMsgSize: 16_384, maxObjSize: 4000, updated: 1000 });
    assert.deepEqual(limits.get("b"), { maxMsgSize: 8192, updated: 1001 });
    // A limit the server stopped declaring no longer holds (protocol.md 3.6: absent = unlimited).
    limits.record("a", { maxMsgSize: 32_768 }, 2000);
    assert.deepEqual(readServerLimits(store, "a"), { maxMsgSize: 32_768, updated: 2000 });
  });

  it("keeps only positive integers, and reads a damaged row as unknown", () => {
    recordServerLimits(store, "a", { maxMsgSize: -5, maxObjSize: 1.5 }, 7);
    assert.deepEqual(readServerLimits(store, "a"), { updated: 7 });
    store.setSetting("server-limits:b", "{not json");
    assert.equal(readServerLimits(store, "b"), undefined);
    store.setSetting("server-limits:c", JSON.stringify({ maxObjSize: "9000", updated: 3 }));
    assert.deepEqual(readServerLimits(store, "c"), { updated: 3 });
  });

  it("the bound: MaxObjSize, never above MaxMsgSize minus the margin, none when unknown", () => {
    const cases: [Parameters<typeof inlineResultBound>[0], number | undefined][] = [
      [undefined, undefined],
      [{}, undefined],
      [{ maxObjSize: 2000 }, 2000],
      [{ maxObjSize: 2000, maxMsgSize: 65_536 }, 2000],
      [{ maxObjSize: 100_000, maxMsgSize: 16_384 }, 16_384 - ALERT_MESSAGE_MARGIN],
      [{ maxMsgSize: 16_384 }, 16_384 - ALERT_MESSAGE_MARGIN],
      [{ maxMsgSize: ALERT_MESSAGE_MARGIN - 1 }, 0],
    ];
    for (const [limits, bound] of cases)
      assert.equal(inlineResultBound(limits), bound, JSON.stringify(limits));
  });

  it("the engine's lookup reads the store each time", () => {
    const limits = new ServerLimitsStore(store);
    assert.equal(limits.inlineResultBound("a"), undefined);
    limits.record("a", { maxMsgSize: 16_384, maxObjSize: 3000 });
    assert.equal(limits.inlineResultBound("a"), 3000);
    assert.equal(limits.inlineResultBound("b"), undefined);
  });
});
