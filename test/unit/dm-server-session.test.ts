/**
 * The DM server session, driven by hand-written client messages built from protocol.md (sections
 * 3.1-3.9): XML strings, and WBXML through the codec. Digests and MACs are computed here from the
 * formulas of protocol.md 3.7, not with the code under test.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  ServerSession,
  type ServerReply,
  type ServerSessionOptions,
  type ServerStep,
} from "../../src/dm/server-session.js";
import {
  decodeMessage,
  encodeMessage,
  type AlertCommand,
  type Command,
  type ItemCommand,
  type StatusCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";

const SERVER = "https://gw.example.net/dm";
const DEVICE = "IMEI:493005100592800";
const XML = "application/vnd.syncml.dm+xml";
const WBXML = "application/vnd.syncml.dm+wbxml";
const CLIENT = { name: "dev-user", secret: "dev-secret" };
const SERVER_CRED = { name: "gw-server", secret: "gw-secret" };
const NONCE_C = Uint8Array.from(Buffer.from("client-nonce-000"));
const NONCE_S = Uint8Array.from(Buffer.from("server-nonce-000"));

// ---------------------------------------------------------------------------------------------------
// Crypto from protocol.md 3.7, written out independently

const ascii = (text: string): Buffer => Buffer.from(text, "utf8");
const md5 = (bytes: Uint8Array): Buffer => createHash("md5").update(bytes).digest();
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const userKey = (name: string, secret: string): Buffer => ascii(b64(md5(ascii(`${name}:${secret}`))));
/** syncml:auth-md5: B64(MD5(B64(MD5(user:password)) ":" nonce)). */
const md5Digest = (name: string, secret: string, nonce: Uint8Array): string =>
  b64(md5(Buffer.concat([userKey(name, secret), ascii(":"), nonce])));
/** syncml:auth-MAC: B64(MD5(B64(MD5(user:password)) ":" nonce ":" B64(MD5(body)))). */
const hmacOf = (name: string, secret: string, nonce: Uint8Array, body: Uint8Array): string =>
  b64(md5(Buffer.concat([userKey(name, secret), ascii(":"), nonce, ascii(":"), ascii(b64(md5(body)))])));
const hmacHeader = (nonce: Uint8Array, body: Uint8Array, who = CLIENT): Record<string, string> => ({
  "X-Syncml-Hmac": `algorithm=MD5, username="${who.name}", mac=${hmacOf(who.name, who.secret, nonce, body)}`,
});

/** A randomBytes whose k-th call returns k in every octet: predictable, and each nonce differs. */
function counterRandom(): (size: number) => Uint8Array {
  let k = 0;
  return (size) => new Uint8Array(size).fill(++k);
}

// ---------------------------------------------------------------------------------------------------
// Client messages, as XML text

interface Hdr {
  readonly msgId: number;
  readonly sessionId?: string;
  readonly source?: string;
  readonly locName?: string;
  readonly cred?: string;
  readonly meta?: string;
}

function msg(h: Hdr, body: string, final = true): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr>` +
    `<VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>${h.sessionId ?? "1"}</SessionID>` +
    `<MsgID>${h.msgId}</MsgID><Target><LocURI>${SERVER}</LocURI></Target>` +
    `<Source><LocURI>${h.source ?? DEVICE}</LocURI>${h.locName === undefined ? "" : `<LocName>${h.locName}</LocName>`}</Source>` +
    (h.cred ?? "") +
    (h.meta === undefined ? "" : `<Meta>${h.meta}</Meta>`) +
    `</SyncHdr><SyncBody>${body}${final ? "<Final/>" : ""}</SyncBody></SyncML>`
  );
}

const metinf = (name: string, value: string | number): string =>
  `<${name} xmlns="syncml:metinf">${value}</${name}>`;
const md5CredXml = (nonce: Uint8Array, who = CLIENT): string =>
  `<Cred><Meta>${metinf("Type", "syncml:auth-md5")}${metinf("Format", "b64")}</Meta>` +
  `<Data>${md5Digest(who.name, who.secret, nonce)}</Data></Cred>`;
const basicCredXml = (name: string, secret: string): string =>
  `<Cred><Meta>${metinf("Type", "syncml:auth-basic")}${metinf("Format", "b64")}</Meta>` +
  `<Data>${b64(ascii(`${name}:${secret}`))}</Data></Cred>`;
const alertXml = (id: number, code: number): string =>
  `<Alert><CmdID>${id}</CmdID><Data>${code}</Data></Alert>`;
const devInfoXml = (id: number): string =>
  `<Replace><CmdID>${id}</CmdID>` +
  [
    ["DevId", DEVICE],
    ["Man", "Acme"],
    ["Mod", "Sensor-9"],
    ["DmV", "1.2"],
    ["Lang", "en-US"],
  ]
    .map(([k, v]) => `<Item><Source><LocURI>./DevInfo/${k}</LocURI></Source><Data>${v}</Data></Item>`)
    .join("") +
  `</Replace>`;
/** Pkg#1 body: Alert 1201 (or the given code) and the DevInfo Replace (protocol.md 3.1). */
const pkg1Body = (alert = 1201): string => alertXml(1, alert) + devInfoXml(2);
function statusXml(
  id: number,
  msgRef: string | number,
  cmdRef: string | number,
  cmd: string,
  code: number,
  chal?: { type: string; nonce: Uint8Array },
): string {
  const chalXml =
    chal === undefined
      ? ""
      : `<Chal><Meta>${metinf("Type", chal.type)}${metinf("Format", "b64")}${metinf("NextNonce", b64(chal.nonce))}</Meta></Chal>`;
  return `<Status><CmdID>${id}</CmdID><MsgRef>${msgRef}</MsgRef><CmdRef>${cmdRef}</CmdRef><Cmd>${cmd}</Cmd>${chalXml}<Data>${code}</Data></Status>`;
}
const hdrStatusXml = (
  id: number,
  msgRef: string | number,
  code: number,
  chal?: { type: string; nonce: Uint8Array },
): string => statusXml(id, msgRef, 0, "SyncHdr", code, chal);
function resultsXml(
  id: number,
  msgRef: string,
  cmdRef: string,
  uri: string,
  data: string,
  opts: { size?: number; moreData?: boolean; format?: string } = {},
): string {
  const meta =
    opts.size === undefined && opts.format === undefined
      ? ""
      : `<Meta>${opts.format === undefined ? "" : metinf("Format", opts.format)}${opts.size === undefined ? "" : metinf("Size", opts.size)}</Meta>`;
  return (
    `<Results><CmdID>${id}</CmdID><MsgRef>${msgRef}</MsgRef><CmdRef>${cmdRef}</CmdRef>` +
    `<Item><Source><LocURI>${uri}</LocURI></Source>${meta}<Data>${data}</Data>${opts.moreData === true ? "<MoreData/>" : ""}</Item></Results>`
  );
}

// ---------------------------------------------------------------------------------------------------
// Server commands to queue, and reading replies

const get = (uri: string): ItemCommand => ({
  kind: "Get",
  cmdId: "99",
  items: [{ target: { locUri: uri } }],
});
const replace = (uri: string, text: string): ItemCommand => ({
  kind: "Replace",
  cmdId: "99",
  items: [{ target: { locUri: uri }, meta: { format: "chr" }, data: { kind: "text", text } }],
});

function newSession(over: Partial<ServerSessionOptions> = {}): ServerSession {
  return new ServerSession({
    serverUri: SERVER,
    clientAuth: { scheme: "md5", ...CLIENT },
    serverAuth: { scheme: "md5", ...SERVER_CRED },
    clientNonce: NONCE_C,
    serverNonce: NONCE_S,
    randomBytes: counterRandom(),
    ...over,
  });
}

function send(
  s: ServerSession,
  body: string | Uint8Array,
  headers: Readonly<Record<string, string | undefined>> = {},
  contentType = XML,
): ServerStep {
  return s.receive(typeof body === "string" ? ascii(body) : body, contentType, headers);
}

/** Pkg#1 with md5 credentials over the session's starting client nonce. */
function sendPkg1(s: ServerSession, over: Partial<Hdr> = {}, body = pkg1Body()): ServerStep {
  return send(s, msg({ msgId: 1, cred: md5CredXml(NONCE_C), ...over }, body));
}

function replyOf(step: ServerStep): ServerReply {
  if (step.kind === "reply") return step;
  assert.ok(step.reply !== undefined, "the step carries a reply");
  return step.reply;
}

function read(step: ServerStep): SyncMLMessage {
  return decodeMessage(replyOf(step).body).message;
}

function statusesOf(m: SyncMLMessage): StatusCommand[] {
  return m.body.commands.filter((c): c is StatusCommand => c.kind === "Status");
}

function hdrStatusOf(m: SyncMLMessage): StatusCommand {
  const st = statusesOf(m).find((s) => s.cmd === "SyncHdr" && s.cmdRef === "0");
  assert.ok(st !== undefined, "a Status for the SyncHdr");
  return st;
}

function statusFor(m: SyncMLMessage, cmdRef: string): StatusCommand | undefined {
  return statusesOf(m).find((s) => s.cmd !== "SyncHdr" && s.cmdRef === cmdRef);
}

/** The commands of a reply other than Status. */
function commandsOf(m: SyncMLMessage): Exclude<Command, StatusCommand>[] {
  return m.body.commands.filter((c): c is Exclude<Command, StatusCommand> => c.kind !== "Status");
}

function itemCommands(m: SyncMLMessage): ItemCommand[] {
  return commandsOf(m).filter(
    (c): c is ItemCommand => c.kind === "Get" || c.kind === "Replace" || c.kind === "Add",
  );
}

function alertsOf(m: SyncMLMessage): AlertCommand[] {
  return commandsOf(m).filter((c): c is AlertCommand => c.kind === "Alert");
}

function textOf(c: ItemCommand, i = 0): string {
  const data = c.items[i]?.data;
  assert.ok(data?.kind === "text", "text Data");
  return data.text;
}

// ---------------------------------------------------------------------------------------------------

describe("ServerSession", () => {
  it("computes md5 digests as the protocol.md 3.7 test vector (sanity of the test's own helper)", () => {
    assert.equal(md5Digest("Bruce2", "OhBehave", ascii("Nonce")), "Zz6EivR3yeaaENcRN6lpAQ==");
  });

  describe("a full session (Pkg#1, commands, Status and Results, end)", () => {
    it("answers Pkg#1 with 212 and a Chal for the next session, statuses, the queued commands and Final", () => {
      const s = newSession();
      const tickets = s.enqueue([get("./DevDetail/FwV"), replace("./Vendor/Mode", "eco")]);
      assert.deepEqual(tickets, [0, 1]);
      const step = sendPkg1(s);
      assert.equal(step.kind, "reply");
      assert.equal(replyOf(step).contentType, XML);
      const m = read(step);
      assert.equal(m.hdr.sessionId, "1");
      assert.equal(m.hdr.target.locUri, DEVICE);
      assert.equal(m.hdr.source.locUri, SERVER);
      const hs = hdrStatusOf(m);
      assert.equal(hs.data, "212");
      assert.equal(hs.msgRef, "1");
      assert.equal(hs.chal?.meta.type, "syncml:auth-md5");
      assert.equal(hs.chal.meta.format, "b64");
      assert.equal(hs.chal.meta.nextNonce, b64(new Uint8Array(16).fill(1)));
      assert.equal(statusFor(m, "1")?.data, "200", "Alert 1201");
      assert.equal(statusFor(m, "2")?.data, "200", "DevInfo Replace");
      const cmds = itemCommands(m);
      assert.deepEqual(
        cmds.map((c) => c.kind),
        ["Get", "Replace"],
      );
      const ids = m.body.commands.map((c) => c.cmdId);
      assert.equal(new Set(ids).size, ids.length, "CmdIDs unique in the message");
      assert.ok(!cmds.some((c) => c.cmdId === "99"), "the session assigns CmdIDs");
      assert.equal(m.body.final, true);
    });

    it("presents the server's md5 Cred over the server nonce, with LocName", () => {
      const s = newSession();
      const m = read(sendPkg1(s));
      assert.equal(m.hdr.cred?.meta?.type, "syncml:auth-md5");
      assert.equal(m.hdr.cred.data, md5Digest(SERVER_CRED.name, SERVER_CRED.secret, NONCE_S));
      assert.equal(m.hdr.source.locName, SERVER_CRED.name);
    });

    it("maps Status and Results to the enqueued commands and ends with a SyncHdr Status and Final only", () => {
      const s = newSession();
      s.enqueue([get("./DevDetail/FwV"), replace("./Vendor/Mode", "eco")]);
      const m2 = read(sendPkg1(s));
      const [g, r] = itemCommands(m2);
      assert.ok(g !== undefined && r !== undefined);
      const pkg3 = msg(
        { msgId: 2 },
        hdrStatusXml(1, 1, 212) +
          statusXml(2, 1, g.cmdId, "Get", 200) +
          resultsXml(3, "1", g.cmdId, "./DevDetail/FwV", "1.0.3") +
          statusXml(4, 1, r.cmdId, "Replace", 200),
      );
      const end = send(s, pkg3);
      assert.equal(end.kind, "end");
      const m4 = read(end);
      assert.deepEqual(
        m4.body.commands.map((c) => (c.kind === "Status" ? `Status:${c.cmd}:${c.data}` : c.kind)),
        ["Status:SyncHdr:200"],
        "no Status for Results (it would be 200), no commands",
      );
      assert.equal(m4.body.final, true);
      assert.equal(m4.hdr.cred, undefined, "no Cred once the client answered 212");
      const out = end.outcome;
      assert.equal(out.error, undefined);
      assert.equal(out.authenticated, true);
      assert.equal(out.serverAccepted, true);
      assert.equal(out.initiatedBy, "client");
      assert.equal(out.deviceId, DEVICE);
      assert.equal(out.devInfo["Man"], "Acme");
      assert.equal(out.devInfo["DevId"], DEVICE);
      assert.equal(out.commands[0]?.status, 200);
      assert.deepEqual(out.commands[0].results[0]?.items[0]?.data, { kind: "text", text: "1.0.3" });
      assert.equal(out.commands[1]?.status, 200);
      assert.deepEqual(out.commands[1].sentAs, [{ msgId: "1", cmdId: r.cmdId }]);
      assert.deepEqual(out.unmatched, []);
      assert.deepEqual(out.nextClientNonce, new Uint8Array(16).fill(1), "the 212 Chal nonce");
    });

    it("ends at once, with statuses and Final, when nothing is queued", () => {
      const s = newSession();
      const step = sendPkg1(s);
      assert.equal(step.kind, "end");
      const m = read(step);
      assert.equal(m.body.final, true);
      assert.deepEqual(commandsOf(m), []);
      assert.equal(hdrStatusOf(m).data, "212");
      assert.equal(step.outcome.error, undefined);
      assert.equal(s.ended, true);
    });

    it("lets the caller queue commands once the client's package is complete (onClientPackage)", () => {
      const s = newSession({
        onClientPackage: (session) => {
          if (session.outcome.devInfo["Mod"] === "Sensor-9") session.enqueue([get("./Sensor/Temp")]);
        },
      });
      const m = read(sendPkg1(s));
      assert.deepEqual(
        itemCommands(m).map((c) => c.items[0]?.target?.locUri),
        ["./Sensor/Temp"],
      );
    });

    it("numbers an Atomic's inner commands and maps their statuses to inner records", () => {
      const s = newSession();
      s.enqueue([{ kind: "Atomic", cmdId: "7", commands: [replace("./A", "1"), replace("./B", "2")] }]);
      const m = read(sendPkg1(s));
      const atomic = commandsOf(m).find((c) => c.kind === "Atomic");
      assert.ok(atomic?.kind === "Atomic");
      const [a, b] = atomic.commands;
      assert.ok(a !== undefined && b !== undefined);
      assert.equal(new Set([atomic.cmdId, a.cmdId, b.cmdId]).size, 3);
      const end = send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            statusXml(2, 1, atomic.cmdId, "Atomic", 507) +
            statusXml(3, 1, a.cmdId, "Replace", 216) +
            statusXml(4, 1, b.cmdId, "Replace", 404),
        ),
      );
      assert.equal(end.kind, "end");
      const rec = end.outcome.commands[0];
      assert.equal(rec?.status, 507);
      assert.deepEqual(
        rec.inner.map((r) => r.status),
        [216, 404],
      );
    });

    it("records a Status that refers to nothing it sent as unmatched", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      read(sendPkg1(s));
      const end = send(s, msg({ msgId: 2 }, hdrStatusXml(1, 1, 212) + statusXml(2, 1, 77, "Get", 200)));
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.unmatched.length, 1);
      assert.equal(end.outcome.commands[0]?.status, undefined);
    });

    it("answers a Pkg#1 in two messages with a Next Message response, then the commands", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      const m1 = read(send(s, msg({ msgId: 1, cred: md5CredXml(NONCE_C) }, alertXml(1, 1201), false)));
      assert.equal(hdrStatusOf(m1).data, "212");
      assert.equal(statusFor(m1, "1")?.data, "200");
      assert.deepEqual(
        commandsOf(m1).map((c) => (c.kind === "Alert" ? `Alert:${c.data ?? ""}` : c.kind)),
        ["Alert:1222"],
      );
      assert.equal(m1.body.final, false);
      const m2 = read(send(s, msg({ msgId: 2 }, hdrStatusXml(1, 1, 212) + devInfoXml(2))));
      assert.equal(statusFor(m2, "2")?.data, "200");
      assert.equal(itemCommands(m2)[0]?.kind, "Get");
      assert.equal(m2.body.final, true);
      assert.equal(s.outcome.devInfo["Mod"], "Sensor-9");
    });

    it("answers a WBXML client in WBXML", () => {
      const s = newSession();
      s.enqueue([get("./DevDetail/SwV")]);
      const xml = decodeMessage(ascii(msg({ msgId: 1, cred: md5CredXml(NONCE_C) }, pkg1Body()))).message;
      const step = send(s, encodeMessage(xml, "wbxml"), {}, WBXML);
      const rep = replyOf(step);
      assert.equal(rep.contentType, WBXML);
      assert.equal(rep.body[0], 0x02, "a WBXML 1.2 document");
      const m = decodeMessage(rep.body).message;
      assert.equal(hdrStatusOf(m).data, "212");
      assert.equal(itemCommands(m)[0]?.kind, "Get");
    });
  });

  describe("authentication of the client", () => {
    it("challenges a Pkg#1 without credentials: 407, a Chal with a fresh nonce, 407 for every command, nothing run", () => {
      const s = newSession();
      s.enqueue([get("./DevDetail/FwV")]);
      const step = send(s, msg({ msgId: 1 }, pkg1Body() + genericAlertXml(3)));
      assert.equal(step.kind, "reply");
      const m = read(step);
      const hs = hdrStatusOf(m);
      assert.equal(hs.data, "407");
      assert.equal(hs.chal?.meta.type, "syncml:auth-md5");
      assert.equal(hs.chal.meta.nextNonce, b64(new Uint8Array(16).fill(1)));
      assert.deepEqual(
        statusesOf(m)
          .filter((x) => x.cmd !== "SyncHdr")
          .map((x) => `${x.cmd}:${x.data}`),
        ["Alert:407", "Replace:407", "Alert:407"],
      );
      assert.deepEqual(commandsOf(m), [], "the queued Get is not sent");
      assert.equal(m.body.final, true);
      assert.equal(m.hdr.cred, undefined, "no server Cred to an unauthenticated client");
      assert.deepEqual(s.outcome.devInfo, {});
      assert.deepEqual(s.outcome.genericAlerts, []);
      assert.equal(s.outcome.authenticated, false);
    });

    it("accepts the re-sent Pkg#1 whose Cred uses the challenge's nonce", () => {
      const s = newSession();
      s.enqueue([get("./DevDetail/FwV")]);
      const chal = hdrStatusOf(read(send(s, msg({ msgId: 1 }, pkg1Body())))).chal;
      const nonce = Buffer.from(chal?.meta.nextNonce ?? "", "base64");
      const m = read(send(s, msg({ msgId: 2, cred: md5CredXml(nonce) }, pkg1Body())));
      assert.equal(hdrStatusOf(m).data, "212");
      assert.equal(hdrStatusOf(m).msgRef, "2");
      assert.equal(itemCommands(m)[0]?.kind, "Get");
      assert.equal(s.outcome.authenticated, true);
    });

    it("refuses, after a challenge, a Cred built on the old nonce", () => {
      const s = newSession();
      send(s, msg({ msgId: 1 }, pkg1Body()));
      const m = read(send(s, msg({ msgId: 2, cred: md5CredXml(NONCE_C) }, pkg1Body())));
      assert.equal(hdrStatusOf(m).data, "401");
    });

    it("answers wrong credentials with 401 and a new Chal, and executes nothing", () => {
      const s = newSession();
      s.enqueue([get("./DevDetail/FwV")]);
      const wrong = md5CredXml(NONCE_C, { name: CLIENT.name, secret: "guess" });
      const m = read(send(s, msg({ msgId: 1, cred: wrong }, pkg1Body() + genericAlertXml(3))));
      const hs = hdrStatusOf(m);
      assert.equal(hs.data, "401");
      assert.equal(hs.chal?.meta.nextNonce, b64(new Uint8Array(16).fill(1)));
      assert.ok(statusesOf(m).every((x) => x.data === "401"));
      assert.equal(statusesOf(m).length, 4);
      assert.deepEqual(commandsOf(m), []);
      assert.deepEqual(s.outcome.devInfo, {});
      assert.deepEqual(s.outcome.genericAlerts, []);
      assert.equal(s.outcome.commands[0]?.sentAs.length, 0);
    });

    it("ends after maxAuthAttempts failures, the last answer without a Chal", () => {
      const s = newSession({ maxAuthAttempts: 2 });
      const wrong = md5CredXml(NONCE_C, { name: CLIENT.name, secret: "guess" });
      assert.equal(send(s, msg({ msgId: 1, cred: wrong }, pkg1Body())).kind, "reply");
      const end = send(s, msg({ msgId: 2, cred: wrong }, pkg1Body()));
      assert.equal(end.kind, "end");
      const hs = hdrStatusOf(read(end));
      assert.equal(hs.data, "401");
      assert.equal(hs.chal, undefined);
      assert.equal(end.outcome.error?.code, "auth-failed");
      assert.equal(end.outcome.authenticated, false);
      const after = send(s, msg({ msgId: 3, cred: md5CredXml(NONCE_C) }, pkg1Body()));
      assert.equal(after.kind, "end");
      assert.equal(after.reply, undefined, "nothing more to answer");
    });

    it("keeps the starting nonce to persist when the client never authenticated", () => {
      const s = newSession({ maxAuthAttempts: 2 });
      send(s, msg({ msgId: 1 }, pkg1Body()));
      const end = send(s, msg({ msgId: 2 }, pkg1Body()));
      assert.equal(end.kind, "end");
      assert.deepEqual(end.outcome.nextClientNonce, NONCE_C, "a challenge nonce to an unauthenticated peer");
    });

    it("accepts basic credentials with 212 and no Chal", () => {
      const s = newSession({ clientAuth: { scheme: "basic", ...CLIENT } });
      s.enqueue([get("./X")]);
      const m = read(send(s, msg({ msgId: 1, cred: basicCredXml(CLIENT.name, CLIENT.secret) }, pkg1Body())));
      assert.equal(hdrStatusOf(m).data, "212");
      assert.equal(hdrStatusOf(m).chal, undefined);
    });

    it("refuses md5 credentials where basic is required (401, basic Chal)", () => {
      const s = newSession({ clientAuth: { scheme: "basic", ...CLIENT } });
      const m = read(sendPkg1(s));
      assert.equal(hdrStatusOf(m).data, "401");
      assert.equal(hdrStatusOf(m).chal?.meta.type, "syncml:auth-basic");
    });

    it("answers 200 without a Chal when no DM-level authentication is configured", () => {
      const s = newSession({ clientAuth: { scheme: "none" } });
      s.enqueue([get("./X")]);
      const m = read(send(s, msg({ msgId: 1 }, pkg1Body())));
      assert.equal(hdrStatusOf(m).data, "200");
      assert.equal(hdrStatusOf(m).chal, undefined);
      assert.equal(s.outcome.authenticated, true);
    });
  });

  describe("HMAC (x-syncml-hmac)", () => {
    const hmacSession = (over: Partial<ServerSessionOptions> = {}): ServerSession =>
      newSession({
        clientAuth: { scheme: "hmac", ...CLIENT },
        serverAuth: { scheme: "hmac", ...SERVER_CRED },
        ...over,
      });

    it("verifies the MAC over the exact bytes and answers 200 with a fresh NextNonce", () => {
      const s = hmacSession();
      s.enqueue([get("./X")]);
      const body = ascii(msg({ msgId: 1, locName: CLIENT.name }, pkg1Body()));
      const m = read(send(s, body, hmacHeader(NONCE_C, body)));
      const hs = hdrStatusOf(m);
      assert.equal(hs.data, "200");
      assert.equal(hs.chal?.meta.type, "syncml:auth-MAC");
      assert.equal(hs.chal.meta.nextNonce, b64(new Uint8Array(16).fill(1)));
      assert.equal(m.hdr.cred, undefined, "HMAC never travels in Cred");
      assert.equal(s.outcome.devInfo["Man"], "Acme");
    });

    it("signs each reply with x-syncml-hmac over the reply bytes and the server nonce", () => {
      const s = hmacSession();
      s.enqueue([get("./X")]);
      const body = ascii(msg({ msgId: 1, locName: CLIENT.name }, pkg1Body()));
      const rep = replyOf(send(s, body, hmacHeader(NONCE_C, body)));
      const mac = hmacOf(SERVER_CRED.name, SERVER_CRED.secret, NONCE_S, rep.body);
      assert.equal(rep.headers["x-syncml-hmac"], `algorithm=MD5, username="${SERVER_CRED.name}", mac=${mac}`);
      assert.equal(decodeMessage(rep.body).message.hdr.source.locName, SERVER_CRED.name);
    });

    it("refuses a tampered body (401 and a Chal), executes nothing", () => {
      const s = hmacSession();
      s.enqueue([get("./X")]);
      const body = ascii(msg({ msgId: 1, locName: CLIENT.name }, pkg1Body()));
      const headers = hmacHeader(NONCE_C, body);
      const tampered = ascii(msg({ msgId: 1, locName: CLIENT.name }, pkg1Body()).replace("Acme", "Acne"));
      const m = read(send(s, tampered, headers));
      assert.equal(hdrStatusOf(m).data, "401");
      assert.equal(hdrStatusOf(m).chal?.meta.type, "syncml:auth-MAC");
      assert.deepEqual(commandsOf(m), []);
      assert.deepEqual(s.outcome.devInfo, {});
    });

    it("refuses a message without the header with 407", () => {
      const s = hmacSession();
      const m = read(send(s, msg({ msgId: 1, locName: CLIENT.name }, pkg1Body())));
      assert.equal(hdrStatusOf(m).data, "407");
    });

    it("issues a fresh nonce on every message and requires the latest one", () => {
      const s = hmacSession();
      s.enqueue([get("./X")]);
      const b1 = ascii(msg({ msgId: 1, locName: CLIENT.name }, pkg1Body()));
      const m2 = read(send(s, b1, hmacHeader(NONCE_C, b1)));
      const n1 = Buffer.from(hdrStatusOf(m2).chal?.meta.nextNonce ?? "", "base64");
      const g = itemCommands(m2)[0];
      assert.ok(g !== undefined);
      // The client's Pkg#3 spans two messages; the second one needs the nonce of the reply to the first.
      const b2 = ascii(
        msg(
          { msgId: 2, locName: CLIENT.name },
          hdrStatusXml(1, 1, 200) + statusXml(2, 1, g.cmdId, "Get", 200),
          false,
        ),
      );
      const stale = send(s, b2, hmacHeader(NONCE_C, b2));
      assert.equal(hdrStatusOf(read(stale)).data, "401", "the nonce of Pkg#1 is spent");
      const n2 = Buffer.from(hdrStatusOf(read(stale)).chal?.meta.nextNonce ?? "", "base64");
      assert.notDeepEqual(n2, n1);
      const m3 = read(send(s, b2, hmacHeader(n2, b2)));
      const hs3 = hdrStatusOf(m3);
      assert.equal(hs3.data, "200");
      const n3 = Buffer.from(hs3.chal?.meta.nextNonce ?? "", "base64");
      assert.notDeepEqual(n3, n2);
      assert.equal(alertsOf(m3)[0]?.data, "1222", "a Next Message response");
      const b3 = ascii(msg({ msgId: 3, locName: CLIENT.name }, resultsXml(1, "1", g.cmdId, "./X", "v")));
      const end = send(s, b3, hmacHeader(n3, b3));
      assert.equal(end.kind, "end");
      assert.equal(hdrStatusOf(read(end)).data, "200");
      assert.deepEqual(
        end.outcome.nextClientNonce,
        Uint8Array.from(Buffer.from(hdrStatusOf(read(end)).chal?.meta.nextNonce ?? "", "base64")),
      );
      assert.equal(end.outcome.commands[0]?.results.length, 1);
    });

    it("uses the nonce of the client's Chal (200 on our SyncHdr) for its next MAC", () => {
      const s = hmacSession();
      s.enqueue([get("./X")]);
      const b1 = ascii(msg({ msgId: 1, locName: CLIENT.name }, pkg1Body()));
      const m2 = read(send(s, b1, hmacHeader(NONCE_C, b1)));
      const n1 = Buffer.from(hdrStatusOf(m2).chal?.meta.nextNonce ?? "", "base64");
      const g = itemCommands(m2)[0];
      assert.ok(g !== undefined);
      s.enqueue([get("./Y")]);
      const fresh = ascii("from-the-client!");
      const b2 = ascii(
        msg(
          { msgId: 2, locName: CLIENT.name },
          hdrStatusXml(1, 1, 200, { type: "syncml:auth-MAC", nonce: fresh }) +
            statusXml(2, 1, g.cmdId, "Get", 200),
        ),
      );
      const rep = replyOf(send(s, b2, hmacHeader(n1, b2)));
      const mac = hmacOf(SERVER_CRED.name, SERVER_CRED.secret, fresh, rep.body);
      assert.match(rep.headers["x-syncml-hmac"] ?? "", new RegExp(`mac=${mac.replace(/[+/]/g, "\\$&")}$`));
      assert.deepEqual(s.nextServerNonce, Uint8Array.from(fresh));
    });
  });

  describe("the client's challenge of the server's credentials", () => {
    it("sends the refused commands again with a Cred over the challenge's nonce, once", () => {
      const s = newSession();
      s.enqueue([get("./DevDetail/FwV")]);
      const m2 = read(sendPkg1(s));
      const g = itemCommands(m2)[0];
      assert.ok(g !== undefined);
      const nonce = ascii("new-server-nonce");
      const m4 = read(
        send(
          s,
          msg(
            { msgId: 2 },
            hdrStatusXml(1, 1, 401, { type: "syncml:auth-md5", nonce }) +
              statusXml(2, 1, g.cmdId, "Get", 401),
          ),
        ),
      );
      assert.equal(m4.hdr.cred?.data, md5Digest(SERVER_CRED.name, SERVER_CRED.secret, nonce));
      const again = itemCommands(m4)[0];
      assert.equal(again?.kind, "Get");
      assert.equal(again.items[0]?.target?.locUri, "./DevDetail/FwV");
      assert.notEqual(again.cmdId, g.cmdId);
      assert.equal(m4.body.final, true);
      const end = send(
        s,
        msg(
          { msgId: 3 },
          hdrStatusXml(1, m4.hdr.msgId, 212) +
            statusXml(2, m4.hdr.msgId, again.cmdId, "Get", 200) +
            resultsXml(3, m4.hdr.msgId, again.cmdId, "./DevDetail/FwV", "2.0"),
        ),
      );
      assert.equal(end.kind, "end");
      const rec = end.outcome.commands[0];
      assert.equal(rec?.status, 200);
      assert.equal(rec.statuses.length, 1, "the 401 of the refused message is not an answer");
      assert.equal(rec.sentAs.length, 2);
      assert.equal(end.outcome.serverAccepted, true);
    });

    it("ends when the client refuses the server's credentials a second time", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      const g = itemCommands(read(sendPkg1(s)))[0];
      assert.ok(g !== undefined);
      const chal = { type: "syncml:auth-md5", nonce: ascii("n1") };
      const m4 = read(
        send(s, msg({ msgId: 2 }, hdrStatusXml(1, 1, 401, chal) + statusXml(2, 1, g.cmdId, "Get", 401))),
      );
      const again = itemCommands(m4)[0];
      assert.ok(again !== undefined);
      const end = send(
        s,
        msg(
          { msgId: 3 },
          hdrStatusXml(1, m4.hdr.msgId, 401, { type: "syncml:auth-md5", nonce: ascii("n2") }) +
            statusXml(2, m4.hdr.msgId, again.cmdId, "Get", 401),
        ),
      );
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "server-auth-rejected");
      assert.deepEqual(commandsOf(read(end)), []);
    });

    it("does not follow a challenge to another scheme (no downgrade to basic)", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      const g = itemCommands(read(sendPkg1(s)))[0];
      assert.ok(g !== undefined);
      const end = send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 401, { type: "syncml:auth-basic", nonce: ascii("x") }) +
            statusXml(2, 1, g.cmdId, "Get", 401),
        ),
      );
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "server-auth-rejected");
      assert.ok(!(read(end).hdr.cred?.meta?.type ?? "").includes("basic"));
    });

    it("keeps the nonce of a Chal sent with 212 as the next session's server nonce", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      const g = itemCommands(read(sendPkg1(s)))[0];
      assert.ok(g !== undefined);
      const next = ascii("next-session-n0");
      const end = send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212, { type: "syncml:auth-md5", nonce: next }) +
            statusXml(2, 1, g.cmdId, "Get", 200),
        ),
      );
      assert.equal(end.kind, "end");
      assert.deepEqual(end.outcome.nextServerNonce, Uint8Array.from(next));
    });
  });

  describe("alerts from the client", () => {
    it("records a Generic Alert with its Correlator, Source, Meta and Data, and answers 200", () => {
      const s = newSession();
      const step = sendPkg1(s, {}, pkg1Body() + genericAlertXml(3));
      const m = read(step);
      assert.equal(statusFor(m, "3")?.data, "200");
      assert.equal(statusFor(m, "3")?.cmd, "Alert");
      const [ga] = s.outcome.genericAlerts;
      assert.ok(ga !== undefined);
      assert.equal(ga.correlator, "job-42");
      assert.equal(ga.status, 200);
      assert.equal(ga.items.length, 1);
      assert.deepEqual(
        { ...ga.items[0] },
        {
          source: "./FUMO/Pkg1",
          target: undefined,
          type: "urn:oma:at:oma-gwmo:completionstatus:1.0",
          format: "chr",
          mark: "critical",
          data: { kind: "text", text: "./GwMO/Fanout/J1/Results" },
        },
      );
    });

    it("answers 412 to a Generic Alert whose Item lacks the required Meta Format", () => {
      const s = newSession();
      const bad =
        `<Alert><CmdID>3</CmdID><Data>1226</Data><Item><Meta>${metinf("Type", "urn:x:y")}</Meta>` +
        `<Data>z</Data></Item></Alert>`;
      const m = read(sendPkg1(s, {}, pkg1Body() + bad));
      assert.equal(statusFor(m, "3")?.data, "412");
      assert.equal(s.outcome.genericAlerts[0]?.status, 412);
    });

    it("answers a Generic Alert with the caller's status (415 for an unsupported type)", () => {
      const s = newSession({
        answerGenericAlert: (a) => (a.items[0]?.type?.startsWith("urn:oma:at:oma-gwmo") ? 415 : 200),
      });
      const m = read(sendPkg1(s, {}, pkg1Body() + genericAlertXml(3)));
      assert.equal(statusFor(m, "3")?.data, "415");
    });

    it("records a Client Event (1224) and answers 200", () => {
      const s = newSession();
      const ev =
        `<Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta>${metinf("Type", "com.acme.battery")}${metinf("Format", "int")}</Meta>` +
        `<Data>12</Data></Item></Alert>`;
      const m = read(sendPkg1(s, {}, pkg1Body() + ev));
      assert.equal(statusFor(m, "3")?.data, "200");
      assert.equal(s.outcome.clientEvents[0]?.items[0]?.type, "com.acme.battery");
    });

    it("refuses user-interaction alerts from a client (405)", () => {
      const s = newSession();
      const m = read(sendPkg1(s, {}, pkg1Body() + alertXml(3, 1101)));
      assert.equal(statusFor(m, "3")?.data, "405");
    });

    it("ends on Alert 1223, answering only the SyncHdr and the Alert, keeping the statuses sent with it", () => {
      const s = newSession();
      s.enqueue([get("./A"), replace("./B", "x")]);
      const [g, r] = itemCommands(read(sendPkg1(s)));
      assert.ok(g !== undefined && r !== undefined);
      const end = send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            statusXml(2, 1, g.cmdId, "Get", 200) +
            resultsXml(3, "1", g.cmdId, "./A", "a") +
            alertXml(4, 1223) +
            genericAlertXml(5),
        ),
      );
      assert.equal(end.kind, "end");
      const m = read(end);
      assert.deepEqual(
        m.body.commands.map((c) => (c.kind === "Status" ? `${c.cmd}:${c.cmdRef}:${c.data}` : c.kind)),
        ["SyncHdr:0:200", "Alert:4:200"],
      );
      assert.equal(end.outcome.error?.code, "aborted");
      assert.equal(end.outcome.commands[0]?.status, 200);
      assert.equal(end.outcome.commands[0].results.length, 1);
      assert.equal(end.outcome.commands[1]?.status, undefined);
    });
  });

  describe("MaxMsgSize and multiple messages", () => {
    // A bare md5 Pkg#2 in XML is already about 1 KB.
    const LIMIT = 2000;
    const big = (i: number): ItemCommand => replace(`./Vendor/Cfg/P${i}`, `value-${i}-`.padEnd(220, "x"));

    it("sends what fits as a package with Final, and the rest only after the client's statuses", () => {
      const s = newSession();
      s.enqueue(Array.from({ length: 8 }, (_, i) => big(i)));
      const step1 = sendPkg1(s, { meta: metinf("MaxMsgSize", LIMIT) });
      assert.ok(replyOf(step1).body.length <= LIMIT, `${replyOf(step1).body.length} > ${LIMIT}`);
      const m1 = read(step1);
      const first = itemCommands(m1);
      assert.ok(first.length >= 1 && first.length < 8, `${first.length} commands in the first message`);
      assert.equal(m1.body.final, true, "the server closes every package (protocol.md 3.6)");

      // The client's package of statuses in two messages: the first one without Final.
      const half = first.slice(0, 1);
      const rest = first.slice(1);
      const step2 = send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            half.map((c, i) => statusXml(2 + i, 1, c.cmdId, "Replace", 200)).join("") +
            alertXml(9, 1222),
          false,
        ),
      );
      const m2 = read(step2);
      assert.deepEqual(itemCommands(m2), [], "no new commands before the client's package is complete");
      assert.equal(m2.body.final, false);
      assert.deepEqual(
        alertsOf(m2).map((a) => a.data),
        ["1222"],
      );
      assert.equal(statusFor(m2, "9")?.data, "200", "Status for the client's Alert 1222");

      const sent = [...first];
      let step = send(
        s,
        msg({ msgId: 3 }, rest.map((c, i) => statusXml(1 + i, 1, c.cmdId, "Replace", 200)).join("")),
      );
      let clientMsg = 4;
      for (let guard = 0; step.kind === "reply" && guard < 10; guard++) {
        assert.ok(replyOf(step).body.length <= LIMIT);
        const m = read(step);
        assert.equal(m.body.final, true);
        const cmds = itemCommands(m);
        assert.ok(cmds.length >= 1);
        sent.push(...cmds);
        step = send(
          s,
          msg(
            { msgId: clientMsg++ },
            cmds.map((c, i) => statusXml(1 + i, m.hdr.msgId, c.cmdId, "Replace", 200)).join(""),
          ),
        );
      }
      assert.equal(step.kind, "end");
      assert.deepEqual(
        sent.map((c) => c.items[0]?.target?.locUri),
        Array.from({ length: 8 }, (_, i) => `./Vendor/Cfg/P${i}`),
        "every command once, in order",
      );
      assert.ok(step.outcome.commands.every((r) => r.status === 200));
      assert.equal(step.outcome.error, undefined);
    });

    it("respects a WBXML client's MaxMsgSize", () => {
      const s = newSession();
      s.enqueue(Array.from({ length: 6 }, (_, i) => big(i)));
      const xml = decodeMessage(
        ascii(msg({ msgId: 1, cred: md5CredXml(NONCE_C), meta: metinf("MaxMsgSize", 700) }, pkg1Body())),
      ).message;
      const rep = replyOf(send(s, encodeMessage(xml, "wbxml"), {}, WBXML));
      assert.ok(rep.body.length <= 700, `${rep.body.length} > 700`);
      const n = itemCommands(decodeMessage(rep.body).message).length;
      assert.ok(n >= 1 && n < 6);
    });

    it("ends with a reason when an Atomic cannot fit one message", () => {
      const s = newSession();
      s.enqueue([{ kind: "Atomic", cmdId: "1", commands: [big(1), big(2), big(3), big(4), big(5), big(6)] }]);
      const end = sendPkg1(s, { meta: metinf("MaxMsgSize", LIMIT) });
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "command-too-large");
      const m = read(end);
      assert.deepEqual(commandsOf(m), []);
      assert.equal(m.body.final, true);
      assert.equal(statusFor(m, "2")?.data, "200", "the client's commands are still answered");
    });
  });

  describe("large objects sent to the client", () => {
    const LIMIT = 1600;
    // Escaped characters and multi-byte UTF-8 (2, 3 and 4 bytes) across chunk boundaries.
    const TEXT = Array.from({ length: 90 }, (_, i) => `line ${i} <a&b> é€😀;`).join("\n");
    const TEXT_BYTES = Buffer.byteLength(TEXT, "utf8");

    /** Drives the chunks: 213 + Alert 1222 for each, until the message with Final. */
    function collect(
      s: ServerSession,
      first: ServerStep,
      limit: number,
    ): { chunks: ItemCommand[]; last: SyncMLMessage; nextMsgId: number } {
      const chunks: ItemCommand[] = [];
      let step = first;
      let msgId = 2;
      for (let guard = 0; guard < 200; guard++) {
        assert.equal(step.kind, "reply", step.kind === "end" ? JSON.stringify(step.outcome.error) : "");
        assert.ok(replyOf(step).body.length <= limit, `${replyOf(step).body.length} > ${limit}`);
        const m = read(step);
        const chunk = itemCommands(m).find((c) => c.items[0]?.target?.locUri === "./FW/Pkg");
        assert.ok(chunk !== undefined, "every message of the package carries a chunk");
        chunks.push(chunk);
        if (m.body.final) return { chunks, last: m, nextMsgId: msgId };
        assert.equal(chunk.items[0]?.moreData, true);
        step = send(
          s,
          msg(
            { msgId: msgId++ },
            hdrStatusXml(1, m.hdr.msgId, 212) +
              statusXml(2, m.hdr.msgId, chunk.cmdId, "Replace", 213) +
              alertXml(3, 1222),
            false,
          ),
        );
      }
      assert.fail("too many chunks");
    }

    it("splits an Item's Data into MoreData chunks, Size on the first only, Final on the last message only", () => {
      const s = newSession();
      s.enqueue([replace("./FW/Pkg", TEXT)]);
      const { chunks } = collect(s, sendPkg1(s, { meta: metinf("MaxMsgSize", LIMIT) }), LIMIT);
      assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
      assert.equal(chunks[0]?.items[0]?.meta?.size, String(TEXT_BYTES));
      assert.ok(chunks.slice(1).every((c) => c.items[0]?.meta?.size === undefined));
      assert.ok(chunks.slice(0, -1).every((c) => c.items[0]?.moreData === true));
      assert.equal(chunks.at(-1)?.items[0]?.moreData, undefined);
      assert.ok(
        chunks.every((c) => c.items[0]?.meta?.format === "chr"),
        "Meta repeated on every chunk",
      );
      assert.equal(chunks.map((c) => textOf(c)).join(""), TEXT);
      assert.equal(new Set(chunks.map((c) => c.cmdId)).size, chunks.length);
    });

    it("records 213 for each chunk and the final status, then sends the commands queued after it", () => {
      const s = newSession();
      s.enqueue([replace("./FW/Pkg", TEXT), get("./FW/State")]);
      const { chunks, last, nextMsgId } = collect(
        s,
        sendPkg1(s, { meta: metinf("MaxMsgSize", LIMIT) }),
        LIMIT,
      );
      const after = itemCommands(last).filter((c) => c.kind === "Get");
      const lastChunk = chunks.at(-1);
      assert.ok(lastChunk !== undefined);
      let step = send(
        s,
        msg(
          { msgId: nextMsgId },
          statusXml(1, last.hdr.msgId, lastChunk.cmdId, "Replace", 200) +
            after.map((c, i) => statusXml(2 + i, last.hdr.msgId, c.cmdId, "Get", 200)).join(""),
        ),
      );
      if (after.length === 0) {
        const m = read(step);
        const g = itemCommands(m)[0];
        assert.equal(g?.kind, "Get", "the Get follows in the next package");
        step = send(s, msg({ msgId: nextMsgId + 1 }, statusXml(1, m.hdr.msgId, g.cmdId, "Get", 200)));
      }
      assert.equal(step.kind, "end");
      const rec = step.outcome.commands[0];
      assert.equal(rec?.status, 200);
      assert.equal(rec.statuses.filter((x) => x.data === "213").length, chunks.length - 1);
      assert.equal(rec.sentAs.length, chunks.length);
      assert.equal(step.outcome.commands[1]?.status, 200);
    });

    it("sends binary data as OPAQUE chunks over WBXML", () => {
      const s = newSession();
      const bytes = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
      s.enqueue([
        {
          kind: "Replace",
          cmdId: "1",
          items: [
            { target: { locUri: "./FW/Pkg" }, meta: { format: "bin" }, data: { kind: "opaque", bytes } },
          ],
        },
      ]);
      const xml = decodeMessage(
        ascii(msg({ msgId: 1, cred: md5CredXml(NONCE_C), meta: metinf("MaxMsgSize", 800) }, pkg1Body())),
      ).message;
      let step = send(s, encodeMessage(xml, "wbxml"), {}, WBXML);
      const parts: Uint8Array[] = [];
      for (let msgId = 2; ; msgId++) {
        const rep = replyOf(step);
        assert.ok(rep.body.length <= 800);
        const m = decodeMessage(rep.body).message;
        const c = itemCommands(m)[0];
        const data = c?.items[0]?.data;
        assert.ok(c !== undefined && data?.kind === "opaque");
        parts.push(data.bytes);
        if (m.body.final) break;
        const next = decodeMessage(
          ascii(
            msg(
              { msgId },
              hdrStatusXml(1, m.hdr.msgId, 212) +
                statusXml(2, m.hdr.msgId, c.cmdId, "Replace", 213) +
                alertXml(3, 1222),
              false,
            ),
          ),
        ).message;
        step = send(s, encodeMessage(next, "wbxml"), {}, WBXML);
      }
      assert.ok(parts.length >= 4);
      assert.deepEqual(Buffer.concat(parts), Buffer.from(bytes));
    });

    it("stops sending chunks the client refused and closes the package", () => {
      const s = newSession();
      s.enqueue([replace("./FW/Pkg", TEXT)]);
      const m1 = read(sendPkg1(s, { meta: metinf("MaxMsgSize", LIMIT) }));
      const c1 = itemCommands(m1)[0];
      assert.ok(c1 !== undefined && !m1.body.final);
      const m2 = read(
        send(
          s,
          msg(
            { msgId: 2 },
            hdrStatusXml(1, 1, 212) + statusXml(2, 1, c1.cmdId, "Replace", 420) + alertXml(3, 1222),
            false,
          ),
        ),
      );
      assert.deepEqual(itemCommands(m2), []);
      assert.equal(m2.body.final, true);
      assert.equal(s.outcome.commands[0]?.status, 420);
    });

    it("ends with a reason when an object exceeds the client's MaxObjSize", () => {
      const s = newSession();
      s.enqueue([replace("./FW/Pkg", TEXT)]);
      const end = sendPkg1(s, { meta: metinf("MaxMsgSize", LIMIT) + metinf("MaxObjSize", 512) });
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "object-too-large");
      assert.deepEqual(commandsOf(read(end)), []);
    });

    it("ends with a reason when a queued command cannot be encoded (binary Data over XML)", () => {
      const s = newSession();
      s.enqueue([
        {
          kind: "Replace",
          cmdId: "1",
          items: [
            { target: { locUri: "./B" }, data: { kind: "opaque", bytes: Uint8Array.of(0xff, 0xfe, 0x00) } },
          ],
        },
      ]);
      const end = sendPkg1(s);
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "encode");
      assert.equal(hdrStatusOf(read(end)).data, "212");
    });
  });

  describe("large Results received from the client", () => {
    /** A session that sent one Get (CmdID returned) in its message 1. */
    function afterGet(over: Partial<ServerSessionOptions> = {}): { s: ServerSession; cmdId: string } {
      const s = newSession(over);
      s.enqueue([get("./Log")]);
      const g = itemCommands(read(sendPkg1(s)))[0];
      assert.ok(g !== undefined);
      return { s, cmdId: g.cmdId };
    }

    it("answers a chunk with 213 and Alert 1222, no Final", () => {
      const { s, cmdId } = afterGet();
      const m = read(
        send(
          s,
          msg(
            { msgId: 2 },
            hdrStatusXml(1, 1, 212) +
              statusXml(2, 1, cmdId, "Get", 200) +
              resultsXml(3, "1", cmdId, "./Log", "0123456789", { size: 16, moreData: true }),
            false,
          ),
        ),
      );
      const st = statusFor(m, "3");
      assert.equal(st?.data, "213");
      assert.equal(st.cmd, "Results");
      assert.deepEqual(st.sourceRefs, ["./Log"]);
      assert.deepEqual(
        alertsOf(m).map((a) => a.data),
        ["1222"],
      );
      assert.equal(m.body.final, false);
      assert.equal(s.outcome.commands[0]?.results.length, 0, "nothing recorded before the last chunk");
    });

    it("reassembles the chunks, sends no Status for the complete Results, and records it once", () => {
      const { s, cmdId } = afterGet();
      send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            statusXml(2, 1, cmdId, "Get", 200) +
            resultsXml(3, "1", cmdId, "./Log", "0123456789", { size: 16, moreData: true, format: "chr" }),
          false,
        ),
      );
      const end = send(
        s,
        msg({ msgId: 3 }, hdrStatusXml(1, 2, 200) + resultsXml(2, "1", cmdId, "./Log", "abcdef")),
      );
      assert.equal(end.kind, "end");
      assert.deepEqual(
        statusesOf(read(end)).map((x) => x.cmd),
        ["SyncHdr"],
      );
      const results = end.outcome.commands[0]?.results;
      assert.equal(results?.length, 1);
      const item = results[0]?.items[0];
      assert.deepEqual(item?.data, { kind: "text", text: "0123456789abcdef" });
      assert.equal(item.moreData, undefined);
      assert.equal(item.source?.locUri, "./Log");
    });

    it("answers 424 when the chunks do not add up to the declared Size, and records nothing", () => {
      const { s, cmdId } = afterGet();
      send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            statusXml(2, 1, cmdId, "Get", 200) +
            resultsXml(3, "1", cmdId, "./Log", "0123456789", { size: 100, moreData: true }),
          false,
        ),
      );
      const end = send(
        s,
        msg({ msgId: 3 }, hdrStatusXml(1, 2, 200) + resultsXml(2, "1", cmdId, "./Log", "abcdef")),
      );
      assert.equal(end.kind, "end");
      const st = statusFor(read(end), "2");
      assert.equal(st?.data, "424");
      assert.equal(st.cmd, "Results");
      assert.deepEqual(end.outcome.commands[0]?.results, []);
      assert.equal(end.outcome.commands[0].refusedResults[0]?.code, 424);
    });

    it("sends Alert 1225 naming the object when a new Item arrives before the last chunk", () => {
      const s = newSession();
      s.enqueue([get("./Log"), get("./Other")]);
      const [g1, g2] = itemCommands(read(sendPkg1(s)));
      assert.ok(g1 !== undefined && g2 !== undefined);
      send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            resultsXml(2, "1", g1.cmdId, "./Log", "01234", { size: 10, moreData: true }),
          false,
        ),
      );
      const step = send(s, msg({ msgId: 3 }, resultsXml(1, "1", g2.cmdId, "./Other", "o")));
      assert.equal(step.kind, "reply", "the client answers the Alert 1225");
      const m = read(step);
      const a = alertsOf(m).find((x) => x.data === "1225");
      assert.ok(a !== undefined);
      assert.equal(a.items[0]?.source?.locUri, "./Log");
      assert.equal(m.body.final, true);
      assert.deepEqual(s.outcome.commands[0]?.results, []);
      assert.equal(s.outcome.commands[0].refusedResults[0]?.code, 1225);
      assert.equal(s.outcome.commands[1]?.results.length, 1, "the new Results is taken");
      const end = send(
        s,
        msg(
          { msgId: 4 },
          hdrStatusXml(1, m.hdr.msgId, 200) + statusXml(2, m.hdr.msgId, a.cmdId, "Alert", 200),
        ),
      );
      assert.equal(end.kind, "end");
      assert.deepEqual(end.outcome.unmatched, []);
    });

    it("keeps a chunk pending across an Alert 1222 in the same message", () => {
      const { s, cmdId } = afterGet();
      send(
        s,
        msg(
          { msgId: 2 },
          hdrStatusXml(1, 1, 212) +
            resultsXml(2, "1", cmdId, "./Log", "abc", { size: 6, moreData: true }) +
            alertXml(3, 1222),
          false,
        ),
      );
      const end = send(s, msg({ msgId: 3 }, resultsXml(1, "1", cmdId, "./Log", "def")));
      assert.equal(end.kind, "end");
      assert.deepEqual(end.outcome.commands[0]?.results[0]?.items[0]?.data, { kind: "text", text: "abcdef" });
    });

    it("refuses with 413 an object declared larger than the server's MaxObjSize", () => {
      const { s, cmdId } = afterGet({ maxObjSize: 8 });
      const m = read(
        send(
          s,
          msg(
            { msgId: 2 },
            hdrStatusXml(1, 1, 212) +
              resultsXml(2, "1", cmdId, "./Log", "0123", { size: 64, moreData: true }),
            false,
          ),
        ),
      );
      assert.equal(statusFor(m, "2")?.data, "413");
      assert.equal(m.hdr.meta?.maxObjSize, "8", "the server advertises its MaxObjSize");
    });
  });

  describe("server-initiated sessions", () => {
    it("refuses a Pkg#1 without Alert 1200 (400, nothing executed)", () => {
      const s = newSession({ initiation: { sessionId: "AF" } });
      s.enqueue([get("./X")]);
      const end = sendPkg1(s, { sessionId: "AF" }, pkg1Body(1201));
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "wrong-session");
      const m = read(end);
      assert.equal(hdrStatusOf(m).data, "400");
      assert.ok(
        statusesOf(m)
          .filter((x) => x.cmd !== "SyncHdr")
          .every((x) => x.data === "215"),
      );
      assert.deepEqual(commandsOf(m), []);
      assert.equal(end.outcome.authenticated, false);
      assert.deepEqual(end.outcome.devInfo, {});
    });

    it("refuses a Pkg#1 with Alert 1200 and another SessionID", () => {
      const s = newSession({ initiation: { sessionId: "AF" } });
      const end = sendPkg1(s, { sessionId: "B0" }, pkg1Body(1200));
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "wrong-session");
      assert.equal(hdrStatusOf(read(end)).data, "400");
    });

    it("accepts Alert 1200 with the Package #0 SessionID", () => {
      const s = newSession({ initiation: { sessionId: "AF" } });
      s.enqueue([get("./X")]);
      const step = sendPkg1(s, { sessionId: "AF" }, pkg1Body(1200));
      assert.equal(step.kind, "reply");
      assert.equal(read(step).hdr.sessionId, "AF");
      assert.equal(s.outcome.initiatedBy, "server");
    });

    it("refuses Alert 1200 in a session declared client-initiated", () => {
      const s = newSession({ initiation: "client" });
      const end = sendPkg1(s, {}, pkg1Body(1200));
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "protocol");
    });
  });

  describe("refused and garbage input", () => {
    const garbage: readonly [string, Uint8Array, string][] = [
      ["random bytes", Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 200) & 0xff), XML],
      ["an empty body", new Uint8Array(0), XML],
      ["HTML", ascii("<html><body>hello</body></html>"), XML],
      ["a truncated message", ascii(msg({ msgId: 1 }, pkg1Body()).slice(0, 180)), XML],
      ["XML sent as WBXML", ascii(msg({ msgId: 1 }, pkg1Body())), WBXML],
      [
        "a SyncML 1.0 document",
        ascii(msg({ msgId: 1 }, pkg1Body()).replace("<VerDTD>1.2", "<VerDTD>1.0")),
        XML,
      ],
    ];
    for (const [name, body, ct] of garbage) {
      it(`ends without a reply on ${name}`, () => {
        const s = newSession();
        s.enqueue([get("./X")]);
        const step = s.receive(body, ct, {});
        assert.equal(step.kind, "end");
        assert.equal(step.reply, undefined);
        assert.equal(step.outcome.error?.code, "decode");
        assert.equal(s.outcome.commands[0]?.sentAs.length, 0);
      });
    }

    it("ends on a Content-Type that is not SyncML DM", () => {
      const s = newSession();
      const step = send(s, msg({ msgId: 1 }, pkg1Body()), {}, "text/plain");
      assert.equal(step.kind, "end");
      assert.equal(step.outcome.error?.code, "content-type");
    });

    it("ends on garbage in the middle of a session, keeping what it learnt", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      read(sendPkg1(s));
      const step = s.receive(ascii("<SyncML"), XML, {});
      assert.equal(step.kind, "end");
      assert.equal(step.outcome.error?.code, "decode");
      assert.equal(step.outcome.devInfo["Man"], "Acme");
    });

    it("refuses a device other than the expected one with 403", () => {
      const s = newSession({ expectedDevice: "IMEI:000000000000000" });
      const end = sendPkg1(s);
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "unexpected-device");
      assert.equal(hdrStatusOf(read(end)).data, "403");
    });

    it("refuses a Pkg#1 without Alert 1201 or 1200", () => {
      const s = newSession();
      const end = sendPkg1(s, {}, devInfoXml(2));
      assert.equal(end.kind, "end");
      assert.equal(end.outcome.error?.code, "protocol");
      assert.equal(hdrStatusOf(read(end)).data, "400");
    });

    it("refuses a VerProto other than DM/1.2 with 513", () => {
      const s = newSession();
      const end = send(
        s,
        msg({ msgId: 1, cred: md5CredXml(NONCE_C) }, pkg1Body()).replace("DM/1.2", "SyncML/1.2"),
      );
      assert.equal(end.kind, "end");
      assert.equal(hdrStatusOf(read(end)).data, "513");
    });

    it("ends without a reply on a message of another SessionID mid-session", () => {
      const s = newSession();
      s.enqueue([get("./X")]);
      read(sendPkg1(s));
      const step = send(s, msg({ msgId: 2, sessionId: "2" }, hdrStatusXml(1, 1, 212)));
      assert.equal(step.kind, "end");
      assert.equal(step.reply, undefined);
      assert.equal(step.outcome.error?.code, "protocol");
    });

    it("answers 405 to a command a client may not send", () => {
      const s = newSession();
      const m = read(
        sendPkg1(
          s,
          {},
          pkg1Body() + `<Get><CmdID>3</CmdID><Item><Target><LocURI>./x</LocURI></Target></Item></Get>`,
        ),
      );
      assert.equal(statusFor(m, "3")?.data, "405");
    });
  });
});

/** A Generic Alert as protocol.md 3.8 shows it. */
function genericAlertXml(id: number): string {
  return (
    `<Alert><CmdID>${id}</CmdID><Data>1226</Data><Correlator>job-42</Correlator><Item>` +
    `<Source><LocURI>./FUMO/Pkg1</LocURI></Source>` +
    `<Meta>${metinf("Type", "urn:oma:at:oma-gwmo:completionstatus:1.0")}${metinf("Format", "chr")}${metinf("Mark", "critical")}</Meta>` +
    `<Data>./GwMO/Fanout/J1/Results</Data></Item></Alert>`
  );
}
