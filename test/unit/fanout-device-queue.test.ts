/** The fan-out scheduler's line of devices: lanes per transport taken in turn, closed lanes skipped. */
import assert from "node:assert/strict";
import { DeviceQueue } from "../../src/fanout/device-queue.js";

interface D {
  readonly id: string;
  readonly lane: string | undefined;
}

const d = (id: string, lane: string | undefined): D => ({ id, lane });

describe("fan-out device queue", () => {
  it("takes the lanes in turn, each in its order", () => {
    const q = new DeviceQueue<string, D>();
    for (const x of [d("m1", "mqtt"), d("m2", "mqtt"), d("m3", "mqtt"), d("c1", "coap"), d("h1", "http")])
      q.push(x);
    const taken: string[] = [];
    for (let x = q.take(() => true); x !== undefined; x = q.take(() => true)) taken.push(x.id);
    assert.deepEqual(taken, ["m1", "c1", "h1", "m2", "m3"]);
    assert.equal(q.size, 0);
  });

  it("skips a closed lane without losing its devices; a retry goes first in its lane", () => {
    const q = new DeviceQueue<string, D>();
    for (let i = 1; i <= 1000; i++) q.push(d(`m${i}`, "mqtt"));
    q.push(d("c1", "coap"));
    assert.equal(q.take((lane) => lane !== "mqtt")?.id, "c1");
    assert.equal(
      q.take((lane) => lane !== "mqtt"),
      undefined,
      "only mqtt is left, and it is closed",
    );
    assert.equal(q.size, 1000);
    q.unshift(d("m0-retry", "mqtt"));
    assert.equal(q.take(() => true)?.id, "m0-retry");
    assert.equal(q.take(() => true)?.id, "m1");
  });

  it("devices outside the inventory have their own lane; drain empties every lane", () => {
    const q = new DeviceQueue<string, D>();
    q.push(d("x", undefined));
    q.push(d("m1", "mqtt"));
    q.push(d("m2", "mqtt"));
    assert.equal(q.take((lane) => lane === undefined)?.id, "x");
    q.unshift(d("r", "mqtt"));
    assert.deepEqual(
      q.drain().map((x) => x.id),
      ["r", "m1", "m2"],
    );
    assert.equal(q.size, 0);
    assert.equal(
      q.take(() => true),
      undefined,
    );
  });
});
