/**
 * The fan-out engine's scheduling rules with scripted devices (the EndDevice contract, no network):
 * the concurrency window and per-transport limits, retries of unreachable devices, the abort
 * threshold, the rate limit (`Rate`), the result formats and the resultaggregation alert with its
 * inline bound.
 */
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import type { AdaptedOutcome, TransportKind } from "../../drivers/driver.js";
import { executeCommands } from "../../src/dm/command-executor.js";
import {
  DEFAULT_JOB_OPTIONS,
  FanoutEngine,
  readOptions,
  type FanoutEngineOptions,
} from "../../src/fanout/engine.js";
import { inlineDataBytes } from "../../src/fanout/results.js";
import {
  ALERT_MESSAGE_MARGIN,
  ServerLimitsStore,
  type ServerLimits,
} from "../../src/northbound/server-limits.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import { standardMoPlugins } from "../../src/mo/standard.js";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import type { EndDevice } from "../../src/southbound/end-device.js";
import { decodeCommandFragment, type Command } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import { testIdentity } from "../helpers/gateway.js";

const SRV = "dmsrv";
const JOB = "./GwMO/Fanout/j";
const GET = `<Get><CmdID>5</CmdID><Item><Target><LocURI>./DevInfo/FwV</LocURI></Target></Item></Get>`;

type Script = (attempt: number, signal: AbortSignal) => Promise<AdaptedOutcome>;

const replied = (status = 200): AdaptedOutcome => ({
  kind: "replied",
  results: [{ status, items: [{ data: { kind: "text", text: "1.0" } }], inner: [] }],
});

interface Rig {
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
  readonly engine: FanoutEngine;
  readonly calls: Map<string, number>;
  /** When each device session started (the engine's clock), in start order. */
  readonly starts: number[];
  maxInFlight: Map<TransportKind | "all", number>;
}

function rig(
  devices: Record<string, { transport?: TransportKind; script: Script }>,
  limit?: (t: TransportKind) => number,
  extra: Partial<Pick<FanoutEngineOptions, "now" | "maxInlineResultBytes" | "retryBackoff">> = {},
): Rig {
  const store = Store.open(":memory:");
  const late: { engine?: FanoutEngine } = {};
  const tree = new DmTree(store, {
    plugins: [
      ...standardMoPlugins(testIdentity("IMEI:1"), []),
      ...gwmoPlugins({ serverIds: [SRV], deviceExists: (id) => id in devices, control: () => late.engine }),
    ],
  });
  tree.seed();
  const outbox = new AlertOutbox(store, { maxCount: 100, maxBytes: 1 << 20 });
  const calls = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const r: Rig = {
    tree,
    outbox,
    engine: undefined as unknown as FanoutEngine,
    calls,
    starts: [],
    maxInFlight: new Map(),
  };
  const clock = extra.now ?? Date.now;
  const bump = (key: TransportKind | "all", d: number): void => {
    const now = (inFlight.get(key) ?? 0) + d;
    inFlight.set(key, now);
    r.maxInFlight.set(key, Math.max(r.maxInFlight.get(key) ?? 0, now));
  };
  const endDevice = (id: string): EndDevice | undefined => {
    const spec = devices[id];
    if (spec === undefined) return undefined;
    const transport = spec.transport ?? "http";
    return {
      id,
      transport,
      mode: "proxy",
      execute: async (_commands, options) => {
        const attempt = calls.get(id) ?? 0;
        calls.set(id, attempt + 1);
        r.starts.push(clock());
        bump("all", 1);
        bump(transport, 1);
        try {
          return await spec.script(attempt, options.signal ?? new AbortController().signal);
        } finally {
          bump("all", -1);
          bump(transport, -1);
        }
      },
    };
  };
  const engine = new FanoutEngine({
    tree,
    outbox,
    devices: endDevice,
    ...(limit !== undefined && { transportLimit: limit }),
    retryBackoff: { initialMs: 10, maxMs: 20 },
    ...extra,
  });
  late.engine = engine;
  return Object.assign(r, { engine });
}

function run(
  r: Rig,
  members: readonly string[],
  options: Record<string, string> = {},
  commands = GET,
): string | undefined {
  let next = 1;
  const item = (uri: string, text: string, format = "chr") => ({
    target: { locUri: uri },
    meta: { format },
    data: { kind: "text" as const, text },
  });
  const cmds: Command[] = [
    { kind: "Add", cmdId: "1", items: [item("./GwMO/Config/Groups/g/GroupID", "g")] },
    ...members.map((m, i): Command => ({
      kind: "Add",
      cmdId: `m${i}`,
      items: [item(`./GwMO/Config/Groups/g/Members/${i}/DeviceID`, m)],
    })),
    { kind: "Add", cmdId: "2", items: [item(`${JOB}/FanOut/FanOutCommands`, commands, "xml")] },
    { kind: "Add", cmdId: "3", items: [item(`${JOB}/FanOut/TargetGroupRef`, "g")] },
    ...Object.entries(options).map(([k, v], i): Command => ({
      kind: "Replace",
      cmdId: `o${i}`,
      items: [item(`${JOB}/Ext/Options/${k}`, v)],
    })),
    { kind: "Exec", cmdId: "4", correlator: "c1", items: [{ target: { locUri: `${JOB}/FanOut/Start` } }] },
  ];
  const statuses = r.tree.transaction(() =>
    executeCommands(cmds, {
      tree: r.tree,
      serverId: SRV,
      encoding: "xml",
      msgId: "1",
      nextCmdId: () => String(next++),
    }),
  );
  return statuses.at(-1)?.kind === "Status" ? (statuses.at(-1) as { data: string }).data : undefined;
}

const text = (r: Rig, p: string): string | undefined => {
  const v = r.tree.read(p)?.value;
  return v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v);
};

const wait = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

describe("FanoutEngine scheduling", () => {
  it("keeps the concurrency window and each transport's limit", async () => {
    const devices: Record<string, { transport: TransportKind; script: Script }> = {};
    for (let i = 0; i < 30; i++) {
      devices[`d${i}`] = {
        transport: i % 3 === 0 ? "serial" : "mqtt",
        script: async () => (await wait(5), replied()),
      };
    }
    const r = rig(devices, (t) => (t === "serial" ? 1 : 100));
    assert.equal(run(r, Object.keys(devices), { Concurrency: "8" }), "202");
    await r.engine.idle();
    assert.equal(text(r, `${JOB}/Status`), "Completed");
    assert.equal(r.maxInFlight.get("serial"), 1, "one serial session at a time");
    assert.ok((r.maxInFlight.get("all") ?? 0) <= 8, `window ${String(r.maxInFlight.get("all"))}`);
    assert.ok((r.maxInFlight.get("all") ?? 0) >= 4, "the window was used");
  });

  it("retries an unreachable device after a backoff, and not a device that refused", async () => {
    const r = rig({
      flaky: {
        script: (attempt) =>
          Promise.resolve(attempt === 0 ? { kind: "failed", status: 503, reason: "down" } : replied()),
      },
      refuser: { script: () => Promise.resolve({ kind: "failed", status: 401, reason: "auth" }) },
    });
    run(r, ["flaky", "refuser"], { Retries: "2" });
    await r.engine.idle();
    assert.equal(r.calls.get("flaky"), 2);
    assert.equal(r.calls.get("refuser"), 1);
    assert.equal(text(r, `${JOB}/Status`), "PartiallyCompleted");
  });

  it("stops at the abort threshold: the devices left end 514", async () => {
    const devices: Record<string, { script: Script }> = {};
    for (let i = 0; i < 20; i++)
      devices[`x${i}`] = {
        script: () => Promise.resolve({ kind: "failed", status: 502, reason: "garbage" }),
      };
    const r = rig(devices);
    run(r, Object.keys(devices), { Concurrency: "1", AbortThreshold: "10", Retries: "0" });
    await r.engine.idle();
    assert.ok(r.calls.size < 20, `only ${r.calls.size} devices ran`);
    assert.equal(text(r, `${JOB}/Ext/Progress/Done`), "20", "every device has an outcome");
    assert.equal(text(r, `${JOB}/Status`), "Failed");
    const last = decodeCommandFragment(text(r, `${JOB}/Results/20/DevResultXML`) ?? "", { allow: "replies" });
    assert.ok(last.ok && last.value[0]?.kind === "Status" && last.value[0].data === "514");
  });

  it("WBXML results and a resultaggregation alert with the results inline", async () => {
    const r = rig({
      a: { script: () => Promise.resolve(replied()) },
      b: { script: () => Promise.resolve(replied(404)) },
    });
    run(r, ["a", "b"], { ResultFormat: "wbxml", AlertType: "resultaggregation" });
    await r.engine.idle();
    const bin = r.tree.read(`${JOB}/Results/1/DevResultWBXML`)?.value;
    assert.ok(bin instanceof Uint8Array && bin[0] === 0x02, "WBXML 1.2");
    const decoded = decodeCommandFragment(bin, { allow: "replies" });
    assert.ok(decoded.ok);
    assert.deepEqual(
      decoded.value.map((c) => c.kind),
      ["Status", "Results"],
    );
    const alert = r.outbox.pending(SRV).find((a) => a.correlator === "c1");
    const item = alert?.items[0];
    assert.equal(item?.meta?.type, "urn:oma:at:oma-gwmo:resultaggregation:1.0");
    assert.equal(item.meta.format, "xml");
    assert.ok(item.data?.kind === "text" && item.data.text.includes('<DevResult DeviceID="b">'));
    assert.equal(text(r, `${JOB}/Status`), "PartiallyCompleted");
  });

  it("a second Start while the job runs is 405; an empty group completes at once", async () => {
    const r = rig({ slow: { script: async () => (await wait(50), replied()) } });
    assert.equal(run(r, ["slow"]), "202");
    let next = 1;
    const again = r.tree.transaction(() =>
      executeCommands(
        [{ kind: "Exec", cmdId: "1", items: [{ target: { locUri: `${JOB}/FanOut/Start` } }] }],
        {
          tree: r.tree,
          serverId: SRV,
          encoding: "xml",
          msgId: "2",
          nextCmdId: () => String(next++),
        },
      ),
    );
    assert.equal(again[0]?.kind === "Status" ? again[0].data : "", "405");
    await r.engine.idle();
    const r2 = rig({});
    assert.equal(run(r2, []), "202");
    assert.equal(text(r2, `${JOB}/Status`), "Completed", "an empty group completes at once");
  });
});

/** The most starts any half-open window of `windowMs` holds. */
function mostStartsIn(starts: readonly number[], windowMs: number): number {
  let most = 0;
  let from = 0;
  for (let to = 0; to < starts.length; to++) {
    while ((starts[to] ?? 0) - (starts[from] ?? 0) >= windowMs) from++;
    most = Math.max(most, to - from + 1);
  }
  return most;
}

describe("FanoutEngine rate limit (<job>/Ext/Options/Rate)", function () {
  this.timeout(20_000);

  it("Rate 20 on 60 instant devices: never more than 20 starts in any 1 s, spread over ~3 s, no polling", async () => {
    const devices: Record<string, { script: Script }> = {};
    for (let i = 0; i < 60; i++) devices[`d${i}`] = { script: () => Promise.resolve(replied()) };
    let clockReads = 0;
    const r = rig(devices, undefined, {
      now: () => {
        clockReads++;
        return Date.now();
      },
    });
    const elu = performance.eventLoopUtilization();
    const t0 = Date.now();
    assert.equal(run(r, Object.keys(devices), { Rate: "20" }), "202");
    await r.engine.idle();
    const elapsed = Date.now() - t0;
    const busy = performance.eventLoopUtilization(elu).utilization;
    assert.equal(text(r, `${JOB}/Status`), "Completed");
    assert.equal(r.starts.length, 60);
    // Strict spacing: 50 ms between starts, so 59 gaps.
    assert.ok(elapsed >= 2900, `took ${elapsed} ms`);
    assert.ok(mostStartsIn(r.starts, 1000) <= 20, `${mostStartsIn(r.starts, 1000)} starts in one second`);
    for (let i = 1; i < r.starts.length; i++) {
      const gap = (r.starts[i] ?? 0) - (r.starts[i - 1] ?? 0);
      assert.ok(gap >= 50, `gap ${gap} ms before start ${i}`);
    }
    // The scheduler sleeps between slots: a handful of clock reads per device, not one per ms, and
    // the event loop is mostly idle while it waits.
    assert.ok(clockReads < 60 * 10, `${clockReads} clock reads`);
    assert.ok(busy < 0.5, `event loop utilisation ${busy.toFixed(2)}`);
  });

  it("Rate 0 (the default) is unlimited: the window starts at once", async () => {
    const devices: Record<string, { script: Script }> = {};
    for (let i = 0; i < 60; i++) devices[`d${i}`] = { script: async () => (await wait(20), replied()) };
    const r = rig(devices);
    const t0 = Date.now();
    run(r, Object.keys(devices), { Rate: "0", Concurrency: "60" });
    await r.engine.idle();
    assert.equal(text(r, `${JOB}/Status`), "Completed");
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    assert.equal(r.maxInFlight.get("all"), 60, "all 60 in flight together");
  });

  it("Cancel while devices wait for a rate slot ends them 514 at once", async () => {
    const devices: Record<string, { script: Script }> = {};
    for (let i = 0; i < 10; i++) devices[`d${i}`] = { script: () => Promise.resolve(replied()) };
    const r = rig(devices);
    run(r, Object.keys(devices), { Rate: "1" });
    await wait(200); // one start at 0 ms; the next slot is at 1000 ms, 800 ms after the Cancel
    const t = Date.now();
    let next = 1;
    const statuses = r.tree.transaction(() =>
      executeCommands(
        [{ kind: "Exec", cmdId: "1", items: [{ target: { locUri: `${JOB}/FanOut/Cancel` } }] }],
        { tree: r.tree, serverId: SRV, encoding: "xml", msgId: "2", nextCmdId: () => String(next++) },
      ),
    );
    assert.equal(statuses[0]?.kind === "Status" ? statuses[0].data : "", "200");
    await r.engine.idle();
    assert.ok(Date.now() - t < 300, `the waiting devices ended ${Date.now() - t} ms after Cancel`);
    assert.equal(r.starts.length, 1);
    assert.equal(text(r, `${JOB}/Status`), "Cancelled");
    assert.equal(text(r, `${JOB}/Ext/Progress/Done`), "10");
    const last = decodeCommandFragment(text(r, `${JOB}/Results/10/DevResultXML`) ?? "", { allow: "replies" });
    assert.ok(last.ok && last.value[0]?.kind === "Status" && last.value[0].data === "514");
  });

  it("Cancel during a retry backoff, nothing in flight, ends the device 514 at once", async () => {
    const r = rig(
      { asleep: { script: () => Promise.resolve({ kind: "failed", status: 503, reason: "asleep" }) } },
      undefined,
      { retryBackoff: { initialMs: 5000, maxMs: 5000 } },
    );
    run(r, ["asleep"], { Retries: "3" });
    await wait(100);
    const t = Date.now();
    assert.equal(r.engine.cancel(JOB).status, 200);
    await r.engine.idle();
    assert.ok(Date.now() - t < 300, `ended ${Date.now() - t} ms after Cancel`);
    assert.equal(r.calls.get("asleep"), 1);
    assert.equal(text(r, `${JOB}/Status`), "Cancelled");
  });

  it("retries count against the rate, and the rate holds beside the window and a transport's limit", async () => {
    const devices: Record<string, { transport: TransportKind; script: Script }> = {};
    for (let i = 0; i < 6; i++) {
      devices[`d${i}`] = {
        transport: i % 2 === 0 ? "serial" : "mqtt",
        script: async (attempt) =>
          attempt === 0 ? { kind: "failed", status: 503, reason: "asleep" } : (await wait(30), replied()),
      };
    }
    const r = rig(devices, (t) => (t === "serial" ? 1 : 100));
    run(r, Object.keys(devices), { Rate: "10", Retries: "1", Concurrency: "2" });
    await r.engine.idle();
    assert.equal(text(r, `${JOB}/Status`), "Completed");
    assert.equal(r.starts.length, 12, "every device twice");
    for (let i = 1; i < r.starts.length; i++) {
      const gap = (r.starts[i] ?? 0) - (r.starts[i - 1] ?? 0);
      assert.ok(gap >= 100, `gap ${gap} ms before start ${i} (a retry is a start)`);
    }
    assert.ok((r.maxInFlight.get("all") ?? 0) <= 2);
    assert.equal(r.maxInFlight.get("serial"), 1);
  });

  it("readOptions: Rate 0..100000, anything else falls back to 0", () => {
    const r = rig({});
    const base = `${JOB}/Ext/Options`;
    const set = (value: string | undefined): number => {
      if (r.tree.read(`${base}/Rate`) !== undefined) r.tree.remove(`${base}/Rate`);
      if (value !== undefined) r.tree.write({ path: `${base}/Rate`, format: "int", value });
      return readOptions(r.tree, JOB).ratePerSecond;
    };
    assert.equal(DEFAULT_JOB_OPTIONS.ratePerSecond, 0);
    assert.equal(set(undefined), 0);
    assert.equal(set("20"), 20);
    assert.equal(set("100000"), 100_000);
    assert.equal(set("100001"), 0);
    assert.equal(set("-1"), 0);
    assert.equal(set("2.5"), 0);
  });
});

describe("FanoutEngine resultaggregation inline bound", () => {
  const big = (size: number): AdaptedOutcome => ({
    kind: "replied",
    results: [{ status: 200, items: [{ data: { kind: "text", text: "x".repeat(size) } }], inner: [] }],
  });

  async function aggregate(
    bound: FanoutEngineOptions["maxInlineResultBytes"],
    outcome: AdaptedOutcome = replied(),
  ): Promise<{ format: string | undefined; data: string; asked: string[] }> {
    const asked: string[] = [];
    const r = rig({ a: { script: () => Promise.resolve(outcome) } }, undefined, {
      ...(bound !== undefined && {
        maxInlineResultBytes:
          typeof bound === "function" ? (id: string) => (asked.push(id), bound(id)) : bound,
      }),
    });
    run(r, ["a"], { AlertType: "resultaggregation" });
    await r.engine.idle();
    const item = r.outbox.pending(SRV).find((a) => a.correlator === "c1")?.items[0];
    const data = item?.data?.kind === "text" ? item.data.text : "";
    return { format: item?.meta?.format, data, asked };
  }

  it("inline exactly up to the bound of the job's server, its URI one byte above", async () => {
    const inline = await aggregate(1 << 20);
    assert.equal(inline.format, "xml");
    const size = inlineDataBytes(inline.data);
    assert.ok(size > Buffer.byteLength(inline.data), "measured escaped, as it travels in XML");
    const at = await aggregate(() => size);
    assert.equal(at.format, "xml");
    assert.equal(at.data, inline.data);
    assert.deepEqual(at.asked, [SRV], "asked with the job's server id");
    const below = await aggregate(() => size - 1);
    assert.equal(below.format, "chr");
    assert.equal(below.data, `${JOB}/Results`);
  });

  it("the bound from the store: the server's stored MaxObjSize, and 8 KiB for a server never heard from", async () => {
    const size = inlineDataBytes((await aggregate(1 << 20)).data);
    const withStored = async (limits: ServerLimits | undefined): Promise<string | undefined> => {
      const late: { store?: ServerLimitsStore } = {};
      const r = rig({ a: { script: () => Promise.resolve(replied()) } }, undefined, {
        maxInlineResultBytes: (id) => late.store?.inlineResultBound(id),
      });
      late.store = new ServerLimitsStore(r.tree.store);
      if (limits !== undefined) late.store.record(SRV, limits);
      late.store.record("another-server", { maxObjSize: 1 });
      run(r, ["a"], { AlertType: "resultaggregation" });
      await r.engine.idle();
      return r.outbox.pending(SRV).find((x) => x.correlator === "c1")?.items[0]?.meta?.format;
    };
    assert.equal(await withStored({ maxObjSize: size, maxMsgSize: 65_536 }), "xml");
    assert.equal(await withStored({ maxObjSize: size - 1, maxMsgSize: 65_536 }), "chr");
    assert.equal(await withStored({ maxMsgSize: size + ALERT_MESSAGE_MARGIN }), "xml");
    assert.equal(await withStored({ maxMsgSize: size + ALERT_MESSAGE_MARGIN - 1 }), "chr");
    assert.equal(await withStored(undefined), "xml", "unknown: 8 KiB, and this aggregation is smaller");
  });

  it("a server the lookup knows nothing of gets 8 KiB", async () => {
    const small = await aggregate(() => undefined, big(1000));
    assert.equal(small.format, "xml");
    const large = await aggregate(() => undefined, big(9000));
    assert.equal(large.format, "chr");
    const defaulted = await aggregate(undefined, big(9000));
    assert.equal(defaulted.format, "chr", "no option: 8 KiB too");
  });

  it("a lookup that throws falls back to 8 KiB, and the job still ends with its alert", async () => {
    const r = await aggregate(() => {
      throw new Error("the store is gone");
    });
    assert.equal(r.format, "xml");
  });
});
