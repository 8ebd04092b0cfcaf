/**
 * The fan-out engine end to end on loopback: the GwMO MOs in a file-backed tree, a server's DM
 * commands run through the command executor (ACLs, Exec with its Correlator, 202), the engine over
 * the southbound side (proxy sessions, the http driver, simulated DM-client devices with their
 * failure mix), results and the completion alert in SQLite; then the journal's crash rules.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { executeCommands } from "../../src/dm/command-executor.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
import { mirrorInventory } from "../../src/mo/gwmo-inventory.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import { standardMoPlugins } from "../../src/mo/standard.js";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import type { DeviceFailure } from "../../src/sim/dm-device.js";
import { Southbound } from "../../src/southbound/southbound.js";
import { decodeCommandFragment, type Command, type StatusCommand } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import { testIdentity } from "../helpers/gateway.js";

const SRV = "dmsrv";
const GW = "dmgw-gw1";
const JOB = "./GwMO/Fanout/job1";
const COMMANDS = `<Get><CmdID>11</CmdID><Item><Target><LocURI>./DevInfo/Man</LocURI></Target></Item></Get>
<Replace><CmdID>12</CmdID><Item><Target><LocURI>./Vendor/Setting1</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>9</Data></Item></Replace>
<Exec><CmdID>13</CmdID><Item><Target><LocURI>./Vendor/Reboot</LocURI></Target></Item></Exec>`;

interface Rig {
  readonly store: Store;
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
  readonly south: Southbound;
  readonly engine: FanoutEngine;
  readonly driver: HttpDriver;
  close(): Promise<void>;
}

/** Runs DM commands as the server would send them in one message (one transaction). */
function serverRuns(tree: DmTree, commands: readonly Command[]): StatusCommand[] {
  let next = 1;
  const replies = tree.transaction(() =>
    executeCommands(commands, {
      tree,
      serverId: SRV,
      encoding: "xml",
      msgId: "2",
      nextCmdId: () => String(next++),
    }),
  );
  return replies.filter((r): r is StatusCommand => r.kind === "Status");
}

const add = (cmdId: string, uri: string, format: string, text?: string): Command => ({
  kind: "Add",
  cmdId,
  items: [
    {
      target: { locUri: uri },
      meta: { format },
      ...(text !== undefined && { data: { kind: "text" as const, text } }),
    },
  ],
});

describe("fan-out engine (GwMO 8.3)", function () {
  this.timeout(30_000);
  let dir: string;
  let rig: Rig | undefined;
  let fleet: HttpDeviceFleet | undefined;

  async function open(): Promise<Rig> {
    const store = Store.open(path.join(dir, "gw.db"));
    // Bound once built: the MOs are made before the engine and the registry they consult.
    const late: { engine?: FanoutEngine; south?: Southbound } = {};
    const tree = new DmTree(store, {
      plugins: [
        ...standardMoPlugins(testIdentity("IMEI:1"), []),
        ...gwmoPlugins({
          serverIds: [SRV],
          deviceExists: (id) => late.south?.registry.get(id) !== undefined,
          control: () => late.engine,
        }),
      ],
    });
    tree.seed();
    const outbox = new AlertOutbox(store, { maxCount: 1000, maxBytes: 1 << 22 });
    const south = new Southbound({ store, outbox, alertServers: () => [SRV] });
    late.south = south;
    const stopMirror = mirrorInventory(tree, south.registry);
    const driver = new HttpDriver(
      { host: "127.0.0.1", port: 0 },
      south.driverContext("http", new AbortController().signal),
    );
    south.addDriver(driver);
    await driver.start();
    const engine = new FanoutEngine({
      tree,
      outbox,
      devices: (id) => south.endDevice(id),
      retryBackoff: { initialMs: 50, maxMs: 100 },
    });
    late.engine = engine;
    return {
      store,
      tree,
      outbox,
      south,
      engine,
      driver,
      close: async () => {
        await engine.stop();
        stopMirror();
        await south.stop();
        store.close();
      },
    };
  }

  async function devices(
    r: Rig,
    specs: readonly { id: string; failure?: DeviceFailure }[],
  ): Promise<HttpDeviceFleet> {
    const creds = (id: string) => ({
      clientAuth: { scheme: "md5" as const, name: id, secret: `dev-${id}` },
      serverAuth: { scheme: "md5" as const, name: GW, secret: `gw-${id}` },
    });
    fleet = new HttpDeviceFleet({
      gatewayUrl: r.driver.url,
      devices: specs.map((s) => ({
        deviceId: s.id,
        serverId: GW,
        ...creds(s.id),
        ...(s.failure !== undefined && { failure: s.failure }),
      })),
    });
    await fleet.start();
    for (const s of specs) {
      r.south.provision({
        deviceId: s.id,
        address: fleet.address(s.id),
        account: { deviceId: s.id, serverId: GW, ...creds(s.id) },
      });
    }
    return fleet;
  }

  function makeGroup(r: Rig, members: readonly string[]): StatusCommand[] {
    return serverRuns(r.tree, [
      add("1", "./GwMO/Config/Groups/g1/GroupID", "chr", "all"),
      ...members.map((m, i) =>
        add(String(i + 2), `./GwMO/Config/Groups/g1/Members/m${i}/DeviceID`, "chr", m),
      ),
    ]);
  }

  function startJob(r: Rig, commands = COMMANDS, ref = "all", extra: Command[] = []): StatusCommand[] {
    return serverRuns(r.tree, [
      add("1", `${JOB}/FanOut/FanOutCommands`, "xml", commands),
      add("2", `${JOB}/FanOut/TargetGroupRef`, "chr", ref),
      ...extra,
      {
        kind: "Exec",
        cmdId: "9",
        correlator: "corr-42",
        items: [{ target: { locUri: `${JOB}/FanOut/Start` } }],
      },
    ]);
  }

  const text = (r: Rig, p: string): string | undefined => {
    const v = r.tree.read(p)?.value;
    return v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v);
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-fanout-"));
  });

  afterEach(async () => {
    await fleet?.stop();
    fleet = undefined;
    await rig?.close();
    rig = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("runs the commands on every member, stores each result with CmdRefs of FanOutCommands, and alerts once", async () => {
    rig = await open();
    const r = rig;
    await devices(r, [
      { id: "ok-1" },
      { id: "ok-2" },
      { id: "silent", failure: "silent" },
      { id: "liar", failure: "wrong-credentials" },
    ]);
    assert.ok(makeGroup(r, ["ok-1", "ok-2", "silent", "liar"]).every((s) => s.data === "200"));
    // Shorter per-device timeout so the silent device settles quickly.
    const statuses = startJob(r, COMMANDS, "all", [
      {
        kind: "Replace",
        cmdId: "3",
        items: [
          { target: { locUri: `${JOB}/Ext/Options/DeviceTimeout` }, data: { kind: "text", text: "800" } },
        ],
      },
      {
        kind: "Replace",
        cmdId: "4",
        items: [{ target: { locUri: `${JOB}/Ext/Options/Retries` }, data: { kind: "text", text: "0" } }],
      },
    ]);
    assert.deepEqual(
      statuses.map((s) => [s.cmd, s.data]),
      [
        ["Add", "200"],
        ["Add", "200"],
        ["Replace", "200"],
        ["Replace", "200"],
        ["Exec", "202"],
      ],
    );
    assert.equal(text(r, `${JOB}/Status`), "InProgress");
    await r.engine.idle();
    assert.equal(text(r, `${JOB}/Status`), "PartiallyCompleted");
    assert.deepEqual(
      ["Total", "Done", "Succeeded", "Failed"].map((n) => text(r, `${JOB}/Ext/Progress/${n}`)),
      ["4", "4", "2", "2"],
    );
    const byDevice = new Map<string, StatusCommand[]>();
    for (const n of r.tree.childNames(`${JOB}/Results`) ?? []) {
      const id = text(r, `${JOB}/Results/${n}/DeviceID`) ?? "";
      const decoded = decodeCommandFragment(text(r, `${JOB}/Results/${n}/DevResultXML`) ?? "", {
        allow: "replies",
      });
      assert.ok(decoded.ok, `the result of ${id} decodes`);
      byDevice.set(
        id,
        decoded.value.filter((c): c is StatusCommand => c.kind === "Status"),
      );
    }
    assert.equal(byDevice.size, 4, "exactly one result per device");
    assert.deepEqual(
      byDevice.get("ok-1")?.map((s) => [s.cmdRef, s.cmd, s.data]),
      [
        ["11", "Get", "200"],
        ["12", "Replace", "200"],
        ["13", "Exec", "200"],
      ],
    );
    assert.deepEqual(
      byDevice.get("silent")?.map((s) => s.data),
      ["504", "504", "504"],
    );
    assert.deepEqual(
      byDevice.get("liar")?.map((s) => s.data),
      ["401", "401", "401"],
    );
    assert.equal(fleet?.device("ok-2").tree.read("./Vendor/Setting1")?.value, "9");
    // The server reads the whole Results subtree in one Get.
    assert.equal(r.tree.get(SRV, `${JOB}/Results?list=StructData`).kind !== "error", true);
    // One completion alert with the Correlator; the attach alerts of the four devices are there too.
    const alerts = r.outbox.pending(SRV).filter((a) => a.correlator === "corr-42");
    assert.equal(alerts.length, 1);
    const item = alerts[0]?.items[0];
    assert.equal(item?.meta?.type, "urn:oma:at:oma-gwmo:completionstatus:1.0");
    assert.equal(item.meta.mark, "warning");
    assert.equal(item.source?.locUri, JOB);
    assert.deepEqual(item.data, { kind: "text", text: `${JOB}/Results` });
  });

  it("validation at Exec: no group 404, commands that do not parse 400, an empty group completes at once", async () => {
    rig = await open();
    const r = rig;
    assert.equal(startJob(r, COMMANDS, "nope").at(-1)?.data, "404");
    serverRuns(r.tree, [{ kind: "Delete", cmdId: "1", items: [{ target: { locUri: JOB } }] }]);
    makeGroup(r, []);
    assert.equal(startJob(r, "<Status><CmdID>1</CmdID></Status>", "all").at(-1)?.data, "400");
    serverRuns(r.tree, [{ kind: "Delete", cmdId: "1", items: [{ target: { locUri: JOB } }] }]);
    assert.equal(startJob(r, COMMANDS, "./GwMO/Config/Groups/g1").at(-1)?.data, "202");
    assert.equal(text(r, `${JOB}/Status`), "Completed");
    assert.equal(r.outbox.pending(SRV).filter((a) => a.correlator === "corr-42").length, 1);
  });

  it("a group member must be a device of the inventory (404)", async () => {
    rig = await open();
    const statuses = makeGroup(rig, ["ghost"]);
    assert.deepEqual(
      statuses.map((s) => s.data),
      ["200", "404"],
    );
  });

  it("Cancel: devices not done end 514 and the job is Cancelled", async () => {
    rig = await open();
    const r = rig;
    await devices(r, [
      { id: "s1", failure: "silent" },
      { id: "s2", failure: "silent" },
    ]);
    makeGroup(r, ["s1", "s2"]);
    startJob(r);
    await new Promise((res) => setTimeout(res, 100));
    const cancel = serverRuns(r.tree, [
      { kind: "Exec", cmdId: "1", items: [{ target: { locUri: `${JOB}/FanOut/Cancel` } }] },
    ]);
    assert.equal(cancel[0]?.data, "200");
    await r.engine.idle();
    assert.equal(text(r, `${JOB}/Status`), "Cancelled");
    assert.equal(text(r, `${JOB}/Ext/Progress/Done`), "2");
  });

  it("resume after a crash: dispatched devices rerun when idempotent, else 500 interrupted", async () => {
    rig = await open();
    const r = rig;
    const f = await devices(r, [{ id: "a" }, { id: "b" }]);
    makeGroup(r, ["a", "b"]);
    // A job journalled as running with both devices dispatched and no result, as a power cut leaves it.
    const journal = (commands: string): void => {
      const db = r.store.db;
      db.prepare("DELETE FROM fanout_device").run();
      db.prepare(
        `INSERT OR REPLACE INTO fanout_job (job_path, server_id, correlator, commands, options, state, status, created)
         VALUES (?, ?, 'c-resume', ?, '{}', 'running', 'InProgress', 0)`,
      ).run(JOB, SRV, Buffer.from(commands));
      db.prepare(
        `INSERT INTO fanout_device (job_path, device_id, n, state, attempts) VALUES (?, 'a', 1, 'dispatched', 1), (?, 'b', 2, 'done', 1)`,
      ).run(JOB, JOB);
      db.prepare(`UPDATE fanout_device SET status = 200 WHERE device_id = 'b'`).run();
      r.tree.write({ path: `${JOB}/Results`, format: "node" });
    };
    journal(COMMANDS); // has an Exec: not idempotent
    r.engine.resume();
    await r.engine.idle();
    const result = decodeCommandFragment(text(r, `${JOB}/Results/1/DevResultXML`) ?? "", {
      allow: "replies",
    });
    assert.ok(result.ok);
    assert.deepEqual(
      result.value.filter((c): c is StatusCommand => c.kind === "Status").map((s) => s.data),
      ["500", "500", "500"],
    );
    assert.equal(f.reports("a").length, 0, "the device was not run again");
    assert.equal(r.outbox.pending(SRV).filter((a) => a.correlator === "c-resume").length, 1);

    r.tree.remove(`${JOB}/Results`);
    journal(COMMANDS.split("\n").slice(0, 2).join("\n")); // Get + Replace: idempotent
    r.engine.resume();
    await r.engine.idle();
    await f.idle();
    assert.equal(f.reports("a").length, 1, "the device ran again");
    const again = decodeCommandFragment(text(r, `${JOB}/Results/1/DevResultXML`) ?? "", { allow: "replies" });
    assert.ok(again.ok);
    assert.deepEqual(
      again.value.filter((c): c is StatusCommand => c.kind === "Status").map((s) => s.data),
      ["200", "200"],
    );
    assert.equal(
      r.outbox.pending(SRV).filter((a) => a.correlator === "c-resume").length,
      2,
      "one more job, one more alert",
    );
  });
});
