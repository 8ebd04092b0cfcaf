import assert from "node:assert/strict";
import { ClientSession, type ClientOutcome, type PendingAlert } from "../../src/dm/client-session.js";
import { ServerSession, type SessionOutcome } from "../../src/dm/server-session.js";
import type { Command, Encoding } from "../../src/syncml/index.js";
import type { DmTree } from "../../src/tree/tree.js";
import { seededGatewayTree } from "../helpers/gateway.js";

// Our client session against our server session, each written from protocol.md on its own and
// tested alone against hand-written peer messages: here they must agree, message by message.

const DEV_ID = "IMEI:490154203237518";
const SERVER_URI = "https://dm.example.com/dm";
const CLCRED = { name: "gw", secret: "client-secret" };
const SRVCRED = { name: "dmsrv", secret: "server-secret" };

function gatewayTree(): DmTree {
  // The server may manage ./Vendor (its own subtree).
  return seededGatewayTree(DEV_ID, { vendorAcl: "Add=dmsrv&Get=dmsrv&Replace=dmsrv&Delete=dmsrv" });
}

interface Run {
  client: ClientOutcome;
  server: SessionOutcome;
  messages: number;
}

/** The largest message the client sent in the last `run`. */
let largestClientMessage = 0;

function run(
  scheme: "md5" | "hmac" | "basic",
  encoding: Encoding,
  commands: Command[],
  options: {
    tree?: DmTree;
    alerts?: PendingAlert[];
    clientMaxMsgSize?: number;
    serverMaxMsgSize?: number;
  } = {},
): Run {
  const tree = options.tree ?? gatewayTree();
  let seed = 7;
  const randomBytes = (n: number): Uint8Array =>
    Uint8Array.from({ length: n }, () => (seed = (seed * 31 + 11) & 0xff));
  const clientNonce = Uint8Array.from([1, 2, 3, 4]);
  const serverNonce = Uint8Array.from([5, 6, 7, 8]);
  const client = new ClientSession({
    tree,
    account: {
      serverId: "dmsrv",
      serverUri: SERVER_URI,
      client: { scheme, ...CLCRED },
      server: { scheme, ...SRVCRED },
    },
    nonces: { client: clientNonce, server: serverNonce },
    devId: DEV_ID,
    initiator: "server",
    sessionId: "1A2",
    encoding,
    maxMsgSize: options.clientMaxMsgSize ?? 16_384,
    randomBytes,
    ...(options.alerts !== undefined && { alerts: options.alerts }),
  });
  const server = new ServerSession({
    serverUri: SERVER_URI,
    expectedDevice: DEV_ID,
    clientAuth: { scheme, ...CLCRED },
    serverAuth: { scheme, ...SRVCRED },
    clientNonce,
    serverNonce,
    randomBytes,
    initiation: { sessionId: "1A2" },
    ...(options.serverMaxMsgSize !== undefined && { maxMsgSize: options.serverMaxMsgSize }),
  });
  server.enqueue(commands);
  let step = client.start();
  for (let messages = 1; messages < 60; messages++) {
    largestClientMessage = Math.max(largestClientMessage, step.body.byteLength);
    const reply = server.receive(step.body, step.contentType, step.headers);
    if (reply.kind === "end" && reply.reply === undefined) {
      return {
        client: client.outcome ?? assert.fail("client still running"),
        server: reply.outcome,
        messages,
      };
    }
    const r = reply.kind === "end" ? reply.reply : reply;
    assert.ok(r !== undefined);
    const next = client.receive(r.body, r.contentType, r.headers);
    if (next.kind === "done") return { client: next, server: server.outcome, messages };
    step = next;
  }
  assert.fail("the session did not end within 60 messages");
}

const GET_MAN: Command = { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Man" } }] };
const ADD_SETTING: Command = {
  kind: "Add",
  cmdId: "2",
  items: [
    { target: { locUri: "./Vendor/Setting" }, meta: { format: "int" }, data: { kind: "text", text: "42" } },
  ],
};

describe("DM session: our client against our server", () => {
  for (const scheme of ["basic", "md5", "hmac"] as const) {
    for (const encoding of ["xml", "wbxml"] as const) {
      it(`${scheme} over ${encoding}: both sides authenticate, the server's commands run, Status and Results come back`, () => {
        const tree = gatewayTree();
        const r = run(scheme, encoding, [GET_MAN, ADD_SETTING], { tree });
        assert.ok(r.client.ok, r.client.reason);
        assert.ok(r.client.serverAuthenticated);
        assert.equal(r.server.error, undefined, r.server.error?.reason);
        assert.ok(r.server.authenticated);
        assert.equal(r.server.devInfo["DevId"], DEV_ID);
        const [get, add] = r.server.commands;
        assert.equal(get?.status, 200);
        assert.deepEqual(get.results[0]?.items[0]?.data, { kind: "text", text: "ACME" });
        assert.equal(add?.status, 200);
        assert.equal(tree.read("./Vendor/Setting")?.value, "42");
        // Each side ends with the nonce the other issued for the next session.
        assert.deepEqual(r.client.nonces.client, r.server.nextClientNonce);
      });
    }
  }

  it("a Generic Alert with a Correlator reaches the server and is acknowledged", () => {
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
    const r = run("md5", "wbxml", [], { alerts });
    assert.ok(r.client.ok, r.client.reason);
    assert.deepEqual(r.client.alertsAcknowledged, ["job-1"]);
    const [alert] = r.server.genericAlerts;
    assert.equal(alert?.correlator, "corr-42");
    assert.equal(alert.items[0]?.type, "urn:oma:at:oma-gwmo:completionstatus:1.0");
    assert.deepEqual(alert.items[0].data, { kind: "text", text: "./GwMO/Fanout/job1/Results" });
  });

  it("many Gets under a small client MaxMsgSize: every command answered once", () => {
    const gets: Command[] = Array.from({ length: 40 }, (_, i) => ({
      kind: "Get",
      cmdId: String(i + 1),
      items: [{ target: { locUri: i % 2 === 0 ? "./DevInfo/Man" : "./DevDetail/FwV" } }],
    }));
    const r = run("md5", "xml", gets, { clientMaxMsgSize: 3000 });
    assert.ok(r.client.ok, r.client.reason);
    assert.equal(r.server.error, undefined, r.server.error?.reason);
    assert.equal(r.server.commands.length, 40);
    assert.ok(r.server.commands.every((c) => c.status === 200 && c.results.length === 1));
    assert.ok(r.messages > 2, `${r.messages} messages`);
  });

  for (const encoding of ["xml", "wbxml"] as const) {
    it(`${encoding}: many Results under a small server MaxMsgSize: every client message fits, none is wasted`, () => {
      const gets: Command[] = Array.from({ length: 60 }, (_, i) => ({
        kind: "Get",
        cmdId: String(i + 1),
        items: [{ target: { locUri: ["./DevInfo/Man", "./DevDetail/FwV", "./DevInfo/DevId"][i % 3] ?? "" } }],
      }));
      const limit = 2000;
      largestClientMessage = 0;
      const r = run("hmac", encoding, gets, { serverMaxMsgSize: limit });
      assert.ok(r.client.ok, r.client.reason);
      assert.equal(r.server.error, undefined, r.server.error?.reason);
      assert.equal(r.server.commands.length, 60);
      assert.ok(r.server.commands.every((c) => c.status === 200 && c.results.length === 1));
      assert.ok(largestClientMessage <= limit, `a client message of ${largestClientMessage} bytes`);
      // The estimate packs messages close to the limit: not more than a few hundred bytes short.
      assert.ok(
        largestClientMessage > limit - 400,
        `the fullest message held only ${largestClientMessage} bytes`,
      );
    });
  }
});
