/**
 * The flow the gateway exists for (design.md section 1), end to end on loopback: the DM Server
 * simulator creates a group and a fan-out job through a real northbound session and Execs Start
 * with a Correlator (202); the engine runs the commands on HTTP devices (one silent, one with wrong
 * credentials); the completion alert goes out through the outbox in a client-initiated session with
 * the Correlator; the server then Gets the Results and finds exactly what each device answered.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
import { mirrorInventory } from "../../src/mo/gwmo-inventory.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import type { NewAlert } from "../../src/northbound/outbox.js";
import { HttpTransport } from "../../src/northbound/http-transport.js";
import { NorthboundService } from "../../src/northbound/service.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import { Southbound } from "../../src/southbound/southbound.js";
import { decodeCommandFragment, type Command, type StatusCommand } from "../../src/syncml/index.js";
import {
  NB_DEV_ID,
  NB_SERVER_ID,
  nbDeviceSettings,
  nbSessionAccount,
  openNorthboundGateway,
  type NorthboundGateway,
} from "../helpers/northbound.js";
import { waitFor } from "../helpers/wait.js";

const GW = "dmgw-gw1";
const JOB = "./GwMO/Fanout/job7";

const add = (cmdId: string, uri: string, format: string, text: string): Command => ({
  kind: "Add",
  cmdId,
  items: [{ target: { locUri: uri }, meta: { format }, data: { kind: "text", text } }],
});

describe("fan-out through the northbound path (GwMO 8.3 flow)", function () {
  this.timeout(60_000);
  let dir: string;
  let sim: DmServerSimulator;
  let gateway: NorthboundGateway | undefined;
  let service: NorthboundService | undefined;
  let south: Southbound | undefined;
  let engine: FanoutEngine | undefined;
  let fleet: HttpDeviceFleet | undefined;
  let transport: HttpTransport;
  let stopMirror: (() => void) | undefined;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-fanout-e2e-"));
    sim = new DmServerSimulator();
    await sim.start();
    transport = new HttpTransport();
  });

  afterEach(async () => {
    await service?.stop();
    await engine?.stop();
    await fleet?.stop();
    stopMirror?.();
    await south?.stop();
    gateway?.close();
    transport.close();
    await sim.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("group, job, Exec Start (202), per-device results, the alert with the Correlator, then the server's Get", async () => {
    const url = sim.url ?? "";
    const late: { engine?: FanoutEngine; south?: Southbound } = {};
    const g = openNorthboundGateway(path.join(dir, "gw.db"), url, "md5", {
      plugins: gwmoPlugins({
        serverIds: [NB_SERVER_ID],
        deviceExists: (id) => late.south?.registry.get(id) !== undefined,
        control: () => late.engine,
      }),
    });
    gateway = g;
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const svc = new NorthboundService({
      tree: g.tree,
      outbox: g.outbox,
      devId: NB_DEV_ID,
      servers: [
        { account: nbSessionAccount(url, "md5"), encoding: "wbxml", transport, checkInIntervalMs: 0 },
      ],
      maxMsgSize: 16_384,
      timeoutMs: 5_000,
      maxMessages: 50,
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
    });
    service = svc;
    // Alerts (attach, completion) go to the outbox; the service hears of them once they committed.
    const outbox = {
      enqueue: (alert: NewAlert) => {
        const result = g.outbox.enqueue(alert);
        setImmediate(() => {
          svc.alertsQueued(alert.serverId);
        });
        return result;
      },
    };
    const s = new Southbound({ store: g.store, outbox, alertServers: () => [NB_SERVER_ID] });
    south = s;
    late.south = s;
    stopMirror = mirrorInventory(g.tree, s.registry);
    const driver = new HttpDriver(
      { host: "127.0.0.1", port: 0 },
      s.driverContext("http", new AbortController().signal),
    );
    s.addDriver(driver);
    await driver.start();
    const e = new FanoutEngine({ tree: g.tree, outbox, devices: (id) => s.endDevice(id) });
    engine = e;
    late.engine = e;

    const ids = ["meter-1", "meter-2", "meter-3", "silent", "liar"];
    const creds = (id: string) => ({
      clientAuth: { scheme: "hmac" as const, name: id, secret: `dev-${id}` },
      serverAuth: { scheme: "hmac" as const, name: GW, secret: `gw-${id}` },
    });
    fleet = new HttpDeviceFleet({
      gatewayUrl: driver.url,
      devices: ids.map((id) => ({
        deviceId: id,
        serverId: GW,
        ...creds(id),
        ...(id === "silent" && { failure: "silent" as const }),
        ...(id === "liar" && { failure: "wrong-credentials" as const }),
      })),
    });
    await fleet.start();
    const f = fleet;
    for (const id of ids)
      s.provision({
        deviceId: id,
        address: f.address(id),
        account: { deviceId: id, serverId: GW, ...creds(id) },
      });
    svc.start();
    // The attach alerts go out first (one session, or a few).
    await waitFor("the attach alerts", () => sim.alerts().length >= ids.length);
    await svc.idle();

    // Session 2: the server sets up the job and starts it.
    const fanOutCommands =
      `<Get><CmdID>21</CmdID><Item><Target><LocURI>./DevDetail/FwV</LocURI></Target></Item></Get>` +
      `<Replace><CmdID>22</CmdID><Item><Target><LocURI>./Vendor/Setting2</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>5</Data></Item></Replace>`;
    sim.queue(NB_DEV_ID, [
      add("1", "./GwMO/Config/Groups/all/GroupID", "chr", "meters"),
      ...ids.map((id, i) => add(String(2 + i), `./GwMO/Config/Groups/all/Members/${i}/DeviceID`, "chr", id)),
      add("10", `${JOB}/FanOut/FanOutCommands`, "xml", fanOutCommands),
      add("11", `${JOB}/FanOut/TargetGroupRef`, "chr", "meters"),
      {
        kind: "Replace",
        cmdId: "12",
        items: [
          { target: { locUri: `${JOB}/Ext/Options/DeviceTimeout` }, data: { kind: "text", text: "1000" } },
        ],
      },
      {
        kind: "Exec",
        cmdId: "13",
        correlator: "job7-corr",
        items: [{ target: { locUri: `${JOB}/FanOut/Start` } }],
      },
    ]);
    svc.checkIn(NB_SERVER_ID);
    await svc.idle();
    const setup = sim.sessions(NB_DEV_ID).at(-1);
    assert.ok(setup !== undefined);
    assert.equal(setup.error, undefined, setup.error?.reason);
    assert.deepEqual(
      setup.commands.map((c) => c.status),
      [200, 200, 200, 200, 200, 200, 200, 200, 200, 202],
    );

    // The job runs after the session; its alert arrives in a session the gateway opens itself.
    await waitFor("the completion alert", () => sim.alerts().some((a) => a.alert.correlator === "job7-corr"));
    const alert = sim.alerts().find((a) => a.alert.correlator === "job7-corr")?.alert;
    const alertItem = alert?.items[0];
    assert.equal(alertItem?.type, "urn:oma:at:oma-gwmo:completionstatus:1.0");
    assert.equal(alertItem.source, JOB);
    assert.deepEqual(alertItem.data, { kind: "text", text: `${JOB}/Results` });
    await svc.idle();

    // Session 4: the server reads the results.
    const results: Command[] = [];
    for (let n = 1; n <= ids.length; n++) {
      results.push({
        kind: "Get",
        cmdId: String(n * 2),
        items: [{ target: { locUri: `${JOB}/Results/${n}/DeviceID` } }],
      });
      results.push({
        kind: "Get",
        cmdId: String(n * 2 + 1),
        items: [{ target: { locUri: `${JOB}/Results/${n}/DevResultXML` } }],
      });
    }
    sim.queue(NB_DEV_ID, [
      { kind: "Get", cmdId: "1", items: [{ target: { locUri: `${JOB}/Status` } }] },
      ...results,
    ]);
    svc.checkIn(NB_SERVER_ID);
    await svc.idle();
    const read = sim.sessions(NB_DEV_ID).at(-1);
    assert.ok(read !== undefined && read.error === undefined);
    const value = (i: number): string => {
      const d = read.commands[i]?.results[0]?.items[0]?.data;
      return d?.kind === "text" ? d.text : "";
    };
    const byDevice = new Map<string, string[]>();
    for (let n = 0; n < ids.length; n++) {
      const decoded = decodeCommandFragment(value(2 + n * 2), { allow: "replies" });
      assert.ok(decoded.ok, `the result of ${value(1 + n * 2)} decodes`);
      byDevice.set(
        value(1 + n * 2),
        decoded.value
          .filter((c): c is StatusCommand => c.kind === "Status")
          .map((st) => `${st.cmdRef}:${st.data}`),
      );
    }
    assert.deepEqual(byDevice.get("meter-2"), ["21:200", "22:200"], JSON.stringify([...byDevice]));
    assert.equal(value(0), "PartiallyCompleted");
    assert.deepEqual(byDevice.get("silent"), ["21:504", "22:504"]);
    assert.deepEqual(byDevice.get("liar"), ["21:401", "22:401"]);
    assert.equal(byDevice.size, ids.length);
    assert.equal(f.device("meter-3").tree.read("./Vendor/Setting2")?.value, "5");
  });
});
