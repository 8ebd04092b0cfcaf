import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import type { AuthScheme } from "../../src/dm/auth.js";
import { HttpTransport, postMessage } from "../../src/northbound/http-transport.js";
import { newClientSessionId, runManagementSession } from "../../src/northbound/session-runner.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import type { Encoding } from "../../src/syncml/index.js";
import {
  NB_ACCOUNT,
  NB_CLCRED,
  NB_DEV_ID,
  NB_GET_MAN,
  NB_SERVER_ID,
  NB_SRVCRED,
  NB_START_NONCES,
  nbGenericAlert,
  nbNonce,
  nbReplaceSetting,
  openNorthboundGateway,
  type NorthboundGateway,
} from "../helpers/northbound.js";

// runManagementSession over HttpTransport against the DM server simulator on loopback, with the
// credentials and nonces in a DMAcc account of a file-backed tree and alerts in the outbox.

const DEV_ID = NB_DEV_ID;
const SERVER_ID = NB_SERVER_ID;
const ACCOUNT = NB_ACCOUNT;
const CLCRED = NB_CLCRED;
const SRVCRED = NB_SRVCRED;
const START = NB_START_NONCES;
const GENERIC_ALERT = nbGenericAlert("corr-7");
type Gateway = NorthboundGateway;
const openGateway = openNorthboundGateway;
const nonceOf = nbNonce;
const GET_MAN = NB_GET_MAN;
const REPLACE_SETTING = nbReplaceSetting("42");

describe("runManagementSession over HTTP", () => {
  let dir: string;
  let sim: DmServerSimulator;
  let url: string;
  let transport: HttpTransport;
  let gateway: Gateway | undefined;

  function session(g: Gateway, scheme: AuthScheme, encoding: Encoding, serverUri = url, maxMsgSize = 16_384) {
    return runManagementSession({
      tree: g.tree,
      outbox: g.outbox,
      transport,
      account: {
        accountPath: ACCOUNT,
        serverId: SERVER_ID,
        serverUri,
        clientScheme: scheme,
        serverScheme: scheme,
      },
      devId: DEV_ID,
      trigger: { kind: "client" },
      encoding,
      maxMsgSize,
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
      timeoutMs: 5_000,
      maxMessages: 20,
    });
  }

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-nb-session-"));
    sim = new DmServerSimulator();
    ({ url } = await sim.start());
    transport = new HttpTransport();
  });

  afterEach(async () => {
    transport.close();
    await sim.stop();
    gateway?.store.close();
    gateway = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [scheme, encoding] of [
    ["md5", "xml"],
    ["hmac", "wbxml"],
  ] as const) {
    it(`${scheme}/${encoding}: runs queued Get/Replace, delivers the outbox alert, rolls the nonces`, async () => {
      sim.addDevice(DEV_ID, {
        clientAuth: { scheme, ...CLCRED },
        serverAuth: { scheme, ...SRVCRED },
        clientNonce: START.client,
        serverNonce: START.server,
      });
      const g = openGateway(path.join(dir, "gw.db"), url, scheme);
      gateway = g;
      const queued = g.outbox.enqueue(GENERIC_ALERT);
      assert.ok(queued.stored);
      sim.queue(DEV_ID, [GET_MAN, REPLACE_SETTING]);

      const first = await session(g, scheme, encoding);
      assert.ok(first.ok, first.reason);
      assert.ok(first.serverAuthenticated);
      assert.deepEqual(first.alertsAcknowledged, [queued.id]);
      assert.ok(first.messages >= 2 && first.messages <= 20);
      assert.ok(first.bytesSent > 0 && first.bytesReceived > 0);
      assert.match(first.sessionId, /^[0-9A-F]{1,4}$/);

      const [outcome] = sim.sessions(DEV_ID);
      assert.ok(outcome !== undefined);
      assert.equal(outcome.error, undefined, outcome.error?.reason);
      assert.equal(outcome.commands[0]?.status, 200);
      assert.deepEqual(outcome.commands[0].results[0]?.items[0]?.data, { kind: "text", text: "ACME" });
      assert.equal(outcome.commands[1]?.status, 200);
      assert.equal(g.tree.read("./Vendor/Setting")?.value, "42");
      assert.equal(sim.openSessions, 0);

      // The alert reached the server and left the outbox.
      assert.equal(sim.alerts()[0]?.alert.correlator, "corr-7");
      assert.equal(g.outbox.pending(SERVER_ID).length, 0);

      // The nonces changed, in step with the simulator's.
      const held = sim.nonces(DEV_ID);
      assert.ok(held !== undefined);
      assert.notDeepEqual(nonceOf(g.tree, "ClientSide"), START.client);
      assert.notDeepEqual(nonceOf(g.tree, "ServerSide"), START.server);
      assert.deepEqual(nonceOf(g.tree, "ClientSide"), held.client);
      // Both sides agree on both nonces: the client stores only a nonce it actually sent.
      assert.deepEqual(nonceOf(g.tree, "ServerSide"), held.server);

      // A second session authenticates with the stored nonces, on the same keep-alive transport.
      sim.queue(DEV_ID, [{ kind: "Get", cmdId: "1", items: [{ target: { locUri: "./Vendor/Setting" } }] }]);
      const second = await session(g, scheme, encoding);
      assert.ok(second.ok, second.reason);
      assert.ok(second.serverAuthenticated);
      assert.deepEqual(second.alertsAcknowledged, []);
      const again = sim.sessions(DEV_ID)[1];
      assert.ok(again !== undefined);
      assert.equal(again.error, undefined, again.error?.reason);
      assert.ok(again.authenticated);
      assert.deepEqual(again.commands[0]?.results[0]?.items[0]?.data, { kind: "text", text: "42" });
    });
  }

  it("a server that never answers times out; the alert stays pending and the nonces unchanged", async () => {
    const sockets = new Set<Socket>();
    const silent = http.createServer(() => {
      // Accept the request and never answer.
    });
    silent.on("connection", (s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const silentUrl = `http://127.0.0.1:${port}/dm`;
      const g = openGateway(path.join(dir, "gw.db"), silentUrl, "md5");
      gateway = g;
      const queued = g.outbox.enqueue(GENERIC_ALERT);
      const started = Date.now();
      const result = await runManagementSession({
        tree: g.tree,
        outbox: g.outbox,
        transport,
        account: {
          accountPath: ACCOUNT,
          serverId: SERVER_ID,
          serverUri: silentUrl,
          clientScheme: "md5",
          serverScheme: "md5",
        },
        devId: DEV_ID,
        trigger: { kind: "server", sessionId: "1A2B" },
        encoding: "xml",
        maxMsgSize: 16_384,
        randomBytes: (n) => new Uint8Array(randomBytes(n)),
        timeoutMs: 200,
        maxMessages: 20,
      });
      assert.equal(result.ok, false);
      assert.equal(result.transportFailure, "timeout");
      assert.equal(result.sessionId, "1A2B");
      assert.equal(result.messages, 1);
      assert.equal(result.bytesReceived, 0);
      assert.ok(Date.now() - started < 2_000);
      const pending = g.outbox.pending(SERVER_ID);
      assert.deepEqual(
        pending.map((a) => a.id),
        [queued.id],
      );
      assert.equal(pending[0]?.attempts, 1);
      assert.deepEqual(nonceOf(g.tree, "ClientSide"), START.client);
      assert.deepEqual(nonceOf(g.tree, "ServerSide"), START.server);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) =>
        silent.close(() => {
          resolve();
        }),
      );
    }
  });

  it("an unknown device's 403 is an http-status result", async () => {
    const g = openGateway(path.join(dir, "gw.db"), url, "md5");
    gateway = g;
    const result = await session(g, "md5", "xml");
    assert.equal(result.ok, false);
    assert.equal(result.transportFailure, "http-status");
    assert.match(result.reason ?? "", /HTTP 403/);
    assert.equal(result.messages, 1);
  });

  it("a response over our MaxMsgSize is a too-large result", async () => {
    sim.addDevice(DEV_ID, {
      clientAuth: { scheme: "md5", ...CLCRED },
      serverAuth: { scheme: "md5", ...SRVCRED },
      clientNonce: START.client,
      serverNonce: START.server,
    });
    sim.queue(DEV_ID, [GET_MAN]);
    const g = openGateway(path.join(dir, "gw.db"), url, "md5");
    gateway = g;
    const result = await session(g, "md5", "xml", url, 64);
    assert.equal(result.ok, false);
    assert.equal(result.transportFailure, "too-large");
    assert.equal(result.bytesReceived, 0);
  });

  it("postMessage without an agent: a 2xx answer comes back whole", async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/vnd.syncml.dm+xml", "x-extra": "1" });
        res.end("<SyncML/>");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const result = await postMessage({
        url: `http://127.0.0.1:${port}/dm`,
        body: new TextEncoder().encode("<SyncML/>"),
        contentType: "application/vnd.syncml.dm+xml",
        headers: {},
        timeoutMs: 2_000,
      });
      assert.ok(result.ok, result.ok ? "" : result.message);
      assert.equal(result.status, 200);
      assert.equal(result.contentType, "application/vnd.syncml.dm+xml");
      assert.equal(result.headers["x-extra"], "1");
      assert.equal(Buffer.from(result.body).toString(), "<SyncML/>");
    } finally {
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    }
  });

  it("after close() the transport fails fast and holds no socket", async () => {
    transport.close();
    const result = await transport.postMessage({
      url,
      body: new Uint8Array(1),
      contentType: "application/vnd.syncml.dm+xml",
      headers: {},
      timeoutMs: 1_000,
    });
    assert.deepEqual(result.ok ? undefined : result.kind, "network");
  });

  it("client-initiated session ids are 1..FFFF in upper-case hex", () => {
    assert.equal(
      newClientSessionId(() => Uint8Array.from([0, 0])),
      "1",
    );
    assert.equal(
      newClientSessionId(() => Uint8Array.from([0xff, 0xff])),
      "1",
    );
    assert.equal(
      newClientSessionId(() => Uint8Array.from([0xab, 0xcd])),
      "ABCD",
    );
  });
});
