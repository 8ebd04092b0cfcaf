/**
 * The resultaggregation alert's inline bound follows what the DM server declared, through the real
 * northbound path: the NorthboundService runs sessions (session-runner, ClientSession) against our
 * ServerSession, which declares MaxMsgSize and MaxObjSize in its SyncHdr Meta; the runner stores
 * them when the session ends; the server then sets up two resultaggregation jobs (one whose
 * aggregation is above its MaxObjSize, one below) and Execs Start; the engine, given the
 * store-backed lookup, sends the first by URI and the second inline, in a session the gateway opens.
 *
 * The server runs in-process behind a MessageTransport (no HTTP): the DM server simulator does not
 * declare MaxObjSize, and HTTP adds nothing this test is about.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AdaptedOutcome } from "../../drivers/driver.js";
import { ServerSession, type GenericAlert } from "../../src/dm/server-session.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import type { MessageRequest, MessageResult, MessageTransport } from "../../src/northbound/http-transport.js";
import type { NewAlert } from "../../src/northbound/outbox.js";
import { ServerLimitsStore } from "../../src/northbound/server-limits.js";
import { NorthboundService } from "../../src/northbound/service.js";
import type { EndDevice } from "../../src/southbound/end-device.js";
import type { Command } from "../../src/syncml/index.js";
import {
  NB_DEV_ID,
  NB_SERVER_ID,
  nbDeviceSettings,
  nbSessionAccount,
  openNorthboundGateway,
  type NorthboundGateway,
} from "../helpers/northbound.js";
import { waitFor } from "../helpers/wait.js";

const URL = "http://dm.test/dm";
const MAX_MSG = 16_384;
const MAX_OBJ = 2000;

/** Our DM server behind a MessageTransport: one ServerSession per session, commands queued ahead. */
class InProcessServer implements MessageTransport {
  readonly alerts: GenericAlert[] = [];
  readonly errors: string[] = [];
  #session: ServerSession | undefined;
  readonly #queue: Command[][] = [];

  queue(commands: Command[]): void {
    this.#queue.push(commands);
  }

  postMessage(req: MessageRequest): Promise<MessageResult> {
    const settings = nbDeviceSettings("basic");
    this.#session ??= (() => {
      const s = new ServerSession({
        serverUri: URL,
        expectedDevice: NB_DEV_ID,
        clientAuth: settings.clientAuth,
        serverAuth: settings.serverAuth,
        clientNonce: settings.clientNonce ?? new Uint8Array(4),
        serverNonce: settings.serverNonce ?? new Uint8Array(4),
        randomBytes: (n) => new Uint8Array(randomBytes(n)),
        maxMsgSize: MAX_MSG,
        maxObjSize: MAX_OBJ,
      });
      const commands = this.#queue.shift();
      if (commands !== undefined) s.enqueue(commands);
      return s;
    })();
    const step = this.#session.receive(req.body, req.contentType, req.headers);
    if (step.kind === "end") {
      this.#session = undefined;
      this.alerts.push(...step.outcome.genericAlerts);
      if (step.outcome.error !== undefined) this.errors.push(step.outcome.error.reason);
    }
    const reply = (step.kind === "reply" ? step : step.reply) ?? {
      body: new Uint8Array(0),
      contentType: req.contentType,
      headers: {},
    };
    return Promise.resolve({
      ok: true,
      status: 200,
      body: reply.body,
      contentType: reply.contentType,
      headers: reply.headers,
    });
  }
}

const add = (cmdId: string, uri: string, format: string, text: string): Command => ({
  kind: "Add",
  cmdId,
  items: [{ target: { locUri: uri }, meta: { format }, data: { kind: "text", text } }],
});

/** A device that answers each Get with `size` characters. */
const device = (id: string, size: number): EndDevice => ({
  id,
  transport: "http",
  mode: "proxy",
  execute: (commands): Promise<AdaptedOutcome> =>
    Promise.resolve({
      kind: "replied",
      results: commands.map(() => ({
        status: 200,
        items: [{ data: { kind: "text", text: "v".repeat(size) } }],
        inner: [],
      })),
    }),
});

describe("resultaggregation inline bound from the server's declared limits", function () {
  this.timeout(20_000);
  let dir: string;
  let gateway: NorthboundGateway | undefined;
  let service: NorthboundService | undefined;
  let engine: FanoutEngine | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-server-limits-"));
  });

  afterEach(async () => {
    await service?.stop();
    await engine?.stop();
    gateway?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("stores MaxObjSize after a session; a bigger aggregation goes by URI, a smaller one inline", async () => {
    const devices = new Map([
      ["small", device("small", 100)],
      ["large", device("large", MAX_OBJ + 500)],
    ]);
    const late: { engine?: FanoutEngine } = {};
    const g = openNorthboundGateway(path.join(dir, "gw.db"), URL, "basic", {
      plugins: gwmoPlugins({
        serverIds: [NB_SERVER_ID],
        deviceExists: (id) => devices.has(id),
        control: () => late.engine,
      }),
    });
    gateway = g;
    const server = new InProcessServer();
    const svc = new NorthboundService({
      tree: g.tree,
      outbox: g.outbox,
      devId: NB_DEV_ID,
      servers: [
        {
          account: nbSessionAccount(URL, "basic"),
          encoding: "xml",
          transport: server,
          checkInIntervalMs: 0,
        },
      ],
      maxMsgSize: 16_384,
      timeoutMs: 5_000,
      maxMessages: 20,
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
    });
    service = svc;
    const limits = new ServerLimitsStore(g.store);
    const outbox = {
      enqueue: (alert: NewAlert) => {
        const result = g.outbox.enqueue(alert);
        setImmediate(() => {
          svc.alertsQueued(alert.serverId);
        });
        return result;
      },
    };
    const e = new FanoutEngine({
      tree: g.tree,
      outbox,
      devices: (id) => devices.get(id),
      maxInlineResultBytes: (serverId) => limits.inlineResultBound(serverId),
    });
    engine = e;
    late.engine = e;
    svc.start();

    // Session 1: nothing to do but check in; the server's header declares its limits.
    assert.equal(limits.get(NB_SERVER_ID), undefined);
    svc.checkIn(NB_SERVER_ID);
    await svc.idle();
    assert.deepEqual(server.errors, []);
    const stored = limits.get(NB_SERVER_ID);
    assert.equal(stored?.maxObjSize, MAX_OBJ);
    assert.equal(stored.maxMsgSize, MAX_MSG);
    assert.equal(limits.inlineResultBound(NB_SERVER_ID), MAX_OBJ);

    // Session 2: two groups, two resultaggregation jobs, both started.
    const job = (name: string, group: string, member: string, base: number): Command[] => [
      add(`${base}`, `./GwMO/Config/Groups/${group}/GroupID`, "chr", group),
      add(`${base + 1}`, `./GwMO/Config/Groups/${group}/Members/0/DeviceID`, "chr", member),
      add(
        `${base + 2}`,
        `./GwMO/Fanout/${name}/FanOut/FanOutCommands`,
        "xml",
        `<Get><CmdID>1</CmdID><Item><Target><LocURI>./DevInfo/Mod</LocURI></Target></Item></Get>`,
      ),
      add(`${base + 3}`, `./GwMO/Fanout/${name}/FanOut/TargetGroupRef`, "chr", group),
      {
        kind: "Replace",
        cmdId: `${base + 4}`,
        items: [
          {
            target: { locUri: `./GwMO/Fanout/${name}/Ext/Options/AlertType` },
            data: { kind: "text", text: "resultaggregation" },
          },
        ],
      },
      {
        kind: "Exec",
        cmdId: `${base + 5}`,
        correlator: name,
        items: [{ target: { locUri: `./GwMO/Fanout/${name}/FanOut/Start` } }],
      },
    ];
    server.queue([...job("big", "g1", "large", 10), ...job("small", "g2", "small", 20)]);
    svc.checkIn(NB_SERVER_ID);
    await svc.idle();
    assert.deepEqual(server.errors, []);

    // The jobs end; their alerts go out in sessions the gateway opens.
    await waitFor("both alerts", () => server.alerts.filter((a) => a.correlator !== undefined).length >= 2);
    await svc.idle();
    const alert = (name: string) => server.alerts.find((a) => a.correlator === name)?.items[0];
    const big = alert("big");
    assert.equal(big?.type, "urn:oma:at:oma-gwmo:resultaggregation:1.0");
    assert.equal(big.format, "chr", "above the server's MaxObjSize: the URI");
    assert.deepEqual(big.data, { kind: "text", text: "./GwMO/Fanout/big/Results" });
    const small = alert("small");
    assert.equal(small?.format, "xml", "within the server's MaxObjSize: inline");
    assert.ok(small.data?.kind === "text" && small.data.text.startsWith("<DevResults>"));
    assert.ok(small.data.text.includes('<DevResult DeviceID="small">'));
    assert.ok(Buffer.byteLength(small.data.text) <= MAX_OBJ);
  });
});
