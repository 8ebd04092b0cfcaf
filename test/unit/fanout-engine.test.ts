/**
 * The fan-out engine's scheduling rules with scripted devices (the EndDevice contract, no network):
 * the concurrency window and per-transport limits, retries of unreachable devices, the abort
 * threshold, the result formats and the resultaggregation alert.
 */
import assert from "node:assert/strict";
import type { AdaptedOutcome, TransportKind } from "../../drivers/driver.js";
import { executeCommands } from "../../src/dm/command-executor.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
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
  maxInFlight: Map<TransportKind | "all", number>;
}

function rig(
  devices: Record<string, { transport?: TransportKind; script: Script }>,
  limit?: (t: TransportKind) => number,
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
    maxInFlight: new Map(),
  };
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
