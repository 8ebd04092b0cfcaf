/**
 * The coap adaptation driver against the LwM2M client simulator on loopback: registration and
 * DevInfo, Get/Replace/Exec/Add/Delete through `execute`, block-wise both ways, Observe, de-register
 * and lifetime expiry.
 */
import assert from "node:assert/strict";
import { CoapDriver } from "../../drivers/coap/driver.js";
import { Lwm2mClientSim, TEST_OBJECT } from "../../drivers/coap/sim.js";
import type { DeviceAddress, DriverContext } from "../../drivers/driver.js";
import type { GatewayError } from "../../src/core/errors.js";
import { SILENT_LOGGER } from "../../src/core/log.js";
import type { Command } from "../../src/syncml/index.js";

interface Seen {
  readonly device: DeviceAddress;
  readonly info: Readonly<Record<string, string>> | undefined;
}

function context(): {
  ctx: DriverContext;
  seen: Seen[];
  lost: { device: DeviceAddress; cause: GatewayError }[];
} {
  const seen: Seen[] = [];
  const lost: { device: DeviceAddress; cause: GatewayError }[] = [];
  return {
    seen,
    lost,
    ctx: {
      log: SILENT_LOGGER,
      signal: new AbortController().signal,
      onState: () => undefined,
      onDeviceSeen: (device, info) => {
        seen.push({ device, info });
      },
      onDeviceLost: (device, cause) => {
        lost.push({ device, cause });
      },
    },
  };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const get = (uri: string, cmdId = "1"): Command => ({
  kind: "Get",
  cmdId,
  items: [{ target: { locUri: uri } }],
});

describe("CoapDriver", function () {
  this.timeout(20_000);
  let driver: CoapDriver;
  let c: ReturnType<typeof context>;
  const sims: Lwm2mClientSim[] = [];
  const dev = (ep: string): DeviceAddress => ({ transport: "coap", address: ep });

  beforeEach(async () => {
    c = context();
    driver = new CoapDriver({ host: "127.0.0.1", port: 0, ackTimeoutMs: 200, maxRetransmit: 2 }, c.ctx);
    await driver.start();
  });

  afterEach(async () => {
    for (const s of sims.splice(0)) await s.stop();
    await driver.stop();
  });

  async function client(
    ep: string,
    extra: Partial<ConstructorParameters<typeof Lwm2mClientSim>[0]> = {},
  ): Promise<Lwm2mClientSim> {
    const sim = await Lwm2mClientSim.start({
      endpoint: ep,
      server: { address: "127.0.0.1", port: driver.port },
      ...extra,
    });
    sims.push(sim);
    return sim;
  }

  it("a registration attaches the device with its DevInfo read from /3/0", async () => {
    await client("dev-1", { manufacturer: "Acme", model: "M1", firmware: "1.2.3" });
    await waitFor("onDeviceSeen", () => c.seen.some((s) => s.info !== undefined));
    const s = c.seen.find((x) => x.info !== undefined);
    assert.deepEqual(s?.device, dev("dev-1"));
    assert.deepEqual(s.info, { Man: "Acme", Mod: "M1", DevId: "SN-dev-1", FwV: "1.2.3" });
    assert.equal(driver.registration("dev-1")?.binding, "U");
    assert.deepEqual(driver.registration("dev-1")?.objects, [
      [1, 0],
      [3, 0],
      [5, 0],
      [TEST_OBJECT, 0],
    ]);
  });

  it("Get, Replace and Exec map onto Read, Write and Execute", async () => {
    const sim = await client("dev-2");
    const outcome = await driver.execute(
      dev("dev-2"),
      [
        get("./DevInfo/FwV", "1"),
        get("./3/0/9", "2"),
        {
          kind: "Replace",
          cmdId: "3",
          items: [{ target: { locUri: "./3/0/14" }, data: { kind: "text", text: "+01:00" } }],
        },
        { kind: "Exec", cmdId: "4", items: [{ target: { locUri: "./3/0/4" } }] },
        get("./3/0", "5"),
      ],
      { timeoutMs: 5000 },
    );
    assert.equal(outcome.kind, "replied", JSON.stringify(outcome));
    assert.deepEqual(
      outcome.results.map((r) => r.status),
      [200, 200, 200, 200, 200],
    );
    assert.deepEqual(outcome.results[0]?.items[0], {
      source: { locUri: "./DevInfo/FwV" },
      meta: { format: "chr" },
      data: { kind: "text", text: "1.0" },
    });
    assert.deepEqual(outcome.results[1]?.items[0]?.data, { kind: "text", text: "100" });
    assert.equal(outcome.results[1].items[0].meta?.format, "int");
    assert.equal(sim.get("/3/0/14"), "+01:00");
    assert.equal(sim.counters.reboots, 1);
    const children = outcome.results[4]?.items[0]?.data;
    assert.ok(children?.kind === "text" && children.text.split("/").includes("14"), JSON.stringify(children));
  });

  it("CoAP codes become DM statuses; unmapped URIs 404; Atomic 406; Sequence in order", async () => {
    await client("dev-3");
    const outcome = await driver.execute(
      dev("dev-3"),
      [
        get("./3/0/999", "1"), // 4.04
        {
          kind: "Replace",
          cmdId: "2",
          items: [{ target: { locUri: "./3/0/0" }, data: { kind: "text", text: "x" } }],
        }, // 4.05
        get("./0/0/0", "3"), // 4.01 -> 425
        get("./Vendor/Setting1", "4"),
        { kind: "Atomic", cmdId: "5", commands: [get("./3/0/0", "6")] },
        { kind: "Sequence", cmdId: "7", commands: [get("./DevInfo/Man", "8"), get("./DevInfo/Mod", "9")] },
        get("./5/0/0", "10"), // write-only: 4.05
      ],
      { timeoutMs: 5000 },
    );
    assert.ok(outcome.kind === "replied", JSON.stringify(outcome));
    assert.deepEqual(
      outcome.results.map((r) => r.status),
      [404, 405, 425, 404, 406, 200, 405],
    );
    assert.deepEqual(
      outcome.results[5]?.inner.map((r) => r.items[0]?.data),
      [
        { kind: "text", text: "SimCo" },
        { kind: "text", text: "LwM2M-Sim" },
      ],
    );
  });

  it("Add and Delete map onto Create and Delete", async () => {
    const sim = await client("dev-4");
    const outcome = await driver.execute(
      dev("dev-4"),
      [
        {
          kind: "Add",
          cmdId: "1",
          items: [{ target: { locUri: "./5/1/1" }, data: { kind: "text", text: "http://fw/1" } }],
        },
        get("./5/1/1", "2"),
        { kind: "Delete", cmdId: "3", items: [{ target: { locUri: "./5/1" } }] },
        get("./5/1/1", "4"),
      ],
      { timeoutMs: 5000 },
    );
    assert.ok(outcome.kind === "replied", JSON.stringify(outcome));
    assert.deepEqual(
      outcome.results.map((r) => r.status),
      [200, 200, 200, 404],
    );
    assert.deepEqual(outcome.results[1]?.items[0]?.data, { kind: "text", text: "http://fw/1" });
    assert.equal(sim.counters.creates, 1);
    assert.equal(sim.counters.deletes, 1);
  });

  it("block-wise both ways: a 10 KB opaque resource written and read back", async () => {
    const sim = await client("dev-5");
    const blob = new Uint8Array(10 * 1024).map((_, i) => (i * 7) & 0xff);
    const outcome = await driver.execute(
      dev("dev-5"),
      [
        {
          kind: "Replace",
          cmdId: "1",
          items: [
            {
              target: { locUri: `./${TEST_OBJECT}/0/0` },
              meta: { format: "bin" },
              data: { kind: "opaque", bytes: blob },
            },
          ],
        },
        get(`./${TEST_OBJECT}/0/0`, "2"),
      ],
      { timeoutMs: 5000 },
    );
    assert.ok(outcome.kind === "replied", JSON.stringify(outcome).slice(0, 300));
    assert.deepEqual(
      outcome.results.map((r) => r.status),
      [200, 200],
    );
    assert.deepEqual(sim.get(`/${TEST_OBJECT}/0/0`), blob);
    const data = outcome.results[1]?.items[0]?.data;
    assert.ok(data?.kind === "opaque");
    assert.deepEqual(data.bytes, blob);
  });

  it("Observe keeps DevInfo fresh: a firmware update re-reports FwV", async () => {
    await client("dev-6");
    await waitFor("DevInfo", () => c.seen.some((s) => s.info?.["FwV"] === "1.0"));
    const outcome = await driver.execute(
      dev("dev-6"),
      [
        {
          kind: "Replace",
          cmdId: "1",
          items: [
            {
              target: { locUri: "./5/0/0" },
              meta: { format: "bin" },
              data: { kind: "opaque", bytes: new TextEncoder().encode("3.1") },
            },
          ],
        },
        { kind: "Exec", cmdId: "2", items: [{ target: { locUri: "./5/0/2" } }] },
      ],
      { timeoutMs: 5000 },
    );
    assert.ok(
      outcome.kind === "replied" && outcome.results.every((r) => r.status === 200),
      JSON.stringify(outcome),
    );
    await waitFor("the notification", () => c.seen.some((s) => s.info?.["FwV"] === "3.1"));
  });

  it("Discover lists the links of an instance", async () => {
    await client("dev-d");
    const links = await driver.discover(dev("dev-d"), [3, 0], { timeoutMs: 3000 });
    assert.ok(
      links?.some((l) => l.uri === "/3/0/3"),
      JSON.stringify(links),
    );
  });

  it("de-register and lifetime expiry detach the device; an unknown endpoint is 503", async () => {
    const a = await client("dev-7");
    await client("dev-8", { lifetimeS: 1 });
    assert.equal(await a.deregister(), "2.02");
    await waitFor("dev-7 lost", () => c.lost.some((l) => l.device.address === "dev-7"));
    await waitFor("dev-8 expired", () => c.lost.some((l) => l.device.address === "dev-8"), 3000);
    assert.match(c.lost.find((l) => l.device.address === "dev-8")?.cause.message ?? "", /lifetime expired/);
    const outcome = await driver.execute(dev("dev-7"), [get("./DevInfo/Man")], { timeoutMs: 1000 });
    assert.ok(outcome.kind === "failed" && outcome.status === 503);
  });

  it("an update renews the lifetime", async () => {
    const sim = await client("dev-9", { lifetimeS: 1 });
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(await sim.update({ lifetimeS: 30 }), "2.04");
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(c.lost.length, 0);
    assert.equal(driver.registration("dev-9")?.lifetimeS, 30);
  });

  it("a silent device: 504 by the deadline; a slow one answers", async () => {
    await client("silent-1", { failure: "silent" });
    await client("slow-1", { failure: "slow", slowMs: 100 });
    const started = Date.now();
    const silent = await driver.execute(dev("silent-1"), [get("./DevInfo/Man")], { timeoutMs: 600 });
    assert.ok(silent.kind === "failed" && silent.status === 504, JSON.stringify(silent));
    assert.ok(Date.now() - started < 700);
    const slow = await driver.execute(dev("slow-1"), [get("./DevInfo/Man")], { timeoutMs: 3000 });
    assert.ok(slow.kind === "replied" && slow.results[0]?.status === 200, JSON.stringify(slow));
  });
});
