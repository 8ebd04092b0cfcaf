import assert from "node:assert/strict";
import dgram from "node:dgram";
import { buildPackage0 } from "../../src/dm/package0.js";
import type { DmAccountConfig } from "../../src/mo/dmacc.js";
import { standardMoPlugins } from "../../src/mo/standard.js";
import {
  NotificationGate,
  notificationAccountsFromTree,
  type NotificationTrigger,
} from "../../src/northbound/notification.js";
import {
  UdpPushListener,
  type ListenerDrop,
  type UdpPushListenerOptions,
} from "../../src/northbound/udp-push-listener.js";
import { APP_ID_SYNCML_DM, encodeWspPush } from "../../src/syncml/wsp-push.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import { MIME_DM_NOTIFICATION } from "../../src/syncml/constants.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";

// The UDP push listener on loopback, fed by the DM server simulator's real notify(); the gate reads
// its accounts from a real DMAcc in an in-memory tree.

const DEV_ID = "IMEI:490154203237518";
const CLCRED = { name: "gw", secret: "client-secret" };
const SRVCRED = { name: "dmsrv", secret: "server-secret" };
const SERVER_NONCE = Uint8Array.from([5, 6, 7, 8]);
const HOST = "127.0.0.1";

const ACCOUNT: DmAccountConfig = {
  name: "dmsrv",
  serverId: SRVCRED.name,
  addr: "http://127.0.0.1:1/dm",
  clientCred: { type: "DIGEST", ...CLCRED },
  serverCred: { type: "DIGEST", ...SRVCRED, nonce: Buffer.from(SERVER_NONCE).toString("base64") },
};

function gatewayTree(): DmTree {
  const tree = new DmTree(Store.open(":memory:"), {
    plugins: standardMoPlugins(
      {
        devId: DEV_ID,
        man: "ACME",
        mod: "GW-1",
        dmV: "1.2",
        lang: "en-US",
        oem: "ACME",
        fwV: "1.0",
        swV: "0.1.0",
        hwV: "A",
        uriLimits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 },
      },
      [ACCOUNT],
    ),
  });
  tree.seed();
  return tree;
}

/** Resolves once `n` events have arrived (or rejects after `ms`, naming what it waited for). */
function waitFor(list: readonly unknown[], n: number, what: string, ms = 2000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (list.length >= n) resolve();
      else if (Date.now() - started > ms)
        reject(new Error(`timed out waiting for ${n} ${what}, got ${list.length}`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

async function sendRaw(datagram: Uint8Array, port: number): Promise<void> {
  const socket = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.send(datagram, port, HOST, (e) => {
        if (e === null) resolve();
        else reject(e);
      });
    });
  } finally {
    socket.close();
  }
}

describe("notificationAccountsFromTree", () => {
  it("reads the SRVCRED of the DMAcc account from the tree", () => {
    const [account, ...rest] = notificationAccountsFromTree(gatewayTree());
    assert.equal(rest.length, 0);
    assert.deepEqual(account, {
      serverId: SRVCRED.name,
      names: [SRVCRED.name],
      password: SRVCRED.secret,
      nonce: SERVER_NONCE,
    });
  });
});

describe("UdpPushListener", () => {
  let sim: DmServerSimulator;
  let listener: UdpPushListener;
  let port: number;
  let triggers: NotificationTrigger[];
  let drops: ListenerDrop[];
  let errors: unknown[];

  async function startListener(extra: Partial<UdpPushListenerOptions> = {}): Promise<void> {
    const tree = gatewayTree();
    listener = new UdpPushListener({
      gate: new NotificationGate({ accounts: () => notificationAccountsFromTree(tree) }),
      host: HOST,
      port: 0,
      onTrigger: (t) => {
        triggers.push(t);
      },
      onDrop: (d) => {
        drops.push(d);
      },
      onCallbackError: (e) => {
        errors.push(e);
      },
      ...extra,
    });
    ({ port } = await listener.start());
  }

  beforeEach(async () => {
    triggers = [];
    drops = [];
    errors = [];
    // Deterministic randomness: each notify gets a new session id (random ones could collide).
    let counter = 0;
    sim = new DmServerSimulator({
      randomBytes: (size) => Uint8Array.from({ length: size }, (_, i) => (i === size - 1 ? ++counter : 0)),
    });
    await sim.start();
    sim.addDevice(DEV_ID, {
      clientAuth: { scheme: "md5", ...CLCRED },
      serverAuth: { scheme: "md5", ...SRVCRED },
      serverNonce: SERVER_NONCE,
    });
  });

  afterEach(async () => {
    await listener.stop();
    await sim.stop();
  });

  it("binds port 0 and reports the port it got", async () => {
    await startListener();
    assert.ok(port > 0);
    assert.deepEqual(await listener.start(), { port });
  });

  it("fires onTrigger once for the simulator's notify, and drops the same datagram again as replay", async () => {
    await startListener();
    const sent = await sim.notify(
      DEV_ID,
      { host: HOST, port },
      { uiMode: "informative", initiator: "server" },
    );
    await waitFor(triggers, 1, "triggers");
    const [t] = triggers;
    assert.equal(t?.sessionId, sent.sessionId);
    assert.equal(t.serverId, SRVCRED.name);
    assert.equal(t.uiMode, "informative");
    assert.equal(t.initiator, "server");
    assert.equal(t.nonceUsed, "stored");

    await sendRaw(sent.datagram, port);
    await waitFor(drops, 1, "drops");
    assert.equal(drops[0]?.reason, "replay");
    assert.equal(triggers.length, 1);
    assert.deepEqual(listener.stats(), {
      received: 2,
      oversize: 0,
      triggers: 1,
      dropped: 1,
      callbackErrors: 0,
      socketErrors: 0,
    });
  });

  it("reports a fallback nonce when the server keyed Pkg#0 with 0x00000000 instead of the stored nonce", async () => {
    sim.addDevice(DEV_ID, {
      clientAuth: { scheme: "md5", ...CLCRED },
      serverAuth: { scheme: "md5", ...SRVCRED },
      // no serverNonce: the simulator uses 4 zero bytes, the DMAcc stores 05060708
    });
    await startListener();
    const sent = await sim.notify(DEV_ID, { host: HOST, port });
    await waitFor(triggers, 1, "triggers");
    assert.equal(triggers[0]?.sessionId, sent.sessionId);
    assert.equal(triggers[0].nonceUsed, "zero-bytes");
    assert.deepEqual(triggers[0].nonceBytes, new Uint8Array(4));
  });

  it("drops a forged notification (bad digest) and triggers on none", async () => {
    await startListener();
    const forged = encodeWspPush({
      tid: 0,
      contentType: MIME_DM_NOTIFICATION,
      appId: APP_ID_SYNCML_DM,
      body: buildPackage0(
        {
          version: 11,
          uiMode: "background",
          initiator: "server",
          sessionId: 0x42,
          serverId: SRVCRED.name,
          vendorSpecific: new Uint8Array(0),
        },
        { serverId: SRVCRED.name, password: "guessed", nonce: SERVER_NONCE },
      ),
    });
    await sendRaw(forged, port);
    await waitFor(drops, 1, "drops");
    assert.equal(drops[0]?.reason, "bad-digest");
    assert.equal(triggers.length, 0);
  });

  it("drops garbage and oversize datagrams and keeps serving", async () => {
    await startListener({ maxDatagramBytes: 64 });
    await sendRaw(Uint8Array.from([1, 2, 3]), port);
    await sendRaw(new Uint8Array(65), port);
    await waitFor(drops, 2, "drops");
    assert.deepEqual(drops.map((d) => d.reason).sort(), ["not-dm-push", "oversize"]);
    const sent = await sim.notify(DEV_ID, { host: HOST, port });
    await waitFor(triggers, 1, "triggers");
    assert.equal(triggers[0]?.sessionId, sent.sessionId);
  });

  it("isolates a throwing or rejecting onTrigger: counted, reported, not fatal", async () => {
    let calls = 0;
    await startListener({
      onTrigger: () => {
        calls++;
        if (calls === 1) throw new Error("consumer bug");
        return Promise.reject(new Error("async consumer bug"));
      },
    });
    await sim.notify(DEV_ID, { host: HOST, port });
    await sim.notify(DEV_ID, { host: HOST, port });
    await waitFor(errors, 2, "callback errors");
    assert.equal(calls, 2);
    assert.equal(listener.stats().callbackErrors, 2);
    assert.deepEqual(
      errors.map((e) => (e instanceof Error ? e.message : String(e))),
      ["consumer bug", "async consumer bug"],
    );
  });

  it("stop() is idempotent and start() after it is refused", async () => {
    await startListener();
    await Promise.all([listener.stop(), listener.stop()]);
    await listener.stop();
    await assert.rejects(listener.start(), /stopped/);
  });

  it("start() rejects when the port is taken, and stop() after that is harmless", async () => {
    await startListener();
    const second = new UdpPushListener({
      gate: new NotificationGate({ accounts: () => [] }),
      host: HOST,
      port,
      onTrigger: () => undefined,
    });
    await assert.rejects(second.start(), /EADDRINUSE/);
    await second.stop();
  });
});
