/**
 * The gateway's northbound side against bad input, end to end: the NorthboundService with its real
 * UDP push listener and HTTP transport, the DM server simulator behind a tampering proxy.
 *
 * Garbage and truncated bodies, a wrong content type, a wrong HMAC, forged, replayed, truncated and
 * oversize Pkg#0 datagrams, an oversize server message: each is refused with a clear warn line and
 * the right status (Alert 1223, 401 + Chal, a dropped datagram, a too-large transport failure),
 * nothing in the tree changes (a queued Replace of ./Vendor/Setting is not run), no secret reaches
 * the log, and the service still serves: a following notified session runs and succeeds.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MemoryLogger } from "../../src/core/log.js";
import type { AuthScheme } from "../../src/dm/auth.js";
import { PACKAGE0_VERSION, buildPackage0 } from "../../src/dm/package0.js";
import { HttpTransport } from "../../src/northbound/http-transport.js";
import { NotificationGate, notificationAccountsFromTree } from "../../src/northbound/notification.js";
import { NorthboundService } from "../../src/northbound/service.js";
import type { SessionSummary } from "../../src/northbound/session-runner.js";
import { UdpPushListener } from "../../src/northbound/udp-push-listener.js";
import { APP_ID_SYNCML_DM, encodeWspPush } from "../../src/syncml/wsp-push.js";
import { DmServerSimulator } from "../../src/sim/dm-server.js";
import {
  MIME_DM_NOTIFICATION,
  decodeMessage,
  type Command,
  type StatusCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import {
  NB_CLCRED,
  NB_DEV_ID,
  NB_SERVER_ID,
  NB_SRVCRED,
  nbDeviceSettings,
  nbReplaceSetting,
  nbSessionAccount,
  openNorthboundGateway,
  type NorthboundGateway,
} from "../helpers/northbound.js";
import {
  TamperProxy,
  type ProxiedRequest,
  type ProxyExchange,
  type Tamper,
} from "../helpers/tamper-proxy.js";
import { waitFor } from "../helpers/wait.js";

/** Our MaxMsgSize (and so the cap on each answer body). */
const MAX_MSG_SIZE = 16_384;
const SECRETS = [NB_CLCRED.secret, NB_SRVCRED.secret];
const SYNCML_WBXML = "application/vnd.syncml.dm+wbxml";

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The SyncML message the gateway sent in a request the proxy saw. */
function sent(request: ProxiedRequest | undefined): SyncMLMessage {
  assert.ok(request !== undefined, "the proxy saw the request");
  return decodeMessage(request.body).message;
}

/** The x-syncml-hmac header with the first character of its mac changed (still base64). */
function flipMac(header: string): string {
  const m = /mac=("?)([A-Za-z0-9+/])/.exec(header);
  assert.ok(m !== null, `a mac in ${header}`);
  const at = m.index + 4 + (m[1] ?? "").length;
  const c = header[at];
  return header.slice(0, at) + (c === "A" ? "B" : "A") + header.slice(at + 1);
}

function isAlert(c: Command, code: string): boolean {
  return c.kind === "Alert" && c.data === code;
}

describe("northbound bad input, end to end (service + UDP listener + HTTP through a tampering proxy)", function () {
  this.timeout(30_000);
  let dir: string;
  let proxy: TamperProxy;
  let sim: DmServerSimulator;
  let url: string;
  let transport: HttpTransport;
  let gateway: NorthboundGateway | undefined;
  let service: NorthboundService | undefined;
  let listener: UdpPushListener | undefined;
  let udpPort: number;
  let log: MemoryLogger;
  let sessions: SessionSummary[];

  /** The gateway on `scheme`, its service and its UDP listener; no retry within a test's time. */
  async function startGateway(scheme: AuthScheme): Promise<NorthboundGateway> {
    sim.addDevice(NB_DEV_ID, nbDeviceSettings(scheme));
    const g = openNorthboundGateway(path.join(dir, "gw.db"), url, scheme);
    gateway = g;
    const s = new NorthboundService({
      tree: g.tree,
      outbox: g.outbox,
      devId: NB_DEV_ID,
      servers: [
        { account: nbSessionAccount(url, scheme), encoding: "wbxml", transport, checkInIntervalMs: 0 },
      ],
      maxMsgSize: MAX_MSG_SIZE,
      timeoutMs: 3_000,
      maxMessages: 20,
      // A failed session arms a retry a minute away: only the test's own triggers run sessions.
      backoff: { initialMs: 60_000, jitter: 0 },
      gate: new NotificationGate({ accounts: () => notificationAccountsFromTree(g.tree) }),
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
      log,
      onSession: (_serverId, summary) => {
        sessions.push(summary);
      },
    });
    service = s;
    s.start();
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
    udpPort = (await listener.start()).port;
    return g;
  }

  function setting(): string | Uint8Array | undefined {
    return gateway?.tree.read("./Vendor/Setting")?.value;
  }

  function warnings(): string[] {
    return log.records.filter((r) => r.level === "warn").map((r) => r.text);
  }

  function assertWarn(pattern: RegExp): void {
    assert.ok(
      warnings().some((t) => pattern.test(t)),
      `a warn line matching ${String(pattern)}; got:\n${warnings().join("\n")}`,
    );
  }

  function assertNoSecrets(): void {
    const dump = log.dump();
    for (const secret of SECRETS) assert.ok(!dump.includes(secret), `the log holds the secret ${secret}`);
  }

  async function sendUdp(datagram: Uint8Array): Promise<void> {
    const sock = dgram.createSocket("udp4");
    try {
      await new Promise<void>((resolve, reject) => {
        sock.send(datagram, udpPort, "127.0.0.1", (e) => {
          if (e === null) resolve();
          else reject(e);
        });
      });
    } finally {
      sock.close();
    }
  }

  /**
   * A client-initiated session whose server package is a Replace of ./Vendor/Setting to 99 and
   * whose answers `tamper` may change (by the index of the request they answer, counted from this
   * session's Pkg#1). Returns the session's summary and the requests the proxy saw in it.
   */
  async function badSession(
    tamper: (n: number, exchange: ProxyExchange) => Tamper | undefined,
  ): Promise<{ summary: SessionSummary; requests: readonly ProxiedRequest[] }> {
    const s = service;
    assert.ok(s !== undefined);
    const first = proxy.requests().length;
    const before = sessions.length;
    sim.queue(NB_DEV_ID, [nbReplaceSetting("99", "3")]);
    proxy.hook = (ex) => tamper(ex.request.index - first, ex);
    assert.equal(s.checkIn(NB_SERVER_ID), "started");
    await s.idle();
    proxy.hook = undefined;
    assert.equal(sessions.length, before + 1, "one session ran");
    const summary = sessions[before];
    assert.ok(summary !== undefined);
    assert.equal(summary.ok, false, "the session is a failure");
    assert.equal(setting(), "1", "the server's Replace was not executed");
    return { summary, requests: proxy.requests().slice(first) };
  }

  /** The service still serves: a Pkg#0 opens a session that runs the server's Replace. */
  async function assertStillServing(): Promise<void> {
    const s = service;
    assert.ok(s !== undefined);
    proxy.hook = undefined;
    const before = sessions.length;
    const value = String(1000 + before);
    sim.queue(NB_DEV_ID, [nbReplaceSetting(value)]);
    const note = await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port: udpPort });
    await waitFor("the notified session", () => sessions.length > before);
    await s.idle();
    const summary = sessions[before];
    assert.ok(summary?.ok, `the following session failed: ${summary?.reason ?? "?"}`);
    assert.equal(summary.sessionId, note.sessionId);
    assert.equal(setting(), value, "the good session ran the server's Replace");
    assertNoSecrets();
  }

  /** The gateway's last message of a refused answer: Alert 1223 with Final, nothing else. */
  function assertAbort1223(request: ProxiedRequest | undefined): void {
    const msg = sent(request);
    assert.ok(
      msg.body.commands.some((c) => isAlert(c, "1223")),
      `Alert 1223 sent; got ${msg.body.commands.map((c) => c.kind).join(",")}`,
    );
    assert.ok(msg.body.final, "the abort carries Final");
    assert.ok(
      !msg.body.commands.some((c) => c.kind === "Status" && c.cmd === "Replace"),
      "no Status for the server's Replace: it was never looked at",
    );
  }

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-nb-bad-input-"));
    proxy = new TamperProxy();
    const { origin } = await proxy.start();
    sim = new DmServerSimulator({ publicOrigin: origin });
    const started = await sim.start();
    proxy.target = new URL(started.url).origin;
    url = `${origin}/dm`;
    transport = new HttpTransport();
    log = new MemoryLogger();
    sessions = [];
  });

  afterEach(async () => {
    await service?.stop();
    await listener?.stop();
    transport.close();
    await proxy.stop();
    await sim.stop();
    gateway?.close();
    gateway = undefined;
    service = undefined;
    listener = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the proxy is transparent: a session through it runs, RespURIs point at the proxy", async () => {
    await startGateway("md5");
    await assertStillServing();
    const requests = proxy.requests();
    assert.ok(requests.length >= 2, "Pkg#1 and at least one more message went through the proxy");
    assert.ok(
      requests.slice(1).every((r) => r.path.startsWith("/dm/s/")),
      "later messages follow RespURI",
    );
    assert.equal(sim.sessions(NB_DEV_ID).length, 1);
  });

  for (const [name, body] of [
    ["random bytes", new Uint8Array(randomBytes(700))],
    [
      "an HTML page",
      new TextEncoder().encode(
        "<!DOCTYPE html><html><head><title>Login</title></head><body><p>Sign in to continue</p></body></html>",
      ),
    ],
  ] as const) {
    it(`a garbage body (${name}) with a SyncML content type: Alert 1223, nothing executed`, async () => {
      await startGateway("md5");
      const { summary, requests } = await badSession((n) =>
        n === 0 ? { body, contentType: SYNCML_WBXML } : undefined,
      );
      assert.match(summary.reason ?? "", /undecodable message/);
      assert.equal(summary.undecodable, true);
      assert.equal(requests.length, 2, "Pkg#1, then the abort");
      assertAbort1223(requests[1]);
      assertWarn(/^session failed: the server sent an undecodable message/);
      // Counted for the metrics (dmgw_codec_errors_total{side="northbound"}) and ./DMGW/CodecErrors.
      const codecErrors = (): number | undefined => service?.stats().servers[0]?.codecErrors;
      assert.equal(codecErrors(), 1);
      await assertStillServing();
      assert.equal(codecErrors(), 1, "a good session counts none");
    });
  }

  it("a truncated body (the first half of the real answer): Alert 1223, nothing executed", async () => {
    await startGateway("md5");
    const { summary, requests } = await badSession((n, ex) =>
      n === 0 ? { body: ex.body.subarray(0, Math.floor(ex.body.byteLength / 2)) } : undefined,
    );
    assert.match(summary.reason ?? "", /undecodable message/);
    assert.equal(requests.length, 2, "Pkg#1, then the abort");
    assertAbort1223(requests[1]);
    assertWarn(/^session failed: the server sent an undecodable message/);
    await assertStillServing();
  });

  it("a wrong content type (text/html around the real SyncML body): Alert 1223, nothing executed", async () => {
    await startGateway("md5");
    const { summary, requests } = await badSession((n) =>
      n === 0 ? { contentType: "text/html; charset=utf-8" } : undefined,
    );
    assert.match(summary.reason ?? "", /content type "text\/html; charset=utf-8"/);
    assert.equal(requests.length, 2, "Pkg#1, then the abort");
    assertAbort1223(requests[1]);
    assertWarn(/^the server answered with a content type that is not SyncML DM$/);
    const line = log.records.find((r) => r.text.startsWith("the server answered with a content type"));
    assert.equal(line?.fields["contentType"], "text/html; charset=utf-8");
    assertWarn(/^session failed: the server answered with content type "text\/html/);
    await assertStillServing();
  });

  it("a wrong HMAC (one character of the server's mac flipped): 401 + Chal for the header and every command", async () => {
    await startGateway("hmac");
    let flipped = 0;
    const { summary, requests } = await badSession((_n, ex) => {
      const header = ex.headers["x-syncml-hmac"];
      if (header === undefined) return undefined;
      flipped++;
      return { headers: { ...ex.headers, "x-syncml-hmac": flipMac(header) } };
    });
    assert.ok(flipped >= 1, "the simulator signed its answers and the proxy flipped a mac");
    assert.equal(summary.serverAuthenticated, false);
    // Our answer to the first tampered message: the SyncHdr refused with a Chal, the Replace too.
    const answer = sent(requests[1]).body.commands;
    const statuses = answer.filter((c): c is StatusCommand => c.kind === "Status");
    assert.equal(statuses.length, answer.length, "only Status commands");
    const hdr = statuses.find((c) => c.cmd === "SyncHdr");
    assert.equal(hdr?.data, "401");
    assert.ok(hdr.chal !== undefined, "the SyncHdr Status carries a Chal");
    assert.match(hdr.chal.meta.type ?? "", /auth-MAC/i);
    assert.equal(statuses.find((c) => c.cmd === "Replace")?.data, "401", "the Replace is answered 401");
    // Every later message of ours refuses the server again, and never runs its Replace.
    for (const r of requests.slice(1)) {
      const st = sent(r).body.commands.filter((c): c is StatusCommand => c.kind === "Status");
      assert.equal(st.find((c) => c.cmd === "SyncHdr")?.data, "401");
      assert.ok(!st.some((c) => c.cmd === "Replace" && c.data !== "401"), "the Replace is never run");
    }
    // The simulator saw its credentials refused.
    assert.equal(sim.sessions(NB_DEV_ID)[0]?.error?.code, "server-auth-rejected");
    assertWarn(/^session failed: the server did not authenticate$/);
    await assertStillServing();
  });

  it("a forged Pkg#0 (a digest byte flipped, or keyed with a wrong password): dropped as bad-digest, no session", async () => {
    await startGateway("md5");
    // A genuine datagram the simulator built but did not send; its Pkg#0 (digest first) is the tail.
    const real = await sim.notify(NB_DEV_ID, { deliver: () => undefined });
    const forged = Uint8Array.from(real.datagram);
    const at = forged.length - real.package0.length;
    forged[at] = (forged[at] ?? 0) ^ 0x01;
    await sendUdp(forged);
    await waitFor("the first drop", () => service?.stats().notifications.dropped === 1);
    assertWarn(/^notification dropped \(bad-digest\): /);

    const wrongPassword = encodeWspPush({
      tid: 0,
      contentType: MIME_DM_NOTIFICATION,
      appId: APP_ID_SYNCML_DM,
      body: buildPackage0(
        {
          version: PACKAGE0_VERSION,
          uiMode: "background",
          initiator: "server",
          sessionId: 0x1234,
          serverId: NB_SERVER_ID,
          vendorSpecific: new Uint8Array(0),
        },
        { serverId: NB_SERVER_ID, password: "not-the-secret", nonce: Uint8Array.from([5, 6, 7, 8]) },
      ),
    });
    await sendUdp(wrongPassword);
    await waitFor("the second drop", () => service?.stats().notifications.dropped === 2);
    await sleep(100);
    assert.equal(warnings().filter((t) => t.startsWith("notification dropped (bad-digest)")).length, 2);
    assert.equal(sessions.length, 0, "no session");
    assert.equal(proxy.requests().length, 0, "nothing went to the server");
    assert.equal(listener?.stats().triggers, 0);
    await assertStillServing();
  });

  it("a replayed Pkg#0 (the same datagram twice): one session only, the copy dropped as a replay", async () => {
    await startGateway("md5");
    // Answers held back: the copy surely arrives while the first session runs.
    proxy.hook = () => ({ delayMs: 150 });
    sim.queue(NB_DEV_ID, [nbReplaceSetting("5")]);
    const note = await sim.notify(NB_DEV_ID, { host: "127.0.0.1", port: udpPort });
    await sendUdp(note.datagram);
    await waitFor("the replay drop", () =>
      warnings().some((t) => t.startsWith("notification dropped (replay)")),
    );
    await service?.idle();
    // Once more after the session: stale by now, or still a replay; never a second session.
    await sendUdp(note.datagram);
    await waitFor("the third drop", () => service?.stats().notifications.dropped === 2);
    await service?.idle();
    assert.equal(sessions.length, 1, "one session for one notification");
    assert.ok(sessions[0]?.ok, sessions[0]?.reason);
    assert.equal(sessions[0].sessionId, note.sessionId);
    assert.equal(sim.sessions(NB_DEV_ID).length, 1);
    assert.equal(setting(), "5");
    assert.match(
      warnings()
        .filter((t) => t.startsWith("notification dropped"))
        .join("\n"),
      /\((replay|bad-digest)\)[^\n]*$/,
    );
    await assertStillServing();
  });

  it("truncated, garbage and oversize datagrams: dropped (malformed / not-dm-push / oversize), no session", async () => {
    await startGateway("md5");
    const real = await sim.notify(NB_DEV_ID, { deliver: () => undefined });
    const inputs: [string, Uint8Array, RegExp][] = [
      [
        "truncated",
        real.datagram.subarray(0, Math.floor(real.datagram.length / 2)),
        /^notification dropped \((malformed|not-dm-push)\): /,
      ],
      [
        "garbage text",
        new TextEncoder().encode("GET / HTTP/1.1\r\nHost: gw\r\n\r\n"),
        /^notification dropped \(not-dm-push\): /,
      ],
      [
        "random bytes",
        new Uint8Array(randomBytes(200)),
        /^notification dropped \((not-dm-push|malformed)\): /,
      ],
      [
        "oversize",
        new Uint8Array(1500).fill(0x06),
        /^notification dropped \(oversize\): datagram of 1500 bytes is over 1024$/,
      ],
    ];
    for (const [i, [name, datagram, pattern]] of inputs.entries()) {
      await sendUdp(datagram);
      await waitFor(`the ${name} drop`, () => service?.stats().notifications.dropped === i + 1);
      const line = log.records.filter((r) => r.text.startsWith("notification dropped")).at(-1);
      assert.equal(line?.level, "warn", name);
      assert.match(line.text, pattern, name);
    }
    await sleep(100);
    assert.equal(listener?.stats().oversize, 1);
    assert.equal(sessions.length, 0, "no session");
    assert.equal(proxy.requests().length, 0, "nothing went to the server");
    await assertStillServing();
  });

  for (const streamed of [false, true]) {
    it(`an oversize server message (${streamed ? "streamed, no content-length" : "announced by content-length"}): too-large, nothing executed`, async () => {
      await startGateway("md5");
      const body = new Uint8Array(MAX_MSG_SIZE * 2).fill(0x41);
      const { summary, requests } = await badSession((n) =>
        n === 0 ? { body, contentType: SYNCML_WBXML, omitContentLength: streamed } : undefined,
      );
      assert.equal(summary.transportFailure, "too-large");
      assert.equal(requests.length, 1, "nothing more sent after the refused answer");
      assertWarn(
        streamed
          ? /^session failed: .* sent more than the 16384-byte cap$/
          : /^session failed: .* announced 32768 bytes, over the 16384-byte cap$/,
      );
      const line = log.records.find((r) => r.text.startsWith("session failed"));
      assert.equal(line?.fields["transportFailure"], "too-large");
      await assertStillServing();
    });
  }
});
