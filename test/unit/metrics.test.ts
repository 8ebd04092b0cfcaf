import assert from "node:assert/strict";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import { DMGW_MOID } from "../../src/mo/dmgw.js";
import { escapeLabel, isLoopbackHost, renderMetrics, startMetricsServer } from "../../src/runtime/metrics.js";
import { snapshot } from "../../src/runtime/observe.js";
import type { HealthReport } from "../../src/runtime/parts.js";
import { NB_SERVER_ID } from "../helpers/northbound.js";
import { openTestGateway, type TestGateway } from "../helpers/gateway-parts.js";

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * A strict reader of the text exposition format 0.0.4: every sample belongs to a family declared by
 * `# HELP` and `# TYPE` before it, names and labels are well formed, values parse, no series twice.
 */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  assert.ok(text.endsWith("\n"), "the text ends with a line feed");
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP ([^ ]+) (.*)$/.exec(line);
    if (help !== null) {
      const name = help[1] ?? "";
      assert.match(name, NAME);
      assert.ok(!helps.has(name), `HELP of ${name} twice`);
      helps.add(name);
      continue;
    }
    const type = /^# TYPE ([^ ]+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      const name = type[1] ?? "";
      assert.ok(helps.has(name), `TYPE of ${name} before its HELP`);
      assert.ok(!types.has(name), `TYPE of ${name} twice`);
      types.set(name, type[2] ?? "");
      continue;
    }
    assert.ok(!line.startsWith("#"), `an unknown comment line: ${line}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `not a sample line: ${JSON.stringify(line)}`);
    const name = m[1] ?? "";
    assert.ok(types.has(name), `${name} has no TYPE before its samples`);
    const labels: Record<string, string> = {};
    const labelText = m[2] ?? "";
    const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)/y;
    let at = 0;
    while (at < labelText.length) {
      LABEL.lastIndex = at;
      const l = LABEL.exec(labelText);
      assert.ok(l !== null, `bad labels in ${line}`);
      labels[l[1] ?? ""] = (l[2] ?? "").replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
      at = LABEL.lastIndex;
    }
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value) || m[3] === "NaN", `bad value in ${line}`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!seen.has(key), `series twice: ${line}`);
    seen.add(key);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

function value(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find(
    (s) =>
      s.name === name &&
      Object.keys(labels).length === Object.keys(s.labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

describe("metrics (Prometheus text)", () => {
  let gw: TestGateway;
  let health: HealthReport;

  beforeEach(async () => {
    health = { ok: true, eventLoopLagMs: 12, storeWritable: true, problems: [] };
    gw = await openTestGateway({ file: ":memory:", health: () => health, startedAtMs: Date.now() - 65_000 });
  });
  afterEach(async () => {
    await gw.stop();
  });

  const seen = (id: string, transport: "http" | "mqtt" | "coap"): void => {
    gw.parts.south.registry.seen({ deviceId: id, transport, mode: "proxy", address: `${transport}:${id}` });
  };

  it("is valid exposition text whose values follow the parts", () => {
    seen("h1", "http");
    seen("h2", "http");
    seen("h3", "http");
    seen("m1", "mqtt");
    gw.parts.south.registry.unreachable("h2", "test");
    gw.parts.south.registry.detach("h3", "test");
    health = { ok: false, eventLoopLagMs: 250, storeWritable: false, problems: ["lag", "store"] };

    const { types, samples } = parseExposition(renderMetrics(snapshot(gw.parts)));
    assert.equal(value(samples, "dmgw_devices", { transport: "http", status: "attached" }), 1);
    assert.equal(value(samples, "dmgw_devices", { transport: "http", status: "unreachable" }), 1);
    assert.equal(value(samples, "dmgw_devices", { transport: "http", status: "detached" }), 1);
    assert.equal(value(samples, "dmgw_devices", { transport: "mqtt", status: "attached" }), 1);
    assert.equal(value(samples, "dmgw_devices", { transport: "ble", status: "attached" }), 0);
    // Four attaches and one detach, each an alert for the one server.
    assert.equal(gw.parts.outbox.stats().count, 5);
    assert.equal(value(samples, "dmgw_outbox_alerts"), 5);
    assert.equal(value(samples, "dmgw_health_ok"), 0);
    assert.equal(value(samples, "dmgw_store_writable"), 0);
    assert.equal(value(samples, "dmgw_event_loop_lag_seconds"), 0.25);
    assert.equal(value(samples, "dmgw_northbound_sessions_total", { server: NB_SERVER_ID }), 0);
    assert.equal(value(samples, "dmgw_codec_errors_total", { side: "northbound" }), 0);
    assert.equal(value(samples, "dmgw_codec_errors_total", { side: "southbound" }), 0);
    assert.ok((value(samples, "dmgw_uptime_seconds") ?? 0) >= 65);
    assert.ok((value(samples, "dmgw_process_resident_memory_bytes") ?? 0) > 1_000_000);
    assert.equal(types.get("dmgw_northbound_sessions_total"), "counter");
    assert.equal(types.get("dmgw_devices"), "gauge");
    for (const [name, type] of types) if (type === "counter") assert.match(name, /_total$/);
  });

  it("counts a running job's devices by state, and forgets the job once it finished", () => {
    const db = gw.parts.store.db;
    db.prepare(
      `INSERT INTO fanout_job (job_path, server_id, commands, options, state, status, created) VALUES (?, ?, ?, '{}', 'running', 'InProgress', ?)`,
    ).run("./GwMO/Fanout/j1", NB_SERVER_ID, Buffer.from("<Get/>"), Date.now());
    const put = db.prepare(
      `INSERT INTO fanout_device (job_path, device_id, n, state, status) VALUES (?, ?, ?, ?, ?)`,
    );
    put.run("./GwMO/Fanout/j1", "a", 1, "pending", null);
    put.run("./GwMO/Fanout/j1", "b", 2, "dispatched", null);
    put.run("./GwMO/Fanout/j1", "c", 3, "done", 200);
    put.run("./GwMO/Fanout/j1", "d", 4, "done", 504);
    put.run("./GwMO/Fanout/j1", "e", 5, "done", 200);
    let { samples } = parseExposition(renderMetrics(snapshot(gw.parts)));
    const job = "./GwMO/Fanout/j1";
    assert.equal(value(samples, "dmgw_fanout_jobs_running"), 1);
    assert.equal(value(samples, "dmgw_fanout_devices", { job, state: "pending" }), 1);
    assert.equal(value(samples, "dmgw_fanout_devices", { job, state: "dispatched" }), 1);
    assert.equal(value(samples, "dmgw_fanout_devices", { job, state: "succeeded" }), 2);
    assert.equal(value(samples, "dmgw_fanout_devices", { job, state: "failed" }), 1);
    db.prepare(`UPDATE fanout_job SET state = 'finished' WHERE job_path = ?`).run(job);
    ({ samples } = parseExposition(renderMetrics(snapshot(gw.parts))));
    assert.equal(value(samples, "dmgw_fanout_jobs_running"), 0);
    assert.equal(value(samples, "dmgw_fanout_devices", { job, state: "pending" }), undefined);
  });

  it("escapes label values (backslash, quote, line feed)", () => {
    assert.equal(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  });

  it("refuses a host that is not loopback before listening", async () => {
    for (const host of ["0.0.0.0", "::", "192.168.1.10", "example.com"]) {
      assert.equal(isLoopbackHost(host), false, host);
      await assert.rejects(startMetricsServer({ host, port: 0, parts: gw.parts }), (e: unknown) =>
        isGatewayError(e, ErrorCode.Metrics_NotLoopback),
      );
    }
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
      assert.ok(isLoopbackHost(host), host);
  });
});

describe("./DMGW MO", () => {
  let gw: TestGateway;
  let health: HealthReport;

  beforeEach(async () => {
    health = { ok: true, eventLoopLagMs: 7.4, storeWritable: true, problems: [] };
    gw = await openTestGateway({ file: ":memory:", health: () => health, startedAtMs: Date.now() - 10_000 });
  });
  afterEach(async () => {
    await gw.stop();
  });

  const get = (uri: string): string | undefined => {
    const r = gw.parts.tree.get(NB_SERVER_ID, uri);
    assert.equal(r.kind, "node", `${uri}: ${JSON.stringify(r)}`);
    const v = r.node.value;
    return typeof v === "string" ? v : undefined;
  };

  it("carries its MOID and computes its leaves on each Get", () => {
    assert.deepEqual(gw.parts.tree.findByMoid(DMGW_MOID), ["./DMGW"]);
    assert.equal(get("./DMGW/Health/Ok"), "true");
    assert.equal(get("./DMGW/Health/EventLoopLagMs"), "7");
    assert.equal(get("./DMGW/Devices/coap/Attached"), "0");
    gw.parts.south.registry.seen({ deviceId: "c1", transport: "coap", mode: "adaptation", address: "c1" });
    gw.parts.south.registry.seen({ deviceId: "c2", transport: "coap", mode: "adaptation", address: "c2" });
    gw.parts.south.registry.unreachable("c2", "test");
    health = { ok: false, eventLoopLagMs: 1500, storeWritable: false, problems: ["lag"] };
    assert.equal(get("./DMGW/Devices/coap/Attached"), "1");
    assert.equal(get("./DMGW/Devices/coap/Unreachable"), "1");
    assert.equal(get("./DMGW/Health/Ok"), "false");
    assert.equal(get("./DMGW/Health/StoreWritable"), "false");
    assert.equal(get("./DMGW/Outbox/Depth"), String(gw.parts.outbox.stats().count));
    assert.ok(Number(get("./DMGW/Uptime")) >= 10);
    assert.ok(Number(get("./DMGW/Memory/RssKB")) > 1000);
    assert.equal(get("./DMGW/Sessions"), "0");
    assert.equal(get("./DMGW/CodecErrors"), "0");
  });

  it("is read-only: Replace, Add and Delete are refused", () => {
    assert.equal(gw.parts.tree.replace(NB_SERVER_ID, "./DMGW/Uptime", { value: "1" }).status, 405);
    assert.equal(gw.parts.tree.add(NB_SERVER_ID, "./DMGW/Extra", { value: "1" }).status, 405);
    assert.equal(gw.parts.tree.delete(NB_SERVER_ID, "./DMGW/Health").status, 405);
  });

  it("serves its values in a ?list=StructData exchange too", () => {
    const r = gw.parts.tree.get(NB_SERVER_ID, "./DMGW/Health?list=StructData");
    assert.equal(r.kind, "list");
    assert.equal(r.nodes.find((n) => n.path === "./DMGW/Health/Ok")?.value, "true");
  });
});
