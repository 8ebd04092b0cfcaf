/**
 * The shared contract every proxy driver passes (style.md 2.2, 2.9; MQTT.js's abstract_store
 * pattern): idempotent start and stop, no handle left after stop, a device's silence or a cancel as
 * a value within the deadline, sessions through the real `ProxySessions`, and, for drivers that own
 * a link, `degraded` on link loss and `ready` again on a new link.
 */
import assert from "node:assert/strict";
import type { DriverState, ProxyDriver } from "../../drivers/driver.js";
import type { ProxySessions, ProxyTarget } from "../../src/southbound/proxy-sessions.js";
import type { Command } from "../../src/syncml/index.js";
import { activeHandles, assertNoHandlesLeft, handleBaseline } from "./handles.js";
import { waitFor } from "./wait.js";

export interface ContractHarness {
  readonly driver: ProxyDriver;
  readonly proxy: ProxySessions;
  /** Every state the driver reported, in order. */
  readonly states: DriverState[];
  /** `ok` answers its sessions; `silent` never answers a notification. */
  target(name: "ok" | "silent"): ProxyTarget;
  /** Cuts the transport under the driver and restores it on the same addresses; absent when the
   * driver owns no link (the http driver serves; its devices come to it). */
  readonly link?: { cut(): Promise<void>; restore(): Promise<void> };
  /** Stops the devices and peers (the contract stops the driver itself). */
  close(): Promise<void>;
}

const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const REPLACE: Command = {
  kind: "Replace",
  cmdId: "2",
  items: [
    { target: { locUri: "./Vendor/Setting1" }, meta: { format: "int" }, data: { kind: "text", text: "5" } },
  ],
};

export function driverContract(name: string, make: () => Promise<ContractHarness>): void {
  describe(`proxy driver contract: ${name}`, function () {
    this.timeout(30_000);
    let h: ContractHarness | undefined;
    let before: Map<string, number>;

    beforeEach(async () => {
      before = activeHandles();
      h = await make();
    });

    afterEach(async () => {
      await h?.driver.stop();
      await h?.close();
      h = undefined;
    });

    it("start() is idempotent and ends ready", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      await h.driver.start();
      assert.equal(h.driver.state, "ready");
      assert.equal(h.states.filter((s) => s === "ready").length, 1, `states: ${h.states.join(",")}`);
    });

    it("a device that answers: one session, every command answered", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      const outcome = await h.proxy.execute(h.target("ok"), [GET_MAN, REPLACE], { timeoutMs: 8_000 });
      if (outcome.kind === "failed") assert.fail(`failed ${outcome.status}: ${outcome.reason}`);
      assert.deepEqual(
        outcome.records.map((r) => r.status),
        [200, 200],
      );
      assert.deepEqual(outcome.records[0]?.results[0]?.items[0]?.data, { kind: "text", text: "SimCo" });
    });

    it("a device that never answers: 504 by the deadline, never a throw", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      const started = Date.now();
      const outcome = await h.proxy.execute(h.target("silent"), [GET_MAN], { timeoutMs: 700 });
      const took = Date.now() - started;
      assert.ok(outcome.kind === "failed" && outcome.status === 504, JSON.stringify(outcome));
      // By the deadline (a little slack for a loaded CI box), never long after it.
      assert.ok(took >= 650 && took < 2_000, `settled after ${took} ms`);
    });

    it("a cancel settles 514 at once", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      const controller = new AbortController();
      const running = h.proxy.execute(h.target("silent"), [GET_MAN], {
        timeoutMs: 10_000,
        signal: controller.signal,
      });
      setTimeout(() => {
        controller.abort();
      }, 50);
      const started = Date.now();
      const outcome = await running;
      assert.ok(outcome.kind === "failed" && outcome.status === 514, JSON.stringify(outcome));
      assert.ok(Date.now() - started < 1_000);
    });

    it("stop() is idempotent, never throws, and leaves no socket, timer or tty behind", async () => {
      assert.ok(h !== undefined);
      const baseline = await handleBaseline(before);
      await h.driver.start();
      await h.proxy.execute(h.target("ok"), [GET_MAN], { timeoutMs: 8_000 });
      await h.driver.stop();
      await h.driver.stop();
      assert.equal(h.driver.state, "stopped");
      const late = await h.proxy.execute(h.target("ok"), [GET_MAN], { timeoutMs: 1_000 });
      assert.ok(late.kind === "failed" && (late.status === 503 || late.status === 504), JSON.stringify(late));
      await h.close();
      h = undefined;
      await assertNoHandlesLeft(baseline);
    });

    it("link loss: degraded, then ready on a new link, and sessions work again", async function () {
      assert.ok(h !== undefined);
      const link = h.link;
      if (link === undefined) {
        // Not a skip of something that should run: this driver owns no link to lose.
        assert.equal(h.driver.kind, "http", "only the http driver has no link");
        return;
      }
      await h.driver.start();
      await link.cut();
      await waitFor("degraded", () => h?.driver.state === "degraded", 10_000);
      await link.restore();
      await waitFor("ready", () => h?.driver.state === "ready", 20_000);
      const outcome = await h.proxy.execute(h.target("ok"), [GET_MAN], { timeoutMs: 8_000 });
      assert.equal(outcome.kind, "replied", outcome.kind === "failed" ? outcome.reason : "");
    });
  });
}
