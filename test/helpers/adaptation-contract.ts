/**
 * The shared contract every adaptation driver passes (style.md 2.2, 2.9; modelled on
 * driver-contract.ts): idempotent start and stop, no handle left after stop, a silent device as 504
 * by the deadline, a cancel as 514, a device that answers as `replied` with per-command statuses.
 * Each driver brings a harness (coap here; BLE adds its own).
 */
import assert from "node:assert/strict";
import type { AdaptationDriver, DeviceAddress, DriverState } from "../../drivers/driver.js";
import type { Command } from "../../src/syncml/index.js";
import { activeHandles, assertNoHandlesLeft, handleBaseline } from "./handles.js";

export interface AdaptationHarness {
  readonly driver: AdaptationDriver;
  /** Every state the driver reported, in order. */
  readonly states: DriverState[];
  /** `ok` answers; `silent` is known to the driver but never answers. Resolves once attached. */
  device(name: "ok" | "silent"): Promise<DeviceAddress>;
  /** What `Get ./DevInfo/Man` answers on the `ok` device. */
  readonly manufacturer: string;
  /** A Replace on the `ok` device and the status it must get (200 where writable, 405 where not). */
  readonly replace: { readonly command: Command; readonly status: number };
  /** Stops the devices and peers (the contract stops the driver itself). */
  close(): Promise<void>;
}

const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };

export function adaptationContract(name: string, make: () => Promise<AdaptationHarness>): void {
  describe(`adaptation driver contract: ${name}`, function () {
    this.timeout(30_000);
    let h: AdaptationHarness | undefined;
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

    it("a device that answers: replied, every command with its status", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      const ok = await h.device("ok");
      const outcome = await h.driver.execute(ok, [GET_MAN, h.replace.command], { timeoutMs: 8_000 });
      if (outcome.kind === "failed") assert.fail(`failed ${outcome.status}: ${outcome.reason}`);
      assert.deepEqual(
        outcome.results.map((r) => r.status),
        [200, h.replace.status],
      );
      assert.deepEqual(outcome.results[0]?.items[0]?.data, { kind: "text", text: h.manufacturer });
    });

    it("a device that never answers: 504 by the deadline, never a throw", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      const silent = await h.device("silent");
      const started = Date.now();
      const outcome = await h.driver.execute(silent, [GET_MAN], { timeoutMs: 700 });
      const took = Date.now() - started;
      assert.ok(outcome.kind === "failed" && outcome.status === 504, JSON.stringify(outcome));
      assert.ok(took >= 600 && took < 1_500, `settled after ${took} ms`);
    });

    it("a cancel settles 514 at once", async () => {
      assert.ok(h !== undefined);
      await h.driver.start();
      const silent = await h.device("silent");
      const controller = new AbortController();
      const running = h.driver.execute(silent, [GET_MAN], { timeoutMs: 10_000, signal: controller.signal });
      setTimeout(() => {
        controller.abort();
      }, 50);
      const started = Date.now();
      const outcome = await running;
      assert.ok(outcome.kind === "failed" && outcome.status === 514, JSON.stringify(outcome));
      assert.ok(Date.now() - started < 1_000);
    });

    it("stop() is idempotent, never throws, and leaves no socket or timer behind", async () => {
      assert.ok(h !== undefined);
      const baseline = await handleBaseline(before);
      await h.driver.start();
      const ok = await h.device("ok");
      await h.driver.execute(ok, [GET_MAN], { timeoutMs: 8_000 });
      await h.driver.stop();
      await h.driver.stop();
      assert.equal(h.driver.state, "stopped");
      const late = await h.driver.execute(ok, [GET_MAN], { timeoutMs: 1_000 });
      assert.ok(late.kind === "failed" && (late.status === 503 || late.status === 504), JSON.stringify(late));
      await h.close();
      h = undefined;
      await assertNoHandlesLeft(baseline);
    });
  });
}
