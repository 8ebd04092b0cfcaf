import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { AuthScheme } from "../../src/dm/auth.js";
import type { DmAuthType } from "../../src/mo/standard.js";
import { HttpTransport, type TlsOptions } from "../../src/northbound/http-transport.js";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import { runManagementSession, type SessionSummary } from "../../src/northbound/session-runner.js";
import {
  DmServerSimulator,
  type DmServerSimulatorOptions,
  type SimulatorTlsOptions,
} from "../../src/sim/dm-server.js";
import type { Command, Data, Encoding } from "../../src/syncml/index.js";
import type { DmTree } from "../../src/tree/tree.js";
import { seededGatewayTree } from "../helpers/gateway.js";
import { makeTestPki, type TestPki } from "../helpers/tls.js";

// runManagementSession over HttpTransport against the DM server simulator on real loopback HTTPS,
// with a CA, server and client certificates made for the run (test/helpers/tls.ts); and large
// objects over loopback HTTP with 8 KB messages both ways.

const DEV_ID = "IMEI:490154203237518";
const SERVER_ID = "dmsrv";
const ACCOUNT = "./DMAcc/dmserver";
const CLCRED = { name: "gw", secret: "client-secret" };
const SRVCRED = { name: SERVER_ID, secret: "server-secret" };
const START = { client: Uint8Array.from([1, 2, 3, 4]), server: Uint8Array.from([5, 6, 7, 8]) };
const AUTH_TYPE: Readonly<Record<AuthScheme, DmAuthType>> = { basic: "BASIC", md5: "DIGEST", hmac: "HMAC" };
const GENERIC_ALERT = {
  serverId: SERVER_ID,
  code: 1226,
  correlator: "corr-tls",
  items: [
    {
      source: { locUri: "./GwMO/Fanout/job9" },
      meta: { type: "urn:oma:at:oma-gwmo:completionstatus:1.0", format: "chr", mark: "informational" },
      data: { kind: "text", text: "./GwMO/Fanout/job9/Results" },
    },
  ],
} as const;
const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const REPLACE_SETTING: Command = {
  kind: "Replace",
  cmdId: "2",
  items: [
    { target: { locUri: "./Vendor/Setting" }, meta: { format: "int" }, data: { kind: "text", text: "42" } },
  ],
};
const KB8 = 8 * 1024;
const MB = 1024 * 1024;

interface Gateway {
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
}

/** A gateway on an in-memory store with one DMAcc account and a `./Vendor/Setting` of 1. */
function newGateway(url: string, scheme: AuthScheme): Gateway {
  const side = (cred: { name: string; secret: string }, nonce: Uint8Array) => ({
    type: AUTH_TYPE[scheme],
    ...cred,
    nonce: Buffer.from(nonce).toString("base64"),
  });
  const tree = seededGatewayTree(DEV_ID, {
    accounts: [
      {
        name: "dmserver",
        serverId: SERVER_ID,
        addr: url,
        clientCred: side(CLCRED, START.client),
        serverCred: side(SRVCRED, START.server),
      },
    ],
    vendorAcl: `Add=${SERVER_ID}&Get=${SERVER_ID}&Replace=${SERVER_ID}`,
  });
  tree.write({ path: "./Vendor/Setting", format: "int", value: "1" });
  return { tree, outbox: new AlertOutbox(tree.store, { maxCount: 100, maxBytes: 1 << 20 }) };
}

function nonceOf(tree: DmTree, side: "ClientSide" | "ServerSide"): Uint8Array {
  const value = tree.read(`${ACCOUNT}/AppAuth/${side}/AAuthData`)?.value;
  assert.ok(value instanceof Uint8Array, `${side} AAuthData is bytes`);
  return Uint8Array.from(value);
}

interface SessionRun {
  readonly gateway: Gateway;
  readonly transport: HttpTransport;
  readonly url: string;
  readonly scheme: AuthScheme;
  readonly encoding: Encoding;
  readonly maxMsgSize?: number;
  readonly maxMessages?: number;
}

function session(r: SessionRun): Promise<SessionSummary> {
  return runManagementSession({
    tree: r.gateway.tree,
    outbox: r.gateway.outbox,
    transport: r.transport,
    account: {
      accountPath: ACCOUNT,
      serverId: SERVER_ID,
      serverUri: r.url,
      clientScheme: r.scheme,
      serverScheme: r.scheme,
    },
    devId: DEV_ID,
    trigger: { kind: "client" },
    encoding: r.encoding,
    maxMsgSize: r.maxMsgSize ?? 16_384,
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    timeoutMs: 5_000,
    maxMessages: r.maxMessages ?? 20,
  });
}

function addDevice(sim: DmServerSimulator, scheme: AuthScheme): void {
  sim.addDevice(DEV_ID, {
    clientAuth: { scheme, ...CLCRED },
    serverAuth: { scheme, ...SRVCRED },
    clientNonce: START.client,
    serverNonce: START.server,
  });
}

/** Servers and transports a test started, stopped after it whatever happened. */
class Resources {
  readonly #sims: DmServerSimulator[] = [];
  readonly #transports: HttpTransport[] = [];

  async sim(options: DmServerSimulatorOptions): Promise<{ sim: DmServerSimulator; url: string }> {
    const sim = new DmServerSimulator(options);
    this.#sims.push(sim);
    const { url } = await sim.start();
    return { sim, url };
  }

  transport(tls?: TlsOptions): HttpTransport {
    const transport = new HttpTransport(tls === undefined ? {} : { tls });
    this.#transports.push(transport);
    return transport;
  }

  async close(): Promise<void> {
    for (const t of this.#transports.splice(0)) t.close();
    await Promise.all(this.#sims.splice(0).map((s) => s.stop()));
  }
}

/** Asserts a failed first exchange left the gateway and the simulator as they were. */
function assertNothingRan(g: Gateway, sim: DmServerSimulator, alertId: string, result: SessionSummary): void {
  assert.equal(result.ok, false);
  assert.equal(result.messages, 1);
  assert.equal(result.bytesReceived, 0);
  assert.deepEqual(result.alertsAcknowledged, []);
  assert.equal(g.tree.read("./Vendor/Setting")?.value, "1");
  assert.deepEqual(
    g.outbox.pending(SERVER_ID).map((a) => a.id),
    [alertId],
  );
  assert.deepEqual(nonceOf(g.tree, "ClientSide"), START.client);
  assert.deepEqual(nonceOf(g.tree, "ServerSide"), START.server);
  assert.deepEqual(sim.sessions(DEV_ID), []);
  assert.deepEqual(sim.alerts(), []);
  assert.equal(sim.openSessions, 0);
  assert.equal(sim.connections, 0, "no TLS connection completed");
}

describe("runManagementSession over HTTPS", function () {
  this.timeout(20_000);
  let pki: TestPki | undefined;
  const res = new Resources();

  before(() => {
    pki = makeTestPki();
  });

  after(() => {
    pki?.cleanup();
  });

  afterEach(async () => {
    await res.close();
  });

  function certs(): TestPki {
    assert.ok(pki !== undefined, "the PKI was made");
    return pki;
  }

  function serverTls(requestClientCert = false): SimulatorTlsOptions {
    const p = certs();
    return { key: p.serverKey, cert: p.serverCert, ca: p.caCert, requestClientCert };
  }

  for (const [encoding, mutual] of [
    ["xml", false],
    ["wbxml", false],
    ["xml", true],
    ["wbxml", true],
  ] as const) {
    const what = mutual ? "mutual TLS, the gateway presenting its client certificate" : "server TLS";
    it(`hmac/${encoding}, ${what}: a full session runs the queued commands and delivers the alert`, async () => {
      const p = certs();
      const { sim, url } = await res.sim({ tls: serverTls(mutual) });
      assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/dm$/);
      addDevice(sim, "hmac");
      sim.queue(DEV_ID, [GET_MAN, REPLACE_SETTING]);
      const g = newGateway(url, "hmac");
      const queued = g.outbox.enqueue(GENERIC_ALERT);
      assert.ok(queued.stored);
      const transport = res.transport(
        mutual ? { ca: p.caCert, cert: p.clientCert, key: p.clientKey } : { ca: p.caCert },
      );

      const result = await session({ gateway: g, transport, url, scheme: "hmac", encoding });
      assert.ok(result.ok, result.reason);
      assert.ok(result.serverAuthenticated);
      assert.deepEqual(result.alertsAcknowledged, [queued.id]);
      const [outcome] = sim.sessions(DEV_ID);
      assert.ok(outcome !== undefined);
      assert.equal(outcome.error, undefined, outcome.error?.reason);
      assert.ok(outcome.authenticated);
      assert.deepEqual(outcome.commands[0]?.results[0]?.items[0]?.data, { kind: "text", text: "ACME" });
      assert.equal(outcome.commands[1]?.status, 200);
      assert.equal(g.tree.read("./Vendor/Setting")?.value, "42");
      assert.equal(sim.alerts()[0]?.alert.correlator, "corr-tls");
      assert.equal(g.outbox.pending(SERVER_ID).length, 0);
      assert.deepEqual(nonceOf(g.tree, "ClientSide"), sim.nonces(DEV_ID)?.client);
      assert.deepEqual(sim.clientCertificates(), mutual ? [p.clientCommonName] : []);
    });
  }

  it("a transport trusting another CA fails with a certificate error; nothing runs", async () => {
    const p = certs();
    const { sim, url } = await res.sim({ tls: serverTls() });
    addDevice(sim, "hmac");
    sim.queue(DEV_ID, [REPLACE_SETTING]);
    const g = newGateway(url, "hmac");
    const queued = g.outbox.enqueue(GENERIC_ALERT);
    assert.ok(queued.stored);

    const result = await session({
      gateway: g,
      transport: res.transport({ ca: p.otherCaCert }),
      url,
      scheme: "hmac",
      encoding: "wbxml",
    });
    assert.equal(result.transportFailure, "tls");
    assert.match(result.reason ?? "", /certificate/i);
    assertNothingRan(g, sim, queued.id, result);
    assert.equal(g.outbox.pending(SERVER_ID)[0]?.attempts, 1);

    // The queued command was still waiting: the next session, trusting the right CA, runs it.
    const retry = await session({
      gateway: g,
      transport: res.transport({ ca: p.caCert }),
      url,
      scheme: "hmac",
      encoding: "wbxml",
    });
    assert.ok(retry.ok, retry.reason);
    assert.deepEqual(retry.alertsAcknowledged, [queued.id]);
    assert.equal(g.tree.read("./Vendor/Setting")?.value, "42");
  });

  it("a server requiring a client certificate refuses a transport without one; nothing runs", async () => {
    const p = certs();
    const { sim, url } = await res.sim({ tls: serverTls(true) });
    addDevice(sim, "hmac");
    sim.queue(DEV_ID, [REPLACE_SETTING]);
    const g = newGateway(url, "hmac");
    const queued = g.outbox.enqueue(GENERIC_ALERT);
    assert.ok(queued.stored);

    const result = await session({
      gateway: g,
      transport: res.transport({ ca: p.caCert }),
      url,
      scheme: "hmac",
      encoding: "xml",
    });
    assert.equal(result.transportFailure, "tls");
    assertNothingRan(g, sim, queued.id, result);
    assert.deepEqual(sim.clientCertificates(), []);

    // With the certificate, the command still queued runs.
    const retry = await session({
      gateway: g,
      transport: res.transport({ ca: p.caCert, cert: p.clientCert, key: p.clientKey }),
      url,
      scheme: "hmac",
      encoding: "xml",
    });
    assert.ok(retry.ok, retry.reason);
    assert.equal(g.tree.read("./Vendor/Setting")?.value, "42");
    assert.deepEqual(sim.clientCertificates(), [p.clientCommonName]);
  });

  it("a client certificate from another CA is refused too", async () => {
    const p = certs();
    // The simulator trusts only the unrelated CA: the gateway's certificate (test CA) does not chain.
    const { sim, url } = await res.sim({
      tls: { key: p.serverKey, cert: p.serverCert, ca: p.otherCaCert, requestClientCert: true },
    });
    addDevice(sim, "hmac");
    sim.queue(DEV_ID, [REPLACE_SETTING]);
    const g = newGateway(url, "hmac");
    const queued = g.outbox.enqueue(GENERIC_ALERT);
    assert.ok(queued.stored);
    const result = await session({
      gateway: g,
      transport: res.transport({ ca: p.caCert, cert: p.clientCert, key: p.clientKey }),
      url,
      scheme: "hmac",
      encoding: "xml",
    });
    assert.equal(result.transportFailure, "tls");
    assertNothingRan(g, sim, queued.id, result);
  });

  it("keep-alive: two consecutive sessions over one transport share one TLS connection", async () => {
    const p = certs();
    const { sim, url } = await res.sim({ tls: serverTls() });
    addDevice(sim, "hmac");
    const g = newGateway(url, "hmac");
    const transport = res.transport({ ca: p.caCert });
    const getSetting: Command = {
      kind: "Get",
      cmdId: "1",
      items: [{ target: { locUri: "./Vendor/Setting" } }],
    };

    sim.queue(DEV_ID, [REPLACE_SETTING]);
    const first = await session({ gateway: g, transport, url, scheme: "hmac", encoding: "wbxml" });
    assert.ok(first.ok, first.reason);
    sim.queue(DEV_ID, [getSetting]);
    const second = await session({ gateway: g, transport, url, scheme: "hmac", encoding: "wbxml" });
    assert.ok(second.ok, second.reason);
    assert.ok(first.messages + second.messages >= 4, "several requests");
    assert.deepEqual(sim.sessions(DEV_ID)[1]?.commands[0]?.results[0]?.items[0]?.data, {
      kind: "text",
      text: "42",
    });
    assert.equal(sim.connections, 1);

    // The counter does count: another transport is another connection.
    sim.queue(DEV_ID, [getSetting]);
    const third = await session({
      gateway: g,
      transport: res.transport({ ca: p.caCert }),
      url,
      scheme: "hmac",
      encoding: "wbxml",
    });
    assert.ok(third.ok, third.reason);
    assert.equal(sim.connections, 2);
  });
});

function blob(size: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: size }, () => (s = (s * 1103515245 + 12345) & 0x7fffffff) >> 16);
}

function bytesOf(d: Data | undefined, format: string | undefined): Uint8Array {
  assert.ok(d !== undefined);
  if (d.kind === "opaque") return d.bytes;
  assert.equal(d.kind, "text");
  return format === "b64" ? new Uint8Array(Buffer.from(d.text, "base64")) : new TextEncoder().encode(d.text);
}

describe("runManagementSession: large objects over loopback HTTP", function () {
  this.timeout(60_000);
  const res = new Resources();

  afterEach(async () => {
    await res.close();
  });

  for (const encoding of ["xml", "wbxml"] as const) {
    it(`md5/${encoding}: a 1 MB Get and a 1 MB Replace in chunks, 8 KB messages both ways`, async () => {
      // The simulator refuses (413) any request body over 8 KB and advertises MaxMsgSize 8 KB.
      const { sim, url } = await res.sim({ maxBodyBytes: KB8, maxMsgSize: KB8 });
      addDevice(sim, "md5");
      const g = newGateway(url, "md5");
      const gatewayBlob = blob(MB, 3);
      const serverBlob = blob(MB, 5);
      g.tree.write({ path: "./Vendor/Blob", format: "bin", value: gatewayBlob });
      g.tree.write({ path: "./Vendor/Target", format: "bin", value: Uint8Array.from([1]) });
      sim.queue(DEV_ID, [
        { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./Vendor/Blob" } }] },
        {
          kind: "Replace",
          cmdId: "2",
          items: [
            {
              target: { locUri: "./Vendor/Target" },
              meta: { format: encoding === "xml" ? "b64" : "bin" },
              data:
                encoding === "xml"
                  ? { kind: "text", text: Buffer.from(serverBlob).toString("base64") }
                  : { kind: "opaque", bytes: serverBlob },
            },
          ],
        },
      ]);

      // Our MaxMsgSize is also the transport's cap on each response body.
      const result = await session({
        gateway: g,
        transport: res.transport(),
        url,
        scheme: "md5",
        encoding,
        maxMsgSize: KB8,
        maxMessages: 2_000,
      });
      assert.ok(result.ok, result.reason);
      // 1 MB each way in messages of at most 8 KB.
      assert.ok(result.messages > (2 * MB) / KB8, `${result.messages} messages`);
      assert.ok(result.bytesSent > MB && result.bytesReceived > MB);

      const [outcome] = sim.sessions(DEV_ID);
      assert.ok(outcome !== undefined);
      assert.equal(outcome.error, undefined, outcome.error?.reason);
      const [get, replace] = outcome.commands;
      assert.equal(get?.status, 200);
      const item = get.results[0]?.items[0];
      assert.ok(item !== undefined);
      assert.equal(item.moreData, undefined);
      assert.ok(Buffer.from(bytesOf(item.data, item.meta?.format)).equals(gatewayBlob), "the Get's bytes");
      assert.equal(replace?.status, 200);
      const target = g.tree.read("./Vendor/Target");
      assert.equal(target?.format, "bin");
      assert.ok(target.value instanceof Uint8Array);
      assert.ok(Buffer.from(target.value).equals(serverBlob), "the Replace's bytes");
    });
  }
});
