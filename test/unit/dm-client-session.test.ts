import assert from "node:assert/strict";
import {
  ClientSession,
  type ClientAccount,
  type ClientStep,
  type OutgoingMessage,
} from "../../src/dm/client-session.js";
import {
  buildChal,
  buildCred,
  decodeNonce,
  encodeNonce,
  formatHmacHeader,
  hmacMac,
  HMAC_HEADER,
} from "../../src/dm/auth.js";
import {
  decodeMessage,
  encodeMessage,
  type Command,
  type Cred,
  type StatusCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import type { DmTree } from "../../src/tree/tree.js";
import { seededGatewayTree } from "../helpers/gateway.js";

// The server side of these tests is written from protocol.md 3.1 and 3.7 by hand, message by
// message: it is not the project's server session, so the two cannot share a misreading.

const SERVER_URI = "https://dm.example.com/dm";
const DEV_ID = "IMEI:356938035643809";
const CLIENT = { name: "gw-user", secret: "client-secret" } as const;
const SERVER = { name: "dmsrv", secret: "server-secret" } as const;
const enc = new TextEncoder();

function makeTree(): DmTree {
  return seededGatewayTree(DEV_ID);
}

function bytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text, "utf8"));
}

function session(
  tree: DmTree,
  scheme: "md5" | "hmac" | "basic",
  overrides: Partial<{
    maxMsgSize: number;
    alerts: ConstructorParameters<typeof ClientSession>[0]["alerts"];
  }> = {},
): ClientSession {
  const account: ClientAccount = {
    serverId: "dmsrv",
    serverUri: SERVER_URI,
    client: { scheme, ...CLIENT },
    server: { scheme, ...SERVER },
  };
  let counter = 0;
  return new ClientSession({
    tree,
    account,
    nonces: { client: bytes("client-nonce-1"), server: bytes("server-nonce-1") },
    devId: DEV_ID,
    initiator: "server",
    sessionId: "AF",
    encoding: "xml",
    maxMsgSize: 16_384,
    randomBytes: (n) => Uint8Array.from({ length: n }, () => ++counter & 0xff),
    ...(overrides.maxMsgSize !== undefined && { maxMsgSize: overrides.maxMsgSize }),
    ...(overrides.alerts !== undefined && { alerts: overrides.alerts }),
  });
}

function sent(step: ClientStep): { out: OutgoingMessage; msg: SyncMLMessage } {
  assert.equal(step.kind, "send", `expected a message, got ${JSON.stringify(step)}`);
  const out: OutgoingMessage = step;
  return { out, msg: decodeMessage(out.body).message };
}

interface ServerMessage {
  msgId: string;
  cred?: Cred;
  maxMsgSize?: string;
  commands: Command[];
  final?: boolean;
}

/** A server message, as protocol.md 3.1/3.2 describe Package 2/4. */
function server(m: ServerMessage): Uint8Array {
  const msg: SyncMLMessage = {
    version: "1.2",
    hdr: {
      verDTD: "1.2",
      verProto: "DM/1.2",
      sessionId: "AF",
      msgId: m.msgId,
      target: { locUri: DEV_ID },
      source: { locUri: SERVER_URI },
      ...(m.cred !== undefined && { cred: m.cred }),
      ...(m.maxMsgSize !== undefined && { meta: { maxMsgSize: m.maxMsgSize } }),
    },
    body: { commands: m.commands, final: m.final ?? true },
  };
  return encodeMessage(msg, "xml");
}

function hdrStatus(cmdId: string, msgRef: string, code: number, chal?: StatusCommand["chal"]): StatusCommand {
  return {
    kind: "Status",
    cmdId,
    msgRef,
    cmdRef: "0",
    cmd: "SyncHdr",
    targetRefs: [SERVER_URI],
    sourceRefs: [DEV_ID],
    ...(chal !== undefined && { chal }),
    data: String(code),
    items: [],
  };
}

function statuses(msg: SyncMLMessage): StatusCommand[] {
  return msg.body.commands.filter((c): c is StatusCommand => c.kind === "Status");
}

describe("ClientSession (OMA DM 1.2 client, protocol.md 3.1 and 3.7)", () => {
  it("sends Package 1: Alert 1200, the DevInfo Replace, MD5 Cred on the stored nonce, MaxMsgSize, Final", () => {
    const { out, msg } = sent(session(makeTree(), "md5").start());
    assert.equal(out.url, SERVER_URI);
    assert.equal(out.contentType, "application/vnd.syncml.dm+xml");
    assert.equal(msg.hdr.sessionId, "AF");
    assert.equal(msg.hdr.msgId, "1");
    assert.equal(msg.hdr.source.locUri, DEV_ID);
    assert.equal(msg.hdr.source.locName, CLIENT.name);
    assert.deepEqual(msg.hdr.cred, buildCred("md5", CLIENT, bytes("client-nonce-1")));
    assert.equal(msg.hdr.meta?.maxMsgSize, "16384");
    const [alert, replace] = msg.body.commands;
    assert.ok(alert?.kind === "Alert" && alert.data === "1200");
    assert.ok(replace?.kind === "Replace");
    assert.deepEqual(
      replace.items.map((i) => [i.source?.locUri, i.data]),
      [
        ["./DevInfo/DevId", { kind: "text", text: DEV_ID }],
        ["./DevInfo/DmV", { kind: "text", text: "1.2" }],
        ["./DevInfo/Lang", { kind: "text", text: "en-US" }],
        ["./DevInfo/Man", { kind: "text", text: "ACME" }],
        ["./DevInfo/Mod", { kind: "text", text: "GW-1" }],
      ],
    );
    assert.equal(msg.body.final, true);
  });

  it("runs an authenticated server's commands, answers Status and Results, and ends on a Final-only package", () => {
    const tree = makeTree();
    const s = session(tree, "md5");
    s.start();
    const nextClientNonce = bytes("client-nonce-2");
    const pkg2 = server({
      msgId: "1",
      cred: buildCred("md5", SERVER, bytes("server-nonce-1")),
      commands: [
        hdrStatus("1", "1", 212, buildChal("md5", nextClientNonce)),
        { kind: "Get", cmdId: "2", items: [{ target: { locUri: "./DevInfo/Man" } }] },
        {
          kind: "Replace",
          cmdId: "3",
          items: [{ target: { locUri: "./DevDetail/FwV" }, data: { kind: "text", text: "9" } }],
        },
      ],
    });
    const { msg } = sent(s.receive(pkg2, "application/vnd.syncml.dm+xml", {}));
    const st = statuses(msg);
    assert.deepEqual(
      st.map((x) => [x.cmdRef, x.cmd, x.data]),
      [
        ["0", "SyncHdr", "212"],
        ["2", "Get", "200"],
        ["3", "Replace", "405"],
      ],
    );
    const chal = st[0]?.chal;
    assert.ok(chal !== undefined, "212 carries the nonce for the server's next session");
    assert.equal(msg.hdr.cred, undefined, "no Cred once the server answered 212");
    const results = msg.body.commands.find((c) => c.kind === "Results");
    assert.ok(results?.kind === "Results");
    assert.deepEqual(results.items[0]?.data, { kind: "text", text: "ACME" });
    assert.equal(msg.body.final, true);

    const end = s.receive(server({ msgId: "2", commands: [hdrStatus("1", "2", 200)] }), "", {});
    assert.equal(end.kind, "done");
    assert.ok(end.ok);
    assert.ok(end.serverAuthenticated);
    // The server's NextNonce is persisted (it came from an authenticated server) and the nonce we
    // issued in our Chal replaces the stored server nonce.
    assert.deepEqual(end.nonces.client, nextClientNonce);
    assert.notDeepEqual(end.nonces.server, bytes("server-nonce-1"));
    assert.deepEqual(decodeNonce(chal.meta.nextNonce ?? ""), end.nonces.server);
  });

  it("re-sends Package 1 with credentials on the challenged nonce after a 401 + Chal", () => {
    const s = session(makeTree(), "md5");
    s.start();
    const fresh = bytes("fresh-nonce");
    const { msg } = sent(
      s.receive(
        server({ msgId: "1", commands: [hdrStatus("1", "1", 401, buildChal("md5", fresh))] }),
        "",
        {},
      ),
    );
    assert.equal(msg.hdr.msgId, "2");
    assert.deepEqual(msg.hdr.cred, buildCred("md5", CLIENT, fresh));
    assert.ok(
      msg.body.commands.some((c) => c.kind === "Alert" && c.data === "1200"),
      "Package 1 again",
    );
  });

  it("never executes the commands of a server that did not authenticate: 401 + Chal, the tree unchanged", () => {
    const tree = makeTree();
    const s = session(tree, "md5");
    s.start();
    const pkg2 = server({
      msgId: "1",
      cred: buildCred("md5", { name: SERVER.name, secret: "wrong" }, bytes("server-nonce-1")),
      commands: [
        hdrStatus("1", "1", 212),
        {
          kind: "Add",
          cmdId: "2",
          items: [{ target: { locUri: "./Evil" }, data: { kind: "text", text: "x" } }],
        },
      ],
    });
    const { msg } = sent(s.receive(pkg2, "", {}));
    const st = statuses(msg);
    const [first] = st;
    assert.equal(first?.data, "401");
    assert.notEqual(first.chal, undefined);
    assert.deepEqual(
      st.slice(1).map((x) => [x.cmdRef, x.data]),
      [["2", "401"]],
    );
    assert.equal(tree.read("./Evil"), undefined);
  });

  it("answers a server without credentials 407", () => {
    const s = session(makeTree(), "md5");
    s.start();
    const { msg } = sent(
      s.receive(
        server({
          msgId: "1",
          commands: [
            hdrStatus("1", "1", 212),
            { kind: "Get", cmdId: "2", items: [{ target: { locUri: "./DevInfo" } }] },
          ],
        }),
        "",
        {},
      ),
    );
    assert.equal(statuses(msg)[0]?.data, "407");
  });

  it("authenticates both ways with HMAC over the exact body bytes, with a fresh NextNonce each message", () => {
    const tree = makeTree();
    const s = session(tree, "hmac");
    const first = sent(s.start());
    const header = first.out.headers[HMAC_HEADER];
    assert.equal(
      header,
      formatHmacHeader({
        username: CLIENT.name,
        mac: hmacMac(CLIENT, bytes("client-nonce-1"), first.out.body),
      }),
    );
    assert.equal(first.msg.hdr.cred, undefined, "HMAC never travels in Cred");
    const body = server({
      msgId: "1",
      commands: [
        hdrStatus("1", "1", 200, buildChal("hmac", bytes("n2"))),
        { kind: "Get", cmdId: "2", items: [{ target: { locUri: "./DevInfo/Mod" } }] },
      ],
    });
    const mac = formatHmacHeader({
      username: SERVER.name,
      mac: hmacMac(SERVER, bytes("server-nonce-1"), body),
    });
    const { out, msg } = sent(s.receive(body, "", { [HMAC_HEADER]: mac }));
    const hdr = statuses(msg)[0];
    assert.equal(hdr?.data, "200");
    assert.ok(
      hdr.chal?.meta.nextNonce !== undefined &&
        hdr.chal.meta.nextNonce !== encodeNonce(bytes("server-nonce-1")),
    );
    assert.equal(
      out.headers[HMAC_HEADER],
      formatHmacHeader({ username: CLIENT.name, mac: hmacMac(CLIENT, bytes("n2"), out.body) }),
    );
    // A tampered body fails the MAC: the next message is refused.
    const bad = server({
      msgId: "2",
      commands: [
        hdrStatus("1", "2", 200),
        { kind: "Get", cmdId: "2", items: [{ target: { locUri: "./DevInfo/Mod" } }] },
      ],
    });
    const refused = sent(s.receive(bad, "", { [HMAC_HEADER]: mac }));
    assert.equal(statuses(refused.msg)[0]?.data, "401");
  });

  it("sends Generic Alerts in Package 1 and reports those the server answered 200/202", () => {
    const s = session(makeTree(), "basic", {
      alerts: [
        {
          id: "a1",
          code: 1226,
          correlator: "corr-7",
          items: [
            {
              source: { locUri: "./GwMO/Fanout/j1" },
              meta: { type: "urn:oma:at:oma-gwmo:completionstatus:1.0", format: "chr" },
              data: { kind: "text", text: "./GwMO/Fanout/j1/Results" },
            },
          ],
        },
        {
          id: "a2",
          code: 1226,
          items: [{ meta: { type: "x", format: "chr" }, data: { kind: "text", text: "y" } }],
        },
      ],
    });
    const { msg } = sent(s.start());
    const alerts = msg.body.commands.filter((c) => c.kind === "Alert" && c.data === "1226");
    assert.equal(alerts.length, 2);
    assert.ok(alerts[0]?.kind === "Alert" && alerts[0].correlator === "corr-7");
    const reply = server({
      msgId: "1",
      cred: buildCred("basic", SERVER),
      commands: [
        hdrStatus("1", "1", 212),
        {
          kind: "Status",
          cmdId: "2",
          msgRef: "1",
          cmdRef: alerts[0].cmdId,
          cmd: "Alert",
          targetRefs: [],
          sourceRefs: [],
          data: "200",
          items: [],
        },
        {
          kind: "Status",
          cmdId: "3",
          msgRef: "1",
          cmdRef: alerts[1]?.cmdId ?? "",
          cmd: "Alert",
          targetRefs: [],
          sourceRefs: [],
          data: "500",
          items: [],
        },
      ],
    });
    const end = s.receive(reply, "", {});
    assert.equal(end.kind, "done");
    assert.deepEqual(end.alertsAcknowledged, ["a1"]);
  });

  it("splits its package to the server's MaxMsgSize and sends the rest when asked with Alert 1222", () => {
    const tree = makeTree();
    const s = session(tree, "basic");
    s.start();
    const gets: Command[] = Array.from({ length: 30 }, (_, i) => ({
      kind: "Get" as const,
      cmdId: String(i + 2),
      items: [{ target: { locUri: "./DevInfo/Man" } }],
    }));
    const pkg2 = server({
      msgId: "1",
      cred: buildCred("basic", SERVER),
      maxMsgSize: "2000",
      commands: [hdrStatus("1", "1", 212), ...gets],
    });
    const first = sent(s.receive(pkg2, "", {}));
    assert.ok(first.out.body.length <= 2000, `first message is ${first.out.body.length} bytes`);
    assert.equal(first.msg.body.final, false, "more of the package follows: no Final");
    let answered = first.msg.body.commands.filter((c) => c.kind === "Results").length;
    let msgId = 2;
    let step = s.receive(
      server({
        msgId: String(msgId),
        commands: [
          hdrStatus("1", String(msgId), 200),
          { kind: "Alert", cmdId: "2", data: "1222", items: [] },
        ],
        final: false,
      }),
      "",
      {},
    );
    for (let guard = 0; step.kind === "send"; guard++) {
      assert.ok(guard < 40, "the package never completed");
      const m = decodeMessage(step.body).message;
      assert.ok(step.body.length <= 2000);
      answered += m.body.commands.filter((c) => c.kind === "Results").length;
      if (m.body.final) break;
      msgId++;
      step = s.receive(
        server({
          msgId: String(msgId),
          commands: [
            hdrStatus("1", String(msgId), 200),
            { kind: "Alert", cmdId: "2", data: "1222", items: [] },
          ],
          final: false,
        }),
        "",
        {},
      );
    }
    assert.equal(answered, 30, "every Get answered exactly once across the messages");
  });

  it("aborts (Alert 1223, Final, last) on an undecodable server message and on a changed SessionID", () => {
    const abortOf = (step: ClientStep): SyncMLMessage => {
      assert.ok(step.kind === "send" && step.last === true, "the step is our last message");
      return decodeMessage(step.body).message;
    };
    const s = session(makeTree(), "basic");
    s.start();
    const abort = abortOf(s.receive(enc.encode("<html>not DM</html>"), "text/html", {}));
    assert.deepEqual(
      abort.body.commands.map((c) => [c.kind, c.kind === "Alert" ? c.data : ""]),
      [["Alert", "1223"]],
    );
    assert.equal(abort.body.final, true);
    assert.equal(abort.hdr.msgId, "2");
    const end = s.outcome;
    assert.ok(end !== undefined && !end.ok && /undecodable/.test(end.reason ?? ""));
    assert.equal(s.abort("again"), undefined, "a finished session cannot abort twice");
    const t = session(makeTree(), "basic");
    t.start();
    const other = encodeMessage(
      {
        ...decodeMessage(server({ msgId: "1", commands: [] })).message,
        hdr: { ...decodeMessage(server({ msgId: "1", commands: [] })).message.hdr, sessionId: "B0" },
      },
      "xml",
    );
    abortOf(t.receive(other, "", {}));
    const end2 = t.outcome;
    assert.ok(end2 !== undefined && !end2.ok && /SessionID/.test(end2.reason ?? ""));
  });
});
