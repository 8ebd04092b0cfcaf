/**
 * Issue #7's proof, end to end on loopback: the DM Server simulator drives a fan-out through a real
 * northbound session to a group that mixes every transport (HTTP devices, MQTT devices through
 * Debian's mosquitto, serial devices on socat pty pairs, BLE proxy devices on the fake org.bluez on a
 * private dbus-daemon, CoAP LwM2M clients through the coap adaptation driver), with devices that
 * answer, stay silent (504), refuse (wrong credentials, 401) or answer garbage (502). The commands:
 * Get ./DevInfo/Man, Replace, Exec and an Atomic holding a Replace; a second job Replaces and Execs
 * LwM2M resources on the CoAP devices. The completion alert arrives with the Correlator, and the
 * server's Gets of Results/<n>/DevResultXML return exactly what the engine stored for each device.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BleDriver } from "../../drivers/ble/driver.js";
import { FakeBluez } from "../../drivers/ble/fake-bluez.js";
import { addProxyDevice } from "../../drivers/ble/sim.js";
import { CoapDriver } from "../../drivers/coap/driver.js";
import { Lwm2mClientSim } from "../../drivers/coap/sim.js";
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { MqttDriver } from "../../drivers/mqtt/driver.js";
import { MqttDeviceFleet } from "../../drivers/mqtt/sim.js";
import { SerialDriver } from "../../drivers/serial/driver.js";
import { SerialDeviceSimulator } from "../../drivers/serial/sim.js";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import type { AuthConfig } from "../../src/dm/auth.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
import { mirrorInventory } from "../../src/mo/gwmo-inventory.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import { HttpTransport } from "../../src/northbound/http-transport.js";
import type { NewAlert } from "../../src/northbound/outbox.js";
import { NorthboundService } from "../../src/northbound/service.js";
import { SimulatedDevice, type DeviceFailure } from "../../src/sim/dm-device.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import { Southbound } from "../../src/southbound/southbound.js";
import {
  decodeCommandFragment,
  type Command,
  type ResultsCommand,
  type StatusCommand,
} from "../../src/syncml/index.js";
import { startDbusDaemon, useSystemBus, type DbusDaemon } from "../helpers/dbus.js";
import { startMosquitto, type Mosquitto } from "../helpers/mosquitto.js";
import {
  NB_DEV_ID,
  NB_SERVER_ID,
  nbDeviceSettings,
  nbSessionAccount,
  openNorthboundGateway,
  type NorthboundGateway,
} from "../helpers/northbound.js";
import { processAlive, startPtyPair, type PtyPair } from "../helpers/pty.js";
import { waitFor } from "../helpers/wait.js";

const GW = "dmgw-gw1";
/** Per-device deadline of the jobs: generous for a loaded 2-core box. A silent device costs the job
 * twice this (the engine's default Retries is 1). */
const DEVICE_TIMEOUT_MS = 4000;

const creds = (id: string): { clientAuth: AuthConfig; serverAuth: AuthConfig } => ({
  clientAuth: { scheme: "hmac", name: id, secret: `dev-${id}` },
  serverAuth: { scheme: "hmac", name: GW, secret: `gw-${id}` },
});

const add = (cmdId: string, uri: string, format: string, text: string): Command => ({
  kind: "Add",
  cmdId,
  items: [{ target: { locUri: uri }, meta: { format }, data: { kind: "text", text } }],
});

/** The devices of the group, by transport, with what each does. */
const HTTP = {
  "http-ok": "none",
  "http-silent": "silent",
  "http-liar": "wrong-credentials",
  "http-junk": "garbage",
};
const MQTT = { "mqtt-1": "none", "mqtt-2": "wrong-credentials", "mqtt-3": "garbage" };
const SERIAL = { "ser-ok": "none", "ser-junk": "garbage", "ser-liar": "wrong-credentials" };
const BLE = { "ble-ok": "none", "ble-silent": "silent", "ble-junk": "garbage" };
const COAP = { "coap-ok": "none", "coap-silent": "silent" };
const BLE_MAC: Record<string, string> = {
  "ble-ok": "C7:00:00:00:00:01",
  "ble-silent": "C7:00:00:00:00:02",
  "ble-junk": "C7:00:00:00:00:03",
};

const entries = (o: Record<string, string>): [string, DeviceFailure][] =>
  Object.entries(o) as [string, DeviceFailure][];

const ALL_IDS = [HTTP, MQTT, SERIAL, BLE, COAP].flatMap((o) => Object.keys(o));

/** Job 1 on every device: Get, Replace, Exec, Atomic{Replace}. */
const JOB1_COMMANDS =
  `<Get><CmdID>21</CmdID><Item><Target><LocURI>./DevInfo/Man</LocURI></Target></Item></Get>` +
  `<Replace><CmdID>22</CmdID><Item><Target><LocURI>./Vendor/Setting1</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>7</Data></Item></Replace>` +
  `<Exec><CmdID>23</CmdID><Item><Target><LocURI>./Vendor/Reboot</LocURI></Target></Item></Exec>` +
  `<Atomic><CmdID>24</CmdID><Replace><CmdID>25</CmdID><Item><Target><LocURI>./Vendor/Setting2</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>9</Data></Item></Replace></Atomic>`;

/** Job 2 on the CoAP devices: Replace of a writable LwM2M resource (UTC offset), Exec (Execute) of Reboot. */
const JOB2_COMMANDS =
  `<Replace><CmdID>31</CmdID><Item><Target><LocURI>./3/0/14</LocURI></Target><Data>+05:00</Data></Item></Replace>` +
  `<Exec><CmdID>32</CmdID><Item><Target><LocURI>./3/0/4</LocURI></Target></Item></Exec>` +
  `<Get><CmdID>33</CmdID><Item><Target><LocURI>./3/0/14</LocURI></Target></Item></Get>`;

describe("fan-out over a group mixing HTTP, MQTT, serial, BLE and CoAP devices (issue #7)", function () {
  this.timeout(120_000);
  let dir: string;
  let sim: DmServerSimulator;
  let transport: HttpTransport;
  let gateway: NorthboundGateway | undefined;
  let service: NorthboundService | undefined;
  let south: Southbound | undefined;
  let engine: FanoutEngine | undefined;
  let stopMirror: (() => void) | undefined;
  let httpFleet: HttpDeviceFleet | undefined;
  let mqttFleet: MqttDeviceFleet | undefined;
  let broker: Mosquitto | undefined;
  const ptys: PtyPair[] = [];
  const serialSims: { sim: SerialDeviceSimulator; link: ByteLink; device: SimulatedDevice }[] = [];
  let daemon: DbusDaemon | undefined;
  let restoreBus: (() => void) | undefined;
  let bluez: FakeBluez | undefined;
  const bleDevices: SimulatedDevice[] = [];
  const coapSims: Lwm2mClientSim[] = [];
  let driversAbort: AbortController;
  /** socat, mosquitto and dbus-daemon, by PID: none may outlive the test. */
  const pids: number[] = [];

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-fanout-mixed-"));
    sim = new DmServerSimulator();
    await sim.start();
    transport = new HttpTransport();
    driversAbort = new AbortController();
  });

  afterEach(async () => {
    await service?.stop();
    await engine?.stop();
    driversAbort.abort();
    await httpFleet?.stop();
    await mqttFleet?.stop();
    for (const s of serialSims.splice(0)) {
      await s.sim.close();
      await s.link.close().catch(() => undefined);
      s.device.close();
    }
    for (const c of coapSims.splice(0)) await c.stop();
    stopMirror?.();
    await south?.stop();
    await bluez?.stop();
    for (const d of bleDevices.splice(0)) d.close();
    await daemon?.stop();
    restoreBus?.();
    await broker?.stop();
    for (const p of ptys.splice(0)) await p.stop();
    gateway?.close();
    transport.close();
    await sim.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    const alive = pids.splice(0).filter((pid) => processAlive(pid));
    assert.deepEqual(alive, [], "processes left behind");
    service = undefined;
    engine = undefined;
    httpFleet = undefined;
    mqttFleet = undefined;
    stopMirror = undefined;
    south = undefined;
    bluez = undefined;
    daemon = undefined;
    restoreBus = undefined;
    broker = undefined;
    gateway = undefined;
  });

  it("Get/Replace/Exec/Atomic on every transport; 504/401/502 per device; the alert's Correlator; the server's Gets return what was stored", async () => {
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
      timeoutMs: 10_000,
      maxMessages: 50,
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
    });
    service = svc;
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
    const signal = driversAbort.signal;
    const account = (id: string) => ({ deviceId: id, serverId: GW, ...creds(id) });
    const deviceOptions = (id: string, failure: DeviceFailure) => ({
      deviceId: id,
      serverId: GW,
      ...creds(id),
      ...(failure !== "none" && { failure }),
    });

    // HTTP: the driver serves, the devices come to it (WAP push over UDP to notify).
    const http = new HttpDriver({ host: "127.0.0.1", port: 0 }, s.driverContext("http", signal));
    s.addDriver(http);
    await http.start();
    httpFleet = new HttpDeviceFleet({
      gatewayUrl: http.url,
      devices: entries(HTTP).map(([id, failure]) => deviceOptions(id, failure)),
    });
    await httpFleet.start();
    const hf = httpFleet;
    for (const id of Object.keys(HTTP))
      s.provision({ deviceId: id, address: hf.address(id), account: account(id) });

    // MQTT: through mosquitto on a port picked here.
    broker = await startMosquitto();
    pids.push(broker.pid);
    const mqtt = new MqttDriver(
      { url: broker.url, clientId: `dmgw-mixed-${process.pid}`, reconnect: { initialMs: 100, maxMs: 500 } },
      s.driverContext("mqtt", signal),
    );
    s.addDriver(mqtt);
    for (const id of Object.keys(MQTT))
      s.provision({ deviceId: id, address: { transport: "mqtt", address: id }, account: account(id) });
    await mqtt.start();
    const mqttFailures = entries(MQTT);
    mqttFleet = new MqttDeviceFleet({
      url: broker.url,
      count: mqttFailures.length,
      idPrefix: "mqtt-",
      account: (id) => ({ serverId: GW, ...creds(id) }),
      device: (index) => {
        const failure = mqttFailures[index]?.[1] ?? "none";
        return failure === "none" ? {} : { failure };
      },
      reconnectPeriodMs: 100,
    });
    await mqttFleet.start();
    assert.deepEqual(mqttFleet.ids, Object.keys(MQTT));

    // Serial: one socat pty pair per device, the simulator on the far end.
    const serialPorts: { path: string; deviceId: string }[] = [];
    for (const [id, failure] of entries(SERIAL)) {
      const pair = await startPtyPair();
      ptys.push(pair);
      pids.push(pair.pid);
      const device = new SimulatedDevice(deviceOptions(id, failure));
      const link = await openSerialLink({ path: pair.b });
      serialSims.push({ sim: new SerialDeviceSimulator(link, { device }), link, device });
      serialPorts.push({ path: pair.a, deviceId: id });
      s.provision({ deviceId: id, address: { transport: "serial", address: pair.a }, account: account(id) });
    }
    const serial = new SerialDriver(
      { ports: serialPorts, reconnect: { initialMs: 100, maxMs: 500, jitter: 0.1 } },
      s.driverContext("serial", signal),
    );
    s.addDriver(serial);
    await serial.start();

    // BLE: proxy devices on the fake BlueZ, on a private system bus.
    daemon = await startDbusDaemon();
    pids.push(daemon.pid);
    restoreBus = useSystemBus(daemon.address);
    bluez = new FakeBluez({ discoveryDelayMs: 10 });
    await bluez.start();
    for (const [id, failure] of entries(BLE)) {
      const device = new SimulatedDevice(deviceOptions(id, failure));
      bleDevices.push(device);
      addProxyDevice(bluez, { address: BLE_MAC[id] ?? "", device, answerTimeoutMs: 10_000 });
      s.provision({
        deviceId: id,
        address: { transport: "ble", address: BLE_MAC[id] ?? "" },
        account: account(id),
      });
    }
    const ble = new BleDriver(
      {
        discoveryIntervalMs: 50,
        sessionIdleMs: 300,
        linkIdleMs: 100,
        callTimeoutMs: 2000,
        reconnect: { initialMs: 100, maxMs: 500, jitter: 0.1 },
      },
      s.driverContext("ble", signal),
      s.adaptationContext("ble", signal),
    );
    s.addDriver(ble);
    await ble.start();

    // CoAP: LwM2M clients register with the adaptation driver; registering puts them in the inventory.
    const coap = new CoapDriver(
      // The silent client never answers the DevInfo read: it is in the inventory once that read gave up.
      { host: "127.0.0.1", port: 0, ackTimeoutMs: 500, maxRetransmit: 2, devInfoTimeoutMs: 1500 },
      s.adaptationContext("coap", signal),
    );
    s.addAdaptationDriver(coap);
    await coap.start();
    for (const [id, failure] of entries(COAP)) {
      coapSims.push(
        await Lwm2mClientSim.start({
          endpoint: id,
          server: { address: "127.0.0.1", port: coap.port },
          ...(failure === "silent" && { failure: "silent" as const }),
        }),
      );
    }
    await waitFor(
      "the CoAP registrations",
      () => Object.keys(COAP).every((id) => s.registry.get(id)?.mode === "adaptation"),
      15_000,
    );

    const e = new FanoutEngine({ tree: g.tree, outbox, devices: (id) => s.endDevice(id) });
    engine = e;
    late.engine = e;
    svc.start();
    await waitFor("every device in the inventory", () =>
      ALL_IDS.every((id) => s.registry.get(id) !== undefined),
    );
    await waitFor("the attach alerts", () => sim.alerts().length >= ALL_IDS.length);
    await svc.idle();

    /** Sets up a group and a job in one session, Execs Start (202), waits for the alert, reads the results. */
    const runJob = async (o: {
      job: string;
      group: string;
      members: readonly string[];
      commands: string;
      correlator: string;
    }): Promise<{ status: string; results: Map<string, { statuses: string[]; results: string[] }> }> => {
      const groupNode = `./GwMO/Config/Groups/${o.group}`;
      sim.queue(NB_DEV_ID, [
        add("1", `${groupNode}/GroupID`, "chr", o.group),
        ...o.members.map((id, i) => add(String(100 + i), `${groupNode}/Members/${i}/DeviceID`, "chr", id)),
        add("2", `${o.job}/FanOut/FanOutCommands`, "xml", o.commands),
        add("3", `${o.job}/FanOut/TargetGroupRef`, "chr", o.group),
        {
          kind: "Replace",
          cmdId: "4",
          items: [
            {
              target: { locUri: `${o.job}/Ext/Options/DeviceTimeout` },
              data: { kind: "text", text: String(DEVICE_TIMEOUT_MS) },
            },
          ],
        },
        {
          kind: "Exec",
          cmdId: "5",
          correlator: o.correlator,
          items: [{ target: { locUri: `${o.job}/FanOut/Start` } }],
        },
      ]);
      svc.checkIn(NB_SERVER_ID);
      await svc.idle();
      const setup = sim.sessions(NB_DEV_ID).at(-1);
      assert.ok(setup !== undefined);
      assert.equal(setup.error, undefined, setup.error?.reason);
      assert.deepEqual(
        setup.commands.map((c) => c.status),
        [...Array<number>(o.members.length + 4).fill(200), 202],
      );

      // The completion alert arrives in a session the gateway opens itself, with the Correlator.
      await waitFor(
        `the completion alert of ${o.job}`,
        () => sim.alerts().some((a) => a.alert.correlator === o.correlator),
        60_000,
      );
      const alerts = sim.alerts().filter((a) => a.alert.correlator === o.correlator);
      // The outbox delivers at least once: a copy after a broken session must be the same alert.
      assert.ok(alerts.length >= 1);
      for (const a of alerts) {
        const alertItem = a.alert.items[0];
        assert.equal(alertItem?.type, "urn:oma:at:oma-gwmo:completionstatus:1.0");
        assert.equal(alertItem.source, o.job);
        assert.deepEqual(alertItem.data, { kind: "text", text: `${o.job}/Results` });
      }
      await svc.idle();

      // The server reads the results.
      const gets: Command[] = [
        { kind: "Get", cmdId: "1", items: [{ target: { locUri: `${o.job}/Status` } }] },
      ];
      for (let n = 1; n <= o.members.length; n++) {
        gets.push({
          kind: "Get",
          cmdId: String(n * 2),
          items: [{ target: { locUri: `${o.job}/Results/${n}/DeviceID` } }],
        });
        gets.push({
          kind: "Get",
          cmdId: String(n * 2 + 1),
          items: [{ target: { locUri: `${o.job}/Results/${n}/DevResultXML` } }],
        });
      }
      sim.queue(NB_DEV_ID, gets);
      svc.checkIn(NB_SERVER_ID);
      await svc.idle();
      const read = sim.sessions(NB_DEV_ID).at(-1);
      assert.ok(read !== undefined);
      assert.equal(read.error, undefined, read.error?.reason);
      assert.deepEqual(
        read.commands.map((c) => c.status),
        gets.map(() => 200),
      );
      const value = (i: number): string => {
        const d = read.commands[i]?.results[0]?.items[0]?.data;
        return d?.kind === "text" ? d.text : "";
      };
      const results = new Map<string, { statuses: string[]; results: string[] }>();
      for (let n = 1; n <= o.members.length; n++) {
        const id = value(n * 2 - 1);
        const xml = value(n * 2);
        // Exactly what the engine stored for the device.
        const stored = g.tree.read(`${o.job}/Results/${n}/DevResultXML`)?.value;
        const storedText = typeof stored === "string" ? stored : new TextDecoder().decode(stored);
        assert.equal(xml, storedText, `Results/${n} (${id}) as the server read it`);
        const decoded = decodeCommandFragment(xml, { allow: "replies" });
        assert.ok(decoded.ok, `the result of ${id} decodes`);
        results.set(id, {
          statuses: decoded.value
            .filter((c): c is StatusCommand => c.kind === "Status")
            .map((st) => `${st.cmdRef}:${st.data}`),
          results: decoded.value
            .filter((c): c is ResultsCommand => c.kind === "Results")
            .flatMap((r) =>
              r.items.map((it) => `${r.cmdRef}:${it.data?.kind === "text" ? it.data.text : "?"}`),
            ),
        });
      }
      assert.deepEqual([...results.keys()].sort(), [...o.members].sort());
      return { status: value(0), results };
    };

    // Job 1: the whole mixed group.
    const job1 = await runJob({
      job: "./GwMO/Fanout/mixed1",
      group: "mixed",
      members: ALL_IDS,
      commands: JOB1_COMMANDS,
      correlator: "mixed1-corr",
    });
    const dump = JSON.stringify([...job1.results]);
    assert.equal(job1.status, "PartiallyCompleted");
    const answered = ["21:200", "22:200", "23:200", "24:200", "25:200"];
    const failed = (code: number) => ["21", "22", "23", "24", "25"].map((ref) => `${ref}:${code}`);
    const expected: Record<string, string[]> = {
      "http-ok": answered,
      "http-silent": failed(504),
      "http-liar": failed(401),
      "http-junk": failed(502),
      "mqtt-1": answered,
      "mqtt-2": failed(401),
      "mqtt-3": failed(502),
      "ser-ok": answered,
      "ser-junk": failed(502),
      "ser-liar": failed(401),
      "ble-ok": answered,
      "ble-silent": failed(504),
      "ble-junk": failed(502),
      // LwM2M: DevInfo/Man maps to /3/0/0; ./Vendor/... maps to no LwM2M path (404); Atomic is
      // refused (406) and its Replace never ran.
      "coap-ok": ["21:200", "22:404", "23:404", "24:406", "25:500"],
      "coap-silent": failed(504),
    };
    for (const [id, statuses] of Object.entries(expected))
      assert.deepEqual(job1.results.get(id)?.statuses, statuses, `${id}: ${dump}`);
    for (const id of ["http-ok", "mqtt-1", "ser-ok", "ble-ok", "coap-ok"])
      assert.deepEqual(job1.results.get(id)?.results, ["21:SimCo"], `${id}: ${dump}`);
    // The proxy devices that answered ran the Replaces (the Atomic's too) and the Exec.
    const proxyTree = (id: string): SimulatedDevice | undefined =>
      id === "http-ok"
        ? hf.device(id)
        : id === "ser-ok"
          ? serialSims.find((x) => x.device.deviceId === id)?.device
          : id === "ble-ok"
            ? bleDevices.find((d) => d.deviceId === id)
            : mqttFleet?.device(id);
    for (const id of ["http-ok", "mqtt-1", "ser-ok", "ble-ok"]) {
      const d = proxyTree(id);
      assert.equal(d?.tree.read("./Vendor/Setting1")?.value, "7", id);
      assert.equal(d.tree.read("./Vendor/Setting2")?.value, "9", id);
    }

    // Job 2: LwM2M resources on the CoAP devices (Write, Execute, Read).
    const job2 = await runJob({
      job: "./GwMO/Fanout/coap2",
      group: "lwm2m",
      members: Object.keys(COAP),
      commands: JOB2_COMMANDS,
      correlator: "coap2-corr",
    });
    const dump2 = JSON.stringify([...job2.results]);
    assert.equal(job2.status, "PartiallyCompleted");
    assert.deepEqual(job2.results.get("coap-ok")?.statuses, ["31:200", "32:200", "33:200"], dump2);
    assert.deepEqual(job2.results.get("coap-ok")?.results, ["33:+05:00"], dump2);
    assert.deepEqual(job2.results.get("coap-silent")?.statuses, ["31:504", "32:504", "33:504"], dump2);
  });
});
