import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import dgram from "node:dgram";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { ModemSimulator } from "../../board/modem/sim.js";
import { WAP_PUSH_PORT, decodeSmsDeliver } from "../../board/modem/sms-pdu.js";
import {
  ClientSession,
  type ClientOutcome,
  type Nonces,
  type PendingAlert,
} from "../../src/dm/client-session.js";
import { parsePackage0, verifyPackage0 } from "../../src/dm/package0.js";
import { decodeWspPush, isDmNotificationPush } from "../../src/syncml/wsp-push.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import type { Command, Encoding } from "../../src/syncml/index.js";
import type { DmTree } from "../../src/tree/tree.js";
import { seededGatewayTree } from "../helpers/gateway.js";

// The DM server simulator over real HTTP on loopback, driven by our ClientSession through fetch.

const DEV_ID = "IMEI:490154203237518";
const CLCRED = { name: "gw", secret: "client-secret" };
const SRVCRED = { name: "dmsrv", secret: "server-secret" };
const START_NONCES: Nonces = { client: Uint8Array.from([1, 2, 3, 4]), server: Uint8Array.from([5, 6, 7, 8]) };

function gatewayTree(): DmTree {
  return seededGatewayTree(DEV_ID, { vendorAcl: "Add=dmsrv&Get=dmsrv&Replace=dmsrv&Delete=dmsrv" });
}

type Scheme = "md5" | "hmac";

interface ClientRun {
  readonly tree: DmTree;
  readonly url: string;
  readonly scheme: Scheme;
  readonly encoding: Encoding;
  readonly nonces: Nonces;
  readonly initiator?: "server" | "client";
  readonly sessionId?: string;
  readonly alerts?: PendingAlert[];
  readonly transport?: Transport;
}

interface HttpAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

type Transport = (url: string, body: Uint8Array, headers: Record<string, string>) => Promise<HttpAnswer>;

const viaFetch: Transport = async (url, body, headers) => {
  const res = await fetch(url, { method: "POST", body, headers });
  return {
    status: res.status,
    contentType: res.headers.get("content-type") ?? "",
    headers: Object.fromEntries(res.headers),
    body: new Uint8Array(await res.arrayBuffer()),
  };
};

/** node:https with our own CA and no keep-alive agent (fetch cannot take a CA without undici). */
function viaHttps(ca: string): Transport {
  return (url, body, headers) =>
    new Promise((resolve, reject) => {
      const req = https.request(url, { method: "POST", headers, ca, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const out: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") out[k] = v;
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers["content-type"] ?? "",
            headers: out,
            body: new Uint8Array(Buffer.concat(chunks)),
          });
        });
      });
      req.on("error", reject);
      req.end(body);
    });
}

/** One client session over HTTP: POST each message, feed each reply back, until the client is done. */
async function runClient(o: ClientRun): Promise<ClientOutcome> {
  const client = new ClientSession({
    tree: o.tree,
    account: {
      serverId: "dmsrv",
      serverUri: o.url,
      client: { scheme: o.scheme, ...CLCRED },
      server: { scheme: o.scheme, ...SRVCRED },
    },
    nonces: o.nonces,
    devId: DEV_ID,
    initiator: o.initiator ?? "client",
    sessionId: o.sessionId ?? "1",
    encoding: o.encoding,
    maxMsgSize: 16_384,
    randomBytes: (n) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff),
    ...(o.alerts !== undefined && { alerts: o.alerts }),
  });
  let step = client.start();
  for (let i = 0; i < 40; i++) {
    const res = await (o.transport ?? viaFetch)(step.url, step.body, {
      ...step.headers,
      "content-type": step.contentType,
    });
    assert.equal(res.status, 200, `HTTP ${res.status}: ${Buffer.from(res.body).toString()}`);
    const next = client.receive(res.body, res.contentType, res.headers);
    if (next.kind === "done") return next;
    step = next;
  }
  assert.fail("the session did not end within 40 messages");
}

const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const ADD_SETTING: Command = {
  kind: "Add",
  cmdId: "2",
  items: [
    { target: { locUri: "./Vendor/Setting" }, meta: { format: "int" }, data: { kind: "text", text: "42" } },
  ],
};

async function post(url: string, body: Uint8Array | string, contentType: string): Promise<number> {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": contentType } });
  await res.arrayBuffer();
  return res.status;
}

describe("DM server simulator over HTTP", () => {
  let sim: DmServerSimulator;
  let url: string;

  function addDevice(scheme: Scheme): void {
    sim.addDevice(DEV_ID, {
      clientAuth: { scheme, ...CLCRED },
      serverAuth: { scheme, ...SRVCRED },
      clientNonce: START_NONCES.client,
      serverNonce: START_NONCES.server,
    });
  }

  beforeEach(async () => {
    sim = new DmServerSimulator({ maxBodyBytes: 32 * 1024 });
    ({ url } = await sim.start());
  });

  afterEach(async () => {
    await sim.stop();
  });

  for (const scheme of ["md5", "hmac"] as const) {
    for (const encoding of ["xml", "wbxml"] as const) {
      it(`${scheme} over ${encoding}: queued commands run on the gateway tree, Results are recorded`, async () => {
        addDevice(scheme);
        sim.queue(DEV_ID, [GET_MAN, ADD_SETTING]);
        const tree = gatewayTree();
        const client = await runClient({ tree, url, scheme, encoding, nonces: START_NONCES });
        assert.ok(client.ok, client.reason);
        assert.ok(client.serverAuthenticated);
        const [outcome] = sim.sessions(DEV_ID);
        assert.ok(outcome !== undefined);
        assert.equal(outcome.error, undefined, outcome.error?.reason);
        assert.ok(outcome.authenticated);
        assert.equal(outcome.initiatedBy, "client");
        assert.equal(outcome.devInfo["DevId"], DEV_ID);
        const [get, add] = outcome.commands;
        assert.equal(get?.status, 200);
        assert.deepEqual(get.results[0]?.items[0]?.data, { kind: "text", text: "ACME" });
        assert.equal(add?.status, 200);
        assert.equal(tree.read("./Vendor/Setting")?.value, "42");
        assert.equal(sim.openSessions, 0);

        // A second session on the nonces each side persisted: authentication still passes.
        assert.deepEqual(sim.nonces(DEV_ID)?.client, client.nonces.client);
        sim.queue(DEV_ID, [{ kind: "Get", cmdId: "1", items: [{ target: { locUri: "./Vendor/Setting" } }] }]);
        const again = await runClient({ tree, url, scheme, encoding, nonces: client.nonces, sessionId: "2" });
        assert.ok(again.ok, again.reason);
        const second = sim.sessions(DEV_ID)[1];
        assert.ok(second !== undefined);
        assert.equal(second.error, undefined, second.error?.reason);
        assert.deepEqual(second.commands[0]?.results[0]?.items[0]?.data, { kind: "text", text: "42" });
      });
    }
  }

  it("records a Generic Alert", async () => {
    addDevice("md5");
    const alerts: PendingAlert[] = [
      {
        id: "job-1",
        code: 1226,
        correlator: "corr-42",
        items: [
          {
            source: { locUri: "./GwMO/Fanout/job1" },
            meta: { type: "urn:oma:at:oma-gwmo:completionstatus:1.0", format: "chr", mark: "informational" },
            data: { kind: "text", text: "./GwMO/Fanout/job1/Results" },
          },
        ],
      },
    ];
    const client = await runClient({
      tree: gatewayTree(),
      url,
      scheme: "md5",
      encoding: "wbxml",
      nonces: START_NONCES,
      alerts,
    });
    assert.ok(client.ok, client.reason);
    assert.deepEqual(client.alertsAcknowledged, ["job-1"]);
    const [received] = sim.alerts();
    assert.equal(received?.deviceId, DEV_ID);
    assert.equal(received.alert.correlator, "corr-42");
    assert.equal(received.alert.items[0]?.type, "urn:oma:at:oma-gwmo:completionstatus:1.0");
    assert.equal(received.alert.status, 200);
  });

  it("notify sends a Pkg#0 in a WSP Push over UDP; the next session must be server-initiated with it", async () => {
    addDevice("md5");
    const socket = dgram.createSocket("udp4");
    try {
      await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
      const received = new Promise<Buffer>((resolve) => socket.once("message", resolve));
      const sent = await sim.notify(
        DEV_ID,
        { host: "127.0.0.1", port: socket.address().port },
        { uiMode: "background", initiator: "server" },
      );
      const datagram = new Uint8Array(await received);
      assert.deepEqual(datagram, sent.datagram);

      const push = decodeWspPush(datagram);
      assert.ok(push.ok);
      assert.ok(isDmNotificationPush(push.value));
      const pkg0 = parsePackage0(push.value.body);
      assert.ok(pkg0.ok);
      assert.equal(pkg0.notification.serverId, SRVCRED.name);
      assert.equal(pkg0.notification.uiMode, "background");
      assert.equal(pkg0.notification.initiator, "server");
      assert.ok(pkg0.versionSupported);
      const verified = verifyPackage0(pkg0, {
        names: [SRVCRED.name],
        password: SRVCRED.secret,
        nonce: START_NONCES.server,
      });
      assert.ok(verified.ok);
      assert.equal(verified.nonce, "stored");
      const sessionId = pkg0.notification.sessionId.toString(16).toUpperCase();
      assert.equal(sessionId, sent.sessionId);

      sim.queue(DEV_ID, [GET_MAN]);
      const client = await runClient({
        tree: gatewayTree(),
        url,
        scheme: "md5",
        encoding: "xml",
        nonces: START_NONCES,
        initiator: "server",
        sessionId,
      });
      assert.ok(client.ok, client.reason);
      const [outcome] = sim.sessions(DEV_ID);
      assert.ok(outcome !== undefined);
      assert.equal(outcome.error, undefined, outcome.error?.reason);
      assert.equal(outcome.initiatedBy, "server");
      assert.equal(outcome.sessionId, sessionId);
      assert.equal(outcome.commands[0]?.status, 200);
    } finally {
      socket.close();
    }
  });

  it("notify hands the WSP Push to a deliver callback: as SMS through the modem simulator", async () => {
    addDevice("md5");
    const modem = new ModemSimulator();
    const delivered: Uint8Array[] = [];
    const sent = await sim.notify(DEV_ID, {
      deliver: (d) => {
        delivered.push(d);
        modem.injectWapPush(d);
      },
    });
    assert.equal(delivered.length, 1);
    assert.deepEqual(delivered[0], sent.datagram);
    const push = decodeWspPush(sent.datagram);
    assert.ok(push.ok);
    assert.ok(isDmNotificationPush(push.value));
    assert.deepEqual(push.value.body, sent.package0);

    // The modem holds it as one SMS to the WAP Push port carrying exactly that datagram.
    const [sms, ...more] = modem.stored();
    assert.ok(sms !== undefined);
    assert.equal(more.length, 0);
    const deliver = decodeSmsDeliver(sms.pdu);
    assert.equal(deliver.udh?.ports?.destination, WAP_PUSH_PORT);
    assert.deepEqual(deliver.payload, sent.datagram);

    // And the next session must be server-initiated with the pushed session id.
    sim.queue(DEV_ID, [GET_MAN]);
    const client = await runClient({
      tree: gatewayTree(),
      url,
      scheme: "md5",
      encoding: "xml",
      nonces: START_NONCES,
      initiator: "server",
      sessionId: sent.sessionId,
    });
    assert.ok(client.ok, client.reason);
    assert.equal(sim.sessions(DEV_ID)[0]?.initiatedBy, "server");
  });

  it("a notify whose delivery fails rejects and leaves the next session client-initiated", async () => {
    addDevice("md5");
    await assert.rejects(
      sim.notify(DEV_ID, {
        deliver: () => Promise.reject(new Error("no SMS today")),
      }),
      /no SMS today/,
    );
    const client = await runClient({
      tree: gatewayTree(),
      url,
      scheme: "md5",
      encoding: "xml",
      nonces: START_NONCES,
    });
    assert.ok(client.ok, client.reason);
    assert.equal(sim.sessions(DEV_ID)[0]?.initiatedBy, "client");
  });

  it("after notify, a client-initiated session is refused", async () => {
    addDevice("md5");
    const socket = dgram.createSocket("udp4");
    try {
      await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
      const received = new Promise<Buffer>((resolve) => socket.once("message", resolve));
      await sim.notify(DEV_ID, { host: "127.0.0.1", port: socket.address().port });
      await received;
    } finally {
      socket.close();
    }
    const client = await runClient({
      tree: gatewayTree(),
      url,
      scheme: "md5",
      encoding: "xml",
      nonces: START_NONCES,
    });
    assert.equal(client.ok, false);
    assert.equal(sim.sessions(DEV_ID)[0]?.error?.code, "wrong-session");
  });

  it("refuses bad requests with 4xx and keeps serving", async () => {
    addDevice("md5");
    const xml = "application/vnd.syncml.dm+xml";
    assert.equal(await post(url, "<SyncML><oops", xml), 400);
    assert.equal(
      await post(url, new Uint8Array([0x03, 0x01, 0xff, 0xff, 0xff]), "application/vnd.syncml.dm+wbxml"),
      400,
    );
    assert.equal(await post(url, "<SyncML/>", "text/plain"), 415);
    assert.equal(await post(url, "x".repeat(40 * 1024), xml), 413);
    assert.equal(await post(`${url}/s/${"0".repeat(32)}`, "<SyncML/>", xml), 404);
    assert.equal(await post(`${url.replace(/\/dm$/, "")}/elsewhere`, "<SyncML/>", xml), 404);
    const get = await fetch(url);
    await get.arrayBuffer();
    assert.equal(get.status, 405);

    // A device the simulator does not know.
    const stranger = new ClientSession({
      tree: gatewayTree(),
      account: {
        serverId: "dmsrv",
        serverUri: url,
        client: { scheme: "md5", ...CLCRED },
        server: { scheme: "md5", ...SRVCRED },
      },
      nonces: START_NONCES,
      devId: "IMEI:000000000000000",
      initiator: "client",
      sessionId: "5",
      encoding: "xml",
      maxMsgSize: 16_384,
      randomBytes: (n) => new Uint8Array(n),
    }).start();
    assert.equal(await post(url, stranger.body, stranger.contentType), 403);

    // A garbage message inside a running session leaves the session alone.
    sim.queue(DEV_ID, [GET_MAN]);
    const client = new ClientSession({
      tree: gatewayTree(),
      account: {
        serverId: "dmsrv",
        serverUri: url,
        client: { scheme: "md5", ...CLCRED },
        server: { scheme: "md5", ...SRVCRED },
      },
      nonces: START_NONCES,
      devId: DEV_ID,
      initiator: "client",
      sessionId: "6",
      encoding: "xml",
      maxMsgSize: 16_384,
      randomBytes: (n) => new Uint8Array(n).fill(9),
    });
    let step = client.start();
    let garbageSent = false;
    for (let i = 0; i < 40; i++) {
      if (i === 1 && !garbageSent) {
        assert.match(step.url, /\/dm\/s\/[0-9a-f]{32}$/);
        assert.equal(await post(step.url, "not syncml", xml), 400);
        garbageSent = true;
      }
      const res = await fetch(step.url, {
        method: "POST",
        body: step.body,
        headers: { ...step.headers, "content-type": step.contentType },
      });
      assert.equal(res.status, 200);
      const next = client.receive(
        new Uint8Array(await res.arrayBuffer()),
        res.headers.get("content-type") ?? "",
        Object.fromEntries(res.headers),
      );
      if (next.kind === "done") {
        assert.ok(next.ok, next.reason);
        break;
      }
      step = next;
    }
    assert.ok(garbageSent);
    assert.equal(sim.sessions(DEV_ID)[0]?.commands[0]?.status, 200);
    assert.equal(sim.openSessions, 0);
  });

  it("stop() is idempotent and closes the port", async () => {
    await sim.stop();
    await sim.stop();
    await assert.rejects(fetch(url, { method: "POST", body: "<SyncML/>" }));
  });
});

describe("DM server simulator over HTTPS", () => {
  let dir: string;
  let tls: { key: string; cert: string } | undefined;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-sim-tls-"));
    const key = path.join(dir, "key.pem");
    const cert = path.join(dir, "cert.pem");
    try {
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          key,
          "-out",
          cert,
        ],
        { stdio: "ignore" },
      );
    } catch (cause) {
      // Never a silent skip: the HTTPS case needs the openssl CLI (.ci/run installs it).
      throw new Error("the HTTPS test needs the openssl command: apt-get install openssl", { cause });
    }
    tls = { key: fs.readFileSync(key, "utf8"), cert: fs.readFileSync(cert, "utf8") };
  });

  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("runs an hmac session over TLS", async () => {
    assert.ok(tls !== undefined);
    const sim = new DmServerSimulator({ tls });
    try {
      const { url } = await sim.start();
      assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/dm$/);
      sim.addDevice(DEV_ID, {
        clientAuth: { scheme: "hmac", ...CLCRED },
        serverAuth: { scheme: "hmac", ...SRVCRED },
        clientNonce: START_NONCES.client,
        serverNonce: START_NONCES.server,
      });
      sim.queue(DEV_ID, [GET_MAN]);
      const client = await runClient({
        tree: gatewayTree(),
        url,
        scheme: "hmac",
        encoding: "wbxml",
        nonces: START_NONCES,
        transport: viaHttps(tls.cert),
      });
      assert.ok(client.ok, client.reason);
      assert.deepEqual(sim.sessions(DEV_ID)[0]?.commands[0]?.results[0]?.items[0]?.data, {
        kind: "text",
        text: "ACME",
      });
    } finally {
      await sim.stop();
    }
  });
});
