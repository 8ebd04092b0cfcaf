/**
 * Runs one OMA DM management session with one northbound DM server: the glue between the DMAcc
 * account in the tree, the alert outbox, the sans-I/O `ClientSession` and a message transport.
 *
 *   DMAcc AppAuth (names, secrets, nonces) --+
 *   outbox.pending(serverId) ---------------+--> ClientSession.start() -> POST -> receive() -> ...
 *                                                 (at most maxMessages exchanges)
 *   done -> one tree transaction: outbox.acknowledge(acknowledged ids) + both AAuthData nonces
 *           + the server's declared MaxMsgSize / MaxObjSize (server-limits.ts)
 *
 * Decisions:
 * - The pending alerts are counted as attempted (`recordAttempt`) before the first message goes
 *   out, so an alert that keeps failing shows it even when the process dies mid-session.
 * - Only a session the `ClientSession` finished persists anything. A transport failure (timeout,
 *   HTTP error) or the message bound leaves the stored nonces and the outbox as they were: alerts
 *   the server may already have answered are sent again next time (at least once, never lost).
 * - The nonces `ClientSession` reports are written as they are: it already keeps a nonce from an
 *   unauthenticated server out of them (protocol.md 3.7).
 * - The summary never holds a credential or a nonce.
 */
import assert from "node:assert/strict";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import type { AuthScheme } from "../dm/auth.js";
import {
  ClientSession,
  type AuthConfig,
  type ClientOutcome,
  type Nonces,
  type OutgoingMessage,
} from "../dm/client-session.js";
import { answerUserInteraction, type HeadlessPolicy } from "../dm/user-interaction.js";
import { sessionIdText } from "../dm/package0.js";
import { CLIENT_AUTH_NAME, SERVER_AUTH_NAME } from "../mo/dmacc.js";
import { encodingForContentType, type AlertCommand, type Encoding } from "../syncml/index.js";
import type { DmTree } from "../tree/tree.js";
import type { AlertOutbox } from "./outbox.js";
import { recordServerLimits, type ServerLimits } from "./server-limits.js";
import type { MessageTransport, TransportFailureKind } from "./http-transport.js";

export interface SessionAccount {
  /** The account's node (`./DMAcc/dmserver`). */
  readonly accountPath: string;
  /** The server's ServerID (ACLs, outbox). */
  readonly serverId: string;
  /** Where Package 1 goes. */
  readonly serverUri: string;
  /** What we present (CLCRED), from AppAuth/ClientSide. */
  readonly clientScheme: AuthScheme | "none";
  /** What the server must present (SRVCRED), from AppAuth/ServerSide. */
  readonly serverScheme: AuthScheme | "none";
}

export type SessionTrigger =
  | {
      readonly kind: "server";
      readonly sessionId: string;
      /**
       * Set when the Pkg#0 digest matched only a fallback nonce (protocol.md 5.1): the session's
       * credentials, both ways, are built on these bytes, and both sides re-issue nonces by Chal.
       * Secret: never logged.
       */
      readonly fallbackNonce?: Uint8Array;
    }
  | { readonly kind: "client" };

export interface ManagementSessionOptions {
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
  readonly transport: MessageTransport;
  readonly account: SessionAccount;
  /** `./DevInfo/DevId`. */
  readonly devId: string;
  readonly trigger: SessionTrigger;
  readonly encoding: Encoding;
  /** Our MaxMsgSize, bytes; also the cap on each response body. */
  readonly maxMsgSize: number;
  /** Randomness for nonces and client-initiated session ids. */
  randomBytes(size: number): Uint8Array;
  /** Deadline of each HTTP exchange, ms. */
  readonly timeoutMs: number;
  /** Most messages we send in the session (>= 1) before giving up. */
  readonly maxMessages: number;
  /** Aborts the session: the exchange in flight is cancelled, or Alert 1223 goes between messages. */
  readonly signal?: AbortSignal;
  /** The answers to the server's user-interaction alerts; without it they answer 406. */
  readonly userInteraction?: HeadlessPolicy;
  /** "dmgw:northbound:session"; never given a secret or a nonce. */
  readonly log?: Logger;
}

/** Deadline of our Alert 1223: best effort, the session is over either way. */
const ABORT_TIMEOUT_MS = 2000;

export interface SessionSummary {
  /** True when the session ended as the protocol ends it. */
  readonly ok: boolean;
  /** Why it did not (no secrets, no nonces). */
  readonly reason?: string;
  /** Set when the transport failed. */
  readonly transportFailure?: TransportFailureKind;
  /** The server sent a message that does not decode. */
  readonly undecodable?: true;
  readonly sessionId: string;
  /** Messages sent. */
  readonly messages: number;
  /** Outbox ids the server answered 200/202 (removed from the outbox). */
  readonly alertsAcknowledged: readonly string[];
  readonly serverAuthenticated: boolean;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/**
 * Runs one session to its end (or failure) and persists its outcome. Never rejects for a peer's
 * failure: those are `ok: false` summaries.
 *
 * @throws GatewayError from the tree or the store (Store_*, Tree_*) when persisting fails.
 */
export async function runManagementSession(o: ManagementSessionOptions): Promise<SessionSummary> {
  const sessionId =
    o.trigger.kind === "server" ? o.trigger.sessionId : newClientSessionId((n) => o.randomBytes(n));
  let messages = 0;
  let bytesSent = 0;
  let bytesReceived = 0;
  const summary = (
    outcome: Pick<ClientOutcome, "ok" | "reason" | "serverAuthenticated" | "alertsAcknowledged"> &
      Partial<Pick<ClientOutcome, "undecodable">>,
    transportFailure?: TransportFailureKind,
  ): SessionSummary => ({
    ok: outcome.ok,
    ...(outcome.reason !== undefined && { reason: outcome.reason }),
    ...(outcome.undecodable === true && { undecodable: true as const }),
    ...(transportFailure !== undefined && { transportFailure }),
    sessionId,
    messages,
    alertsAcknowledged: outcome.alertsAcknowledged,
    serverAuthenticated: outcome.serverAuthenticated,
    bytesSent,
    bytesReceived,
  });
  const failed = (reason: string, transportFailure?: TransportFailureKind): SessionSummary =>
    summary({ ok: false, reason, serverAuthenticated: false, alertsAcknowledged: [] }, transportFailure);

  const log = o.log ?? SILENT_LOGGER;
  const credentials = readCredentials(o.tree, o.account);
  if (!credentials.ok) return failed(credentials.reason);
  const fallback = o.trigger.kind === "server" ? o.trigger.fallbackNonce : undefined;
  const nonces =
    fallback === undefined
      ? credentials.nonces
      : { client: Uint8Array.from(fallback), server: Uint8Array.from(fallback) };

  const alerts = o.outbox.pending(o.account.serverId);
  if (alerts.length > 0) o.outbox.recordAttempt(alerts.map((a) => a.id));

  const policy = o.userInteraction;
  const session = new ClientSession({
    tree: o.tree,
    account: {
      serverId: o.account.serverId,
      serverUri: o.account.serverUri,
      client: credentials.client,
      server: credentials.server,
    },
    nonces,
    devId: o.devId,
    initiator: o.trigger.kind,
    sessionId,
    encoding: o.encoding,
    maxMsgSize: o.maxMsgSize,
    alerts,
    randomBytes: (n) => o.randomBytes(n),
    ...(policy !== undefined && {
      onUserInteraction: (alert: AlertCommand) => {
        const answer = answerUserInteraction(alert, policy);
        log.info("answered a user-interaction alert headless", {
          serverId: o.account.serverId,
          alert: alert.data,
          status: answer.status,
        });
        return answer;
      },
    }),
  });

  const post = (step: OutgoingMessage, timeoutMs: number, signal: AbortSignal | undefined) => {
    messages++;
    bytesSent += step.body.byteLength;
    log.debug(() => `» message ${messages} to ${o.account.serverId}: ${step.body.byteLength} bytes`);
    return o.transport.postMessage({
      url: step.url,
      body: step.body,
      contentType: step.contentType,
      headers: step.headers,
      timeoutMs,
      maxResponseBytes: o.maxMsgSize,
      ...(signal !== undefined && { signal }),
    });
  };
  /** Sends our Alert 1223 (best effort) and persists what the session settled before it. */
  const abort = async (reason: string): Promise<SessionSummary> => {
    const last = session.abort(reason);
    if (last !== undefined) await post(last, Math.min(o.timeoutMs, ABORT_TIMEOUT_MS), undefined);
    return settle();
  };
  const settle = (transportFailure?: TransportFailureKind, transportMessage?: string): SessionSummary => {
    const outcome = session.outcome;
    assert.ok(outcome !== undefined, "the session is over");
    persist(o, outcome, transportFailure === undefined ? "all" : "received", session.serverLimits);
    const result = summary(
      transportMessage === undefined ? outcome : { ...outcome, reason: transportMessage },
      transportFailure,
    );
    return result;
  };

  let step: OutgoingMessage = session.start();
  for (;;) {
    if (o.signal?.aborted === true) return abort("the gateway is stopping");
    if (messages >= o.maxMessages) return abort(`the session did not end within ${o.maxMessages} messages`);
    const res = await post(step, o.timeoutMs, o.signal);
    if (step.last === true) return settle();
    if (!res.ok) {
      // What earlier answers settled stays settled: acknowledged alerts leave the outbox.
      session.abort(res.message);
      return settle(res.kind, res.message);
    }
    bytesReceived += res.body.byteLength;
    if (encodingForContentType(res.contentType) === undefined) {
      // Not a SyncML DM answer (a captive portal, a proxy's error page): nothing in it is executed.
      log.warn("the server answered with a content type that is not SyncML DM", {
        serverId: o.account.serverId,
        contentType: res.contentType.slice(0, 80),
        bytes: res.body.byteLength,
        head: res.body.subarray(0, 16),
      });
      return abort(`the server answered with content type ${JSON.stringify(res.contentType.slice(0, 80))}`);
    }
    log.debug(() => `« answer ${messages} from ${o.account.serverId}: ${res.body.byteLength} bytes`);
    const next = session.receive(res.body, res.contentType, res.headers);
    if (next.kind === "done") {
      persist(o, next, "all", session.serverLimits);
      return summary(next);
    }
    step = next;
  }
}

/** A client-initiated SessionID: random in 1..0xFFFF, upper-case hex (as Pkg#0's, package0.ts). */
export function newClientSessionId(randomBytes: (size: number) => Uint8Array): string {
  const b = randomBytes(2);
  return sessionIdText((((b[0] ?? 0) << 8) | (b[1] ?? 0)) % 0xffff || 1);
}

function authPath(account: SessionAccount, side: string, leaf: string): string {
  return `${account.accountPath}/AppAuth/${side}/${leaf}`;
}

type Credentials =
  | { readonly ok: true; readonly client: AuthConfig; readonly server: AuthConfig; readonly nonces: Nonces }
  | { readonly ok: false; readonly reason: string };

/** The two sides' names, secrets and nonces from the account's AppAuth nodes. */
function readCredentials(tree: DmTree, account: SessionAccount): Credentials {
  const side = (
    name: string,
    scheme: AuthScheme | "none",
  ): { ok: true; auth: AuthConfig; nonce: Uint8Array } | { ok: false; reason: string } => {
    const nonce = bytesOf(tree.read(authPath(account, name, "AAuthData"))?.value);
    if (scheme === "none") return { ok: true, auth: { scheme: "none" }, nonce };
    const user = tree.read(authPath(account, name, "AAuthName"))?.value;
    const secret = tree.read(authPath(account, name, "AAuthSecret"))?.value;
    if (user === undefined || secret === undefined) {
      // Names the node, never its value.
      return { ok: false, reason: `${account.accountPath}/AppAuth/${name} lacks AAuthName or AAuthSecret` };
    }
    return { ok: true, auth: { scheme, name: textOf(user), secret: textOf(secret) }, nonce };
  };
  const client = side(CLIENT_AUTH_NAME, account.clientScheme);
  if (!client.ok) return client;
  const server = side(SERVER_AUTH_NAME, account.serverScheme);
  if (!server.ok) return server;
  return {
    ok: true,
    client: client.auth,
    server: server.auth,
    nonces: { client: client.nonce, server: server.nonce },
  };
}

/**
 * Acknowledged alerts leave the outbox and the new nonces are stored, in one transaction. After a
 * transport failure (`received`) only what came from the server is certain: its acknowledgements and
 * the nonce it gave us. Whether our last message, and a nonce it carried, reached the server is not
 * known, so the stored server nonce stays (a mismatch is repaired by the next challenge).
 */
function persist(
  o: ManagementSessionOptions,
  outcome: ClientOutcome,
  what: "all" | "received",
  limits: ServerLimits,
): void {
  // No fsync of its own (Store.relaxed): losing it to a power cut costs a resent alert and one
  // challenge, and the server's commands were already durable before their Status went out.
  o.tree.store.relaxed(() => {
    persistNow(o, outcome, what, limits);
  });
}

function persistNow(
  o: ManagementSessionOptions,
  outcome: ClientOutcome,
  what: "all" | "received",
  limits: ServerLimits,
): void {
  o.tree.transaction(() => {
    o.outbox.acknowledge(outcome.alertsAcknowledged);
    // The server's MaxMsgSize / MaxObjSize, for alerts built before its next session (fan-out
    // results inline or by URI, server-limits.ts). Only an authenticated server's: a peer that
    // could not prove it is the server does not get to size what we send the server.
    if (outcome.serverAuthenticated) recordServerLimits(o.tree.store, o.account.serverId, limits);
    const nonces: [string, Uint8Array][] = [[CLIENT_AUTH_NAME, outcome.nonces.client]];
    if (what === "all") nonces.push([SERVER_AUTH_NAME, outcome.nonces.server]);
    for (const [name, nonce] of nonces) {
      o.tree.write({
        path: authPath(o.account, name, "AAuthData"),
        format: "bin",
        value: Uint8Array.from(nonce),
        secret: true,
      });
    }
  });
}

function bytesOf(value: string | Uint8Array | undefined): Uint8Array {
  if (value === undefined) return new Uint8Array(0);
  return typeof value === "string" ? new Uint8Array(Buffer.from(value, "utf8")) : Uint8Array.from(value);
}

function textOf(value: string | Uint8Array): string {
  return typeof value === "string" ? value : Buffer.from(value).toString("utf8");
}
