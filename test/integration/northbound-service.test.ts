/**
 * The northbound service against the DM server simulator on loopback HTTP: Pkg#0 over UDP and over
 * SMS (the real Modem on a socat pty pair, the modem simulator on the other end), one session at a
 * time per server, backoff with jitter after failures, check-ins, the fallback nonce, the ui-mode
 * policy, headless answers to user-interaction alerts.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import { Modem } from "../../board/modem/modem.js";
import { attachSimulator } from "../../board/modem/sim.js";
import { MemoryLogger } from "../../src/core/log.js";
import { HttpTransport } from "../../src/northbound/http-transport.js";
import { NotificationGate, notificationAccountsFromTree } from "../../src/northbound/notification.js";
import { NorthboundService, type NorthboundServiceOptions } from "../../src/northbound/service.js";
import type { SessionSummary } from "../../src/northbound/session-runner.js";
import { UdpPushListener } from "../../src/northbound/udp-push-listener.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import type { AuthScheme } from "../../src/dm/auth.js";
import type { Command } from "../../src/syncml/index.js";
import {
  NB_DEV_ID,
  NB_GET_MAN,
  NB_SERVER_ID,
  nbDeviceSettings,
  nbGenericAlert,
  nbNonce,
  nbReplaceSetting,
  nbSessionAccount,
  openNorthboundGateway,
  type NorthboundGateway,
} from "../helpers/northbound.js";
import { startPtyPair, type PtyPair } from "../helpers/pty.js";
import { waitFor } from "../helpers/wait.js";

interface Session {
  readonly summary: SessionSummary;
  readonly cause: string;
}

describe("NorthboundService", function () {
  this.timeout(20_000);
  let dir: string;
  let sim: DmServerSimulator;
  let url: string;
  let transport: HttpTransport;
  let gateway: NorthboundGateway | undefined;
  let service: NorthboundService | undefined;
  let listener: UdpPushListener | undefined;
  let log: MemoryLogger;
  let sessions: Session[];

  function makeService(
    scheme: AuthScheme,
    overrides: Partial<NorthboundServiceOptions> & { checkInIntervalMs?: number; serverUri?: string } = {},
  ): NorthboundService {
    gateway ??= openNorthboundGateway(path.join(dir, "gw.db"), url, scheme);
    const g = gateway;
    const { checkInIntervalMs, serverUri, ...rest } = overrides;
    service = new NorthboundService({
      tree: g.tree,
      outbox: g.outbox,
      devId: NB_DEV_ID,
      servers: [
        {
          account: nbSessionAccount(serverUri ?? url, scheme),
          encoding: "wbxml",
          transport,
          checkInIntervalMs: checkInIntervalMs ?? 0,
        },
      ],
      maxMsgSize: 16_384,
      timeoutMs: 3_000,
      maxMessages: 20,
      backoff: { initialMs: 40, factor: 2, maxMs: 1_000, jitter: 0 },
      gate: new NotificationGate({ accounts: () => notificationAccountsFromTree(g.tree) }),
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
      log,
      onSession: (_serverId, summary, cause) => {
        sessions.push({ summary, cause });
      },
      ...rest,
    });
    return service;
  }

  async function listen(s: NorthboundService): Promise<number> {
    const g = gateway;
    assert.ok(g !== undefined);
    listener = new UdpPushListener({
      gate: new NotificationGate({ accounts: () => notificationAccountsFromTree(g.tree) }),
      host: "127.0.0.1",
      port: 0,
      onTrigger: (t, from) => {
        s.notified(t, `udp:${from.address}`);
      },
      onDrop: (d, from) => {
        s.notificationDropped(d.reason, d.detail, `udp:${from.address}`);
      },
    });
    return (await listener.start()).port;
  }

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-nb-service-"));
    sim = new DmServerSimulator();
    ({ url } = await sim.start());
    transport = new HttpTransport();
    log = new MemoryLogger();
    sessions = [];
  });

  afterEach(async () => {
    await service?.stop();
    await listener?.stop();
    transport.close();
    await sim.stop();
    gateway?.close();
    gateway = undefined;
    service = undefined;
    listener = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("a Pkg#0 over UDP opens a server-initiated session with its SessionID; the same Pkg#0 again is a replay", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const s = makeService("md5");
    s.start();
    const port = await listen(s);
    sim.queue(NB_DEV_ID, [NB_GET_MAN, nbReplaceSetting("42")]);
    const sent = await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port });
    // The same datagram again at once (a retransmission, or an attacker replaying it).
    const sock = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      sock.send(sent.datagram, port, "127.0.0.1", (e) => {
        sock.close();
        if (e === null) resolve();
        else reject(e);
      });
    });
    await waitFor("the session", () => sessions.length === 1);
    // Dropped as a replay (inside the window), or as a bad digest if the session already rolled the
    // nonce it was keyed with: either way a warn line, and never a second session.
    await waitFor("the drop", () =>
      log.records.some(
        (r) => r.level === "warn" && /notification dropped \((replay|bad-digest)\)/.test(r.text),
      ),
    );
    await s.idle();
    assert.equal(sessions.length, 1, "one session per notified session id");
    const [first] = sessions;
    assert.ok(first?.summary.ok, first?.summary.reason);
    assert.equal(first.cause, "notification");
    assert.equal(first.summary.sessionId, sent.sessionId);
    const outcome = sim.sessions(NB_DEV_ID)[0];
    assert.equal(outcome?.initiatedBy, "server");
    assert.equal(outcome.sessionId, sent.sessionId);
    assert.equal(outcome.commands[1]?.status, 200);
    assert.equal(gateway?.tree.read("./Vendor/Setting")?.value, "42");
  });

  it("a Pkg#0 through the modem (SMS over a socat pty) opens the session", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("hmac"));
    const s = makeService("hmac");
    s.start();
    let pty: PtyPair | undefined;
    let simLink: ByteLink | undefined;
    let modem: Modem | undefined;
    try {
      pty = await startPtyPair();
      simLink = await openSerialLink({ path: pty.b });
      const { sim: modemSim } = attachSimulator(simLink);
      modem = new Modem({
        path: pty.a,
        onPush: (push) => {
          s.acceptPush(push.data, `sms:${push.originator}`);
        },
      });
      await modem.start();
      sim.queue(NB_DEV_ID, [NB_GET_MAN]);
      // 40-byte parts force a concatenated SMS.
      const sent = await sim.notify(NB_DEV_ID, {
        deliver: (datagram) => {
          modemSim.injectWapPush(datagram, { maxPartBytes: 40 });
        },
      });
      await waitFor("the session", () => sessions.length === 1, 10_000);
      await s.idle();
      assert.ok(sessions[0]?.summary.ok, sessions[0]?.summary.reason);
      assert.equal(sessions[0].summary.sessionId, sent.sessionId);
      assert.equal(sim.sessions(NB_DEV_ID)[0]?.initiatedBy, "server");
      assert.ok(modem.counters.pushes >= 1);
      await waitFor("the SMS parts deleted", () => modemSim.stored().length === 0);
    } finally {
      await modem?.stop();
      await simLink?.close();
      await pty?.stop();
    }
  });

  it("runs one session at a time per server: a trigger during a session waits and runs after it", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const s = makeService("md5");
    s.start();
    sim.queue(NB_DEV_ID, [NB_GET_MAN]);
    assert.equal(s.checkIn(NB_SERVER_ID), "started");
    assert.equal(s.checkIn(NB_SERVER_ID), "queued");
    gateway?.outbox.enqueue(nbGenericAlert("while-running"));
    s.alertsQueued(NB_SERVER_ID);
    await s.idle();
    assert.equal(sessions.length, 2, "the waiting triggers ran as one more session");
    assert.ok(sessions.every((x) => x.summary.ok));
    assert.equal(sim.alerts().filter((a) => a.alert.correlator === "while-running").length, 1);
    assert.equal(gateway?.outbox.stats().count, 0);
  });

  it("backs off exponentially after failures, then recovers when the server is back", async () => {
    // A port with nothing listening: every session fails with a network error.
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) =>
      closed.close(() => {
        r();
      }),
    );
    const s = makeService("md5", { serverUri: `http://127.0.0.1:${deadPort}/dm` });
    gateway?.outbox.enqueue(nbGenericAlert("while-down"));
    const delays: number[] = [];
    s.start(); // pending alerts open the first session
    await waitFor("four failures", () => {
      const st = s.stats().servers[0];
      if (st?.retryInMs !== undefined && delays[delays.length - 1] !== st.retryInMs)
        delays.push(st.retryInMs);
      return sessions.length >= 4;
    });
    assert.ok(sessions.every((x) => !x.summary.ok && x.summary.transportFailure === "network"));
    assert.deepEqual(sessions.map((x) => x.cause).slice(0, 3), ["alerts", "retry", "retry"]);
    assert.deepEqual(delays.slice(0, 3), [40, 80, 160], "doubling from initialMs, no jitter configured");
    // Alerts during a backoff wait for the retry instead of opening a session at once.
    const before = sessions.length;
    s.alertsQueued(NB_SERVER_ID);
    assert.equal(sessions.length, before);
    assert.equal(gateway?.outbox.stats().count, 1, "the alert is kept while the server is down");
    assert.ok(log.records.some((r) => r.level === "warn" && /session failed/.test(r.text)));
  });

  it("a Pkg#0 during a backoff runs at once, and success resets the failure count", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const s = makeService("md5", { backoff: { initialMs: 60_000, jitter: 0 } });
    const port = await listen(s);
    // The first session fails: the simulator holds the wrong client secret for the device.
    const settings = nbDeviceSettings("md5", { clientAuth: { scheme: "md5", name: "gw", secret: "wrong" } });
    sim.addDevice(NB_DEV_ID, settings);
    s.checkIn(NB_SERVER_ID);
    await s.idle();
    assert.equal(sessions.length, 1);
    assert.ok(!sessions[0]?.summary.ok);
    assert.equal(s.stats().servers[0]?.state, "backoff");
    assert.equal(s.stats().servers[0]?.retryInMs, 60_000);
    // The server fixes the account and notifies: the session runs now, not in a minute.
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    sim.queue(NB_DEV_ID, [NB_GET_MAN]);
    await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port });
    await waitFor("the notified session", () => sessions.length === 2);
    await s.idle();
    assert.ok(sessions[1]?.summary.ok, sessions[1]?.summary.reason);
    const st = s.stats().servers[0];
    assert.equal(st?.consecutiveFailures, 0);
    assert.equal(st.state, "idle");
  });

  it("checks in periodically with client-initiated sessions", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("basic"));
    const s = makeService("basic", { checkInIntervalMs: 100 });
    s.start();
    await waitFor("three check-ins", () => sessions.length >= 3);
    assert.ok(sessions.every((x) => x.summary.ok && x.cause === "check-in"));
    assert.ok(sim.sessions(NB_DEV_ID).every((o) => o.initiatedBy === "client"));
  });

  it("a Pkg#0 keyed with the fallback nonce: the session authenticates on it and both nonces are re-issued", async () => {
    const zero = new Uint8Array(4);
    // The server lost its nonces: it keys Pkg#0 and its credentials with 0x00000000, and expects ours on it.
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5", { clientNonce: zero, serverNonce: zero }));
    const s = makeService("md5");
    const port = await listen(s);
    sim.queue(NB_DEV_ID, [NB_GET_MAN]);
    await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port });
    await waitFor("the session", () => sessions.length === 1);
    await s.idle();
    assert.ok(sessions[0]?.summary.ok, sessions[0]?.summary.reason);
    assert.ok(sessions[0].summary.serverAuthenticated);
    const g = gateway;
    assert.ok(g !== undefined);
    const held = sim.nonces(NB_DEV_ID);
    assert.ok(held !== undefined);
    assert.notDeepEqual(held.client, zero, "the server issued a fresh client nonce");
    assert.deepEqual(nbNonce(g.tree, "ClientSide"), held.client);
    assert.deepEqual(nbNonce(g.tree, "ServerSide"), held.server);
    assert.ok(log.records.some((r) => r.level === "warn" && /fallback nonce/.test(r.text)));
    assert.ok(!log.dump().includes("00000000"), "the nonce bytes are not logged");
  });

  it("ui-mode user-interaction: refused by policy without a session, or run by default", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const s = makeService("md5", { userInteractionNotifications: "refuse" });
    const port = await listen(s);
    await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port }, { uiMode: "user-interaction" });
    await waitFor("the refusal", () => s.stats().notifications.refused === 1);
    await s.idle();
    assert.equal(sessions.length, 0);
    assert.equal(sim.sessions(NB_DEV_ID).length, 0);
    await s.stop();
    await listener?.stop();

    const t = makeService("md5");
    const port2 = await listen(t);
    await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port: port2 }, { uiMode: "user-interaction" });
    await waitFor("the session", () => sessions.length === 1);
    await t.idle();
    assert.ok(sessions[0]?.summary.ok, sessions[0]?.summary.reason);
  });

  it("answers the server's user-interaction alerts with the headless policy", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const s = makeService("md5", { userInteraction: { confirm: "default", input: "default" } });
    const text = (t: string) => ({ data: { kind: "text" as const, text: t } });
    const prompts: Command[] = [
      { kind: "Alert", cmdId: "1", data: "1101", items: [text("DR=1&MAXDT=30"), text("Reboot now?")] },
      { kind: "Alert", cmdId: "2", data: "1102", items: [text("MAXDT=30"), text("Site name?")] },
      { kind: "Alert", cmdId: "3", data: "1103", items: [text("DR=2"), text("Band?"), text("a"), text("b")] },
    ];
    sim.queue(NB_DEV_ID, prompts);
    s.checkIn(NB_SERVER_ID);
    await s.idle();
    assert.ok(sessions[0]?.summary.ok, sessions[0]?.summary.reason);
    const records = sim.sessions(NB_DEV_ID)[0]?.commands ?? [];
    assert.deepEqual(
      records.map((r) => r.status),
      [200, 408, 200],
    );
    assert.ok(log.records.some((r) => /user-interaction alert headless/.test(r.text)));
  });

  it("stop() aborts between messages, clears timers and refuses new triggers", async () => {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings("md5"));
    const s = makeService("md5", { checkInIntervalMs: 50 });
    s.start();
    await waitFor("a check-in", () => sessions.length >= 1);
    await s.stop();
    const count = sessions.length;
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(sessions.length, count, "no check-in after stop");
    assert.equal(s.checkIn(NB_SERVER_ID), "stopped");
    assert.equal(s.stats().servers[0]?.state, "idle");
  });
});
