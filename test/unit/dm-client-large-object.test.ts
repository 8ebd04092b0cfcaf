import assert from "node:assert/strict";
import { ClientSession, type ClientOutcome } from "../../src/dm/client-session.js";
import { ServerSession, type SessionOutcome } from "../../src/dm/server-session.js";
import {
  decodeMessage,
  encodeMessage,
  type Command,
  type Data,
  type Encoding,
  type StatusCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import type { DmTree } from "../../src/tree/tree.js";
import { seededGatewayTree } from "../helpers/gateway.js";

// Large objects (protocol.md 3.6) between our client and our server, and against hand-made server
// messages: chunks under MaxMsgSize, 213 + 1222, 424 on a size mismatch, 1225 on a broken object.

const DEV_ID = "IMEI:490154203237518";
const SERVER_URI = "https://dm.example.com/dm";
const CLCRED = { name: "gw", secret: "client-secret" };
const SRVCRED = { name: "dmsrv", secret: "server-secret" };
const SMALL = 8192;
const MB = 1024 * 1024;

function gatewayTree(): DmTree {
  return seededGatewayTree(DEV_ID, { vendorAcl: "Add=dmsrv&Get=dmsrv&Replace=dmsrv&Delete=dmsrv" });
}

function blob(size: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: size }, () => (s = (s * 1103515245 + 12345) & 0x7fffffff) >> 16);
}

interface Run {
  client: ClientOutcome;
  server: SessionOutcome;
  messages: number;
  largestToServer: number;
  largestToClient: number;
  /** Every message the client sent. */
  toServer: Uint8Array[];
}

function run(
  encoding: Encoding,
  commands: Command[],
  options: { tree: DmTree; serverMaxMsgSize?: number; serverMaxObjSize?: number; clientMaxMsgSize?: number },
): Run {
  let seed = 7;
  const randomBytes = (n: number): Uint8Array =>
    Uint8Array.from({ length: n }, () => (seed = (seed * 31 + 11) & 0xff));
  const clientNonce = Uint8Array.from([1, 2, 3, 4]);
  const serverNonce = Uint8Array.from([5, 6, 7, 8]);
  const client = new ClientSession({
    tree: options.tree,
    account: {
      serverId: "dmsrv",
      serverUri: SERVER_URI,
      client: { scheme: "md5", ...CLCRED },
      server: { scheme: "md5", ...SRVCRED },
    },
    nonces: { client: clientNonce, server: serverNonce },
    devId: DEV_ID,
    initiator: "server",
    sessionId: "1A2",
    encoding,
    maxMsgSize: options.clientMaxMsgSize ?? 65_536,
    randomBytes,
  });
  const server = new ServerSession({
    serverUri: SERVER_URI,
    expectedDevice: DEV_ID,
    clientAuth: { scheme: "md5", ...CLCRED },
    serverAuth: { scheme: "md5", ...SRVCRED },
    clientNonce,
    serverNonce,
    randomBytes,
    initiation: { sessionId: "1A2" },
    ...(options.serverMaxMsgSize !== undefined && { maxMsgSize: options.serverMaxMsgSize }),
    ...(options.serverMaxObjSize !== undefined && { maxObjSize: options.serverMaxObjSize }),
  });
  server.enqueue(commands);
  let largestToServer = 0;
  let largestToClient = 0;
  const toServer: Uint8Array[] = [];
  let step = client.start();
  for (let messages = 1; messages < 1000; messages++) {
    largestToServer = Math.max(largestToServer, step.body.length);
    toServer.push(step.body);
    const reply = server.receive(step.body, step.contentType, step.headers);
    const done = (c: ClientOutcome, s: SessionOutcome): Run => ({
      client: c,
      server: s,
      messages,
      largestToServer,
      largestToClient,
      toServer,
    });
    if (reply.kind === "end" && reply.reply === undefined)
      return done(client.outcome ?? assert.fail("client still running"), reply.outcome);
    const r = reply.kind === "end" ? reply.reply : reply;
    assert.ok(r !== undefined);
    largestToClient = Math.max(largestToClient, r.body.length);
    const next = client.receive(r.body, r.contentType, r.headers);
    if (next.kind === "done") return done(next, server.outcome);
    step = next;
  }
  assert.fail("the session did not end within 1000 messages");
}

function bytesOf(d: Data | undefined, format: string | undefined): Uint8Array {
  assert.ok(d !== undefined);
  if (d.kind === "opaque") return d.bytes;
  assert.equal(d.kind, "text");
  return format === "b64" ? new Uint8Array(Buffer.from(d.text, "base64")) : new TextEncoder().encode(d.text);
}

describe("DM client: large objects", () => {
  for (const encoding of ["xml", "wbxml"] as const) {
    it(`${encoding}: a 1 MB leaf fetched by Get goes in chunks under the server's 8 KB MaxMsgSize`, () => {
      const tree = gatewayTree();
      const value = blob(MB, 3);
      tree.write({ path: "./Vendor/Blob", format: "bin", value, acl: "Get=dmsrv" });
      const get: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./Vendor/Blob" } }] };
      const r = run(encoding, [get], { tree, serverMaxMsgSize: SMALL });
      assert.ok(r.client.ok, r.client.reason);
      assert.equal(r.server.error, undefined, r.server.error?.reason);
      assert.ok(r.largestToServer <= SMALL, `a message of ${r.largestToServer} bytes`);
      assert.ok(r.messages > 100, `${r.messages} messages`);
      const [rec] = r.server.commands;
      assert.equal(rec?.status, 200);
      assert.equal(rec.results.length, 1);
      const item = rec.results[0]?.items[0];
      assert.equal(item?.meta?.format, encoding === "xml" ? "b64" : "bin");
      assert.equal(item.moreData, undefined);
      assert.deepEqual(bytesOf(item.data, item.meta.format), value);
      // On the wire: one chunk per message, Meta Size (the total) on the first, MoreData on all but the last.
      const chunks = r.toServer
        .flatMap((b) => decodeMessage(b).message.body.commands)
        .filter((c) => c.kind === "Results");
      assert.equal(chunks.length, r.toServer.length - 2);
      const total = encoding === "xml" ? Math.ceil(MB / 3) * 4 : MB;
      chunks.forEach((c, i) => {
        const it0 = c.items[0];
        assert.equal(it0?.meta?.size, i === 0 ? String(total) : undefined);
        assert.equal(it0?.moreData, i < chunks.length - 1 ? true : undefined);
      });
    });

    it(`${encoding}: a 1 MB Replace from the server arrives in chunks under the client's 8 KB MaxMsgSize`, () => {
      const tree = gatewayTree();
      tree.write({ path: "./Vendor/Blob", format: "bin", value: Uint8Array.from([1]), acl: "Replace=dmsrv" });
      const value = blob(MB, 5);
      const replace: Command = {
        kind: "Replace",
        cmdId: "1",
        items: [
          {
            target: { locUri: "./Vendor/Blob" },
            meta: { format: encoding === "xml" ? "b64" : "bin" },
            data:
              encoding === "xml"
                ? { kind: "text", text: Buffer.from(value).toString("base64") }
                : { kind: "opaque", bytes: value },
          },
        ],
      };
      const r = run(encoding, [replace], { tree, clientMaxMsgSize: SMALL });
      assert.ok(r.client.ok, r.client.reason);
      assert.equal(r.server.error, undefined, r.server.error?.reason);
      assert.ok(r.largestToClient <= SMALL, `a message of ${r.largestToClient} bytes`);
      assert.ok(r.messages > 100, `${r.messages} messages`);
      const [rec] = r.server.commands;
      assert.equal(rec?.status, 200);
      assert.ok(rec.statuses.slice(0, -1).every((s) => s.data === "213"));
      const node = tree.read("./Vendor/Blob");
      assert.equal(node?.format, "bin");
      assert.deepEqual(node.value, value);
    });
  }

  it("a Results larger than the server's MaxObjSize: the Get is answered 413", () => {
    const tree = gatewayTree();
    tree.write({ path: "./Vendor/Blob", format: "bin", value: blob(20_000, 9), acl: "Get=dmsrv" });
    const get: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./Vendor/Blob" } }] };
    const r = run("wbxml", [get], { tree, serverMaxMsgSize: SMALL, serverMaxObjSize: 10_000 });
    assert.ok(r.client.ok, r.client.reason);
    const [rec] = r.server.commands;
    assert.equal(rec?.status, 413);
    assert.equal(rec.results.length, 0);
  });
});

// ------------------------------------------------------------------ hand-made server messages

function handClient(tree: DmTree): ClientSession {
  const client = new ClientSession({
    tree,
    account: {
      serverId: "dmsrv",
      serverUri: SERVER_URI,
      client: { scheme: "none" },
      server: { scheme: "none" },
    },
    nonces: { client: new Uint8Array(4), server: new Uint8Array(4) },
    devId: DEV_ID,
    initiator: "server",
    sessionId: "1A2",
    encoding: "xml",
    maxMsgSize: SMALL,
    randomBytes: (n) => new Uint8Array(n),
  });
  client.start();
  return client;
}

function serverMessage(msgId: string, commands: Command[], final: boolean): Uint8Array {
  const message: SyncMLMessage = {
    version: "1.2",
    hdr: {
      verDTD: "1.2",
      verProto: "DM/1.2",
      sessionId: "1A2",
      msgId,
      target: { locUri: DEV_ID },
      source: { locUri: SERVER_URI },
    },
    body: { commands, final },
  };
  return encodeMessage(message, "xml");
}

function send(client: ClientSession, body: Uint8Array): Command[] {
  const step = client.receive(body, "application/vnd.syncml.dm+xml", {});
  assert.equal(step.kind, "send");
  return [...decodeMessage(step.body).message.body.commands];
}

function statusFor(commands: Command[], cmdRef: string): StatusCommand | undefined {
  return commands.find((c): c is StatusCommand => c.kind === "Status" && c.cmdRef === cmdRef);
}

function chunk(cmdId: string, text: string, moreData: boolean, size?: number): Command {
  return {
    kind: "Replace",
    cmdId,
    items: [
      {
        target: { locUri: "./Vendor/Note" },
        meta: { format: "chr", ...(size !== undefined && { size: String(size) }) },
        data: { kind: "text", text },
        ...(moreData && { moreData: true }),
      },
    ],
  };
}

describe("DM client: large objects from hand-made server messages", () => {
  function noteTree(): DmTree {
    const tree = gatewayTree();
    tree.write({ path: "./Vendor/Note", format: "chr", value: "old", acl: "Replace=dmsrv&Get=dmsrv" });
    return tree;
  }

  it("chunks reassembled: 213 per chunk, the tree changed only at the last", () => {
    const tree = noteTree();
    const client = handClient(tree);
    const first = send(client, serverMessage("1", [chunk("1", "héllo ", true, 12)], false));
    assert.equal(statusFor(first, "1")?.data, "213");
    assert.equal(tree.read("./Vendor/Note")?.value, "old");
    const last = send(client, serverMessage("2", [chunk("2", "world", false)], true));
    assert.equal(statusFor(last, "2")?.data, "200");
    assert.equal(tree.read("./Vendor/Note")?.value, "héllo world");
  });

  it("a size mismatch: 424 and the tree unchanged", () => {
    const tree = noteTree();
    const client = handClient(tree);
    const first = send(client, serverMessage("1", [chunk("1", "abcdef", true, 100)], false));
    assert.equal(statusFor(first, "1")?.data, "213");
    const last = send(client, serverMessage("2", [chunk("2", "ghi", false)], true));
    assert.equal(statusFor(last, "2")?.data, "424");
    assert.equal(tree.read("./Vendor/Note")?.value, "old");
  });

  it("a new command before the last chunk: Alert 1225 and the new command handled", () => {
    const tree = noteTree();
    const client = handClient(tree);
    send(client, serverMessage("1", [chunk("1", "abcdef", true, 9)], false));
    const get: Command = { kind: "Get", cmdId: "2", items: [{ target: { locUri: "./Vendor/Note" } }] };
    const reply = send(client, serverMessage("2", [get], true));
    const alert = reply.find((c) => c.kind === "Alert" && c.data === "1225");
    assert.ok(alert !== undefined && alert.kind === "Alert");
    assert.equal(alert.items[0]?.target?.locUri, "./Vendor/Note");
    assert.equal(statusFor(reply, "2")?.data, "200");
    const results = reply.find((c) => c.kind === "Results");
    assert.deepEqual(results?.kind === "Results" && results.items[0]?.data, { kind: "text", text: "old" });
    assert.equal(tree.read("./Vendor/Note")?.value, "old");
  });

  it("an object larger than our maxObjSize: 413 and the tree unchanged", () => {
    const tree = noteTree();
    const client = new ClientSession({
      tree,
      account: {
        serverId: "dmsrv",
        serverUri: SERVER_URI,
        client: { scheme: "none" },
        server: { scheme: "none" },
      },
      nonces: { client: new Uint8Array(4), server: new Uint8Array(4) },
      devId: DEV_ID,
      initiator: "server",
      sessionId: "1A2",
      encoding: "xml",
      maxMsgSize: SMALL,
      maxObjSize: 8,
      randomBytes: (n) => new Uint8Array(n),
    });
    client.start();
    send(client, serverMessage("1", [chunk("1", "abcdef", true)], false));
    const last = send(client, serverMessage("2", [chunk("2", "ghijkl", false)], true));
    assert.equal(statusFor(last, "2")?.data, "413");
    assert.equal(tree.read("./Vendor/Note")?.value, "old");
  });
});

describe("DM client: a Results of many items split over messages", () => {
  for (const encoding of ["xml", "wbxml"] as const) {
    it(`${encoding}: Get ?list=StructData of 400 leaves under an 8 KB MaxMsgSize arrives whole, every message within it`, () => {
      const tree = gatewayTree();
      tree.transaction(() => {
        tree.write({ path: "./Vendor/Many", format: "node", acl: "Get=dmsrv" });
        for (let i = 0; i < 400; i++)
          tree.write({ path: `./Vendor/Many/n${i}`, format: "chr", value: `value-${i}-${"x".repeat(40)}` });
      });
      const get: Command = {
        kind: "Get",
        cmdId: "1",
        items: [{ target: { locUri: "./Vendor/Many?list=StructData" } }],
      };
      const r = run(encoding, [get], { tree, serverMaxMsgSize: SMALL });
      assert.ok(r.client.ok, r.client.reason);
      assert.equal(r.server.error, undefined, r.server.error?.reason);
      assert.ok(r.largestToServer <= SMALL, `a message of ${r.largestToServer} bytes`);
      const results = r.toServer
        .flatMap((b) => decodeMessage(b).message.body.commands)
        .filter((c) => c.kind === "Results");
      assert.ok(results.length > 1, `${results.length} Results commands`);
      const refs = new Set(results.map((c) => `${c.msgRef ?? ""}/${c.cmdRef}`));
      assert.equal(refs.size, 1, "each names the one Get");
      const uris = results.flatMap((c) => c.items.map((i) => i.source?.locUri));
      assert.equal(uris.filter((u) => /\/n\d+$/.test(u ?? "")).length, 400, "every leaf once");
      assert.equal(new Set(uris).size, uris.length, "no item twice");
      const [rec] = r.server.commands;
      assert.equal(rec?.status, 200);
    });
  }
});
