/**
 * The OMA DM 1.2 client side of one management session (protocol.md 3.1), sans-I/O: the caller
 * (northbound/) moves the bytes over HTTP and persists what the outcome says; this class decides
 * every message.
 *
 *   start() ----------------------------> Package 1: Alert 1200/1201, Replace DevInfo, Generic Alerts
 *   receive(server message) -> next step: Status (+ Results) for the server's commands, run against
 *                                         the tree in one transaction before the reply is built
 *
 * Authentication both ways (protocol.md 3.7): our credentials (CLCRED: basic/MD5 Cred in SyncHdr,
 * or the x-syncml-hmac header over the exact body) and the server's (SRVCRED): commands from a
 * server that has not authenticated are answered 401/407 with a Chal and never executed.
 * Multi-message packages: our package is split to fit the server's MaxMsgSize and sent one message
 * at a time as the server asks (Alert 1222); a server package without Final is answered with 1222.
 *
 * Not yet here (issue #4): large objects (MoreData) in either direction, Alert 1225.
 */
import {
  AlertCode,
  contentTypeFor,
  encodeMessage,
  StatusCode,
  tryDecodeMessage,
  type AlertCommand,
  type Command,
  type Encoding,
  type Item,
  type StatusCommand,
  type SyncHdr,
  type SyncMLMessage,
} from "../syncml/index.js";
import type { DmTree } from "../tree/tree.js";
import {
  buildChal,
  buildCred,
  formatHmacHeader,
  HMAC_HEADER,
  hmacMac,
  newNonce,
  readChal,
  verifyCred,
  verifyHmac,
  type AuthScheme,
} from "./auth.js";
import { executeCommands } from "./command-executor.js";

export type AuthConfig =
  | { readonly scheme: "none" }
  | { readonly scheme: AuthScheme; readonly name: string; readonly secret: string };

export interface ClientAccount {
  /** The server's ServerID: the identity the tree's ACLs know it by. */
  readonly serverId: string;
  /** Where Package 1 goes (DMAcc AppAddr). */
  readonly serverUri: string;
  /** CLCRED: what we present to the server. */
  readonly client: AuthConfig;
  /** SRVCRED: what the server must present to us. */
  readonly server: AuthConfig;
}

/** The nonces of an account (DMAcc AAuthData): raw bytes. */
export interface Nonces {
  /** The nonce the server gave us for our credentials (its last NextNonce). */
  readonly client: Uint8Array;
  /** The nonce we gave the server for its credentials. */
  readonly server: Uint8Array;
}

/** A Generic Alert (1226) or Client Event (1224) waiting in the outbox. */
export interface PendingAlert {
  /** The outbox's id, reported back once the server answered 200/202. */
  readonly id: string;
  readonly code: typeof AlertCode.GenericAlert | typeof AlertCode.ClientEvent;
  readonly correlator?: string;
  readonly items: readonly Item[];
}

export interface ClientSessionOptions {
  readonly tree: DmTree;
  readonly account: ClientAccount;
  readonly nonces: Nonces;
  /** `./DevInfo/DevId`: our Source LocURI. */
  readonly devId: string;
  /** Server-initiated (Package #0, Alert 1200) or client-initiated (Alert 1201). */
  readonly initiator: "server" | "client";
  /** The SessionID: from the Package #0 for server-initiated sessions. */
  readonly sessionId: string;
  readonly encoding: Encoding;
  /** The largest message we accept (our MaxMsgSize). */
  readonly maxMsgSize: number;
  readonly maxObjSize?: number;
  readonly alerts?: readonly PendingAlert[];
  /** Randomness for the nonces we issue. */
  randomBytes(size: number): Uint8Array;
  /** The headless answer to a user-interaction alert (1100-1104); 406 without it. */
  onUserInteraction?(alert: AlertCommand): number;
}

export interface OutgoingMessage {
  readonly kind: "send";
  readonly url: string;
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
}

export interface ClientOutcome {
  readonly kind: "done";
  /** True when the session ended as the protocol ends it (not aborted, not refused). */
  readonly ok: boolean;
  readonly reason?: string;
  readonly serverAuthenticated: boolean;
  /** Outbox ids the server answered 200/202: remove them. */
  readonly alertsAcknowledged: readonly string[];
  /** The nonces to persist in DMAcc (only nonces from an authenticated server replace stored ones). */
  readonly nonces: Nonces;
}

export type ClientStep = OutgoingMessage | ClientOutcome;

/** Bytes kept free below MaxMsgSize for what message-size estimates cannot see. */
const SIZE_MARGIN = 64;
/** Credentials re-sent after a challenge at most this often (one retry on a stale nonce). */
const MAX_CREDENTIAL_RETRIES = 2;
/** Server messages that fail authentication before we give up. */
const MAX_SERVER_AUTH_FAILURES = 3;

export class ClientSession {
  readonly #o: ClientSessionOptions;
  #url: string;
  #msgId = 0;
  #cmdId = 0;
  #serverMaxMsgSize = Number.POSITIVE_INFINITY;
  /** Nonce used for our credentials in this session (latest received, even if unauthenticated). */
  #clientNonce: Uint8Array;
  /** Nonces to persist. */
  #persist: { client: Uint8Array; server: Uint8Array };
  /** Nonce the server must use now. */
  #serverNonce: Uint8Array;
  #clientCredAccepted = false;
  #credentialRetries = 0;
  #serverAuthenticated = false;
  #serverAuthFailures = 0;
  /** Our package still to send (split by MaxMsgSize); Final goes with its last message. */
  #outbox: Command[] = [];
  #package1: Command[] = [];
  /** CmdIDs of our alerts in the message they went in: `${msgId}/${cmdId}` -> outbox id. */
  readonly #alertRefs = new Map<string, string>();
  readonly #acknowledged: string[] = [];
  #done: ClientOutcome | undefined;

  constructor(options: ClientSessionOptions) {
    this.#o = options;
    this.#url = options.account.serverUri;
    this.#clientNonce = options.nonces.client;
    this.#serverNonce = options.nonces.server;
    this.#persist = { client: options.nonces.client, server: options.nonces.server };
  }

  /** Package 1. */
  start(): OutgoingMessage {
    this.#package1 = this.#buildPackage1();
    return this.#sendPackage(this.#package1, [], true);
  }

  /**
   * Handles the server's message and returns the next step. `contentType` is informational: the
   * body's first byte decides the encoding, since a server's header may name the wrong one.
   */
  receive(
    body: Uint8Array,
    contentType: string,
    headers: Readonly<Record<string, string | undefined>>,
  ): ClientStep {
    if (this.#done !== undefined) return this.#done;
    const decoded = tryDecodeMessage(body);
    if (!decoded.ok)
      return this.#finish(false, `the server sent an undecodable message: ${decoded.error.code}`);
    const msg = decoded.value.message;
    const hdr = msg.hdr;
    if (hdr.sessionId !== this.#o.sessionId)
      return this.#finish(false, `the server changed the SessionID to ${hdr.sessionId}`);
    if (hdr.respUri !== undefined && hdr.respUri !== "") this.#url = hdr.respUri;
    const maxMsg = Number(hdr.meta?.maxMsgSize);
    if (Number.isFinite(maxMsg) && maxMsg > 0) this.#serverMaxMsgSize = maxMsg;

    // 1. Is the server who it says it is?
    const hdrStatus = this.#authenticateServer(hdr, body, headers);

    // 2. What the server says about us and our commands.
    let challenged = false;
    let nextMessageRequested = false;
    for (const c of msg.body.commands) {
      if (c.kind === "Status") {
        if (c.cmdRef === "0" && c.cmd === "SyncHdr") {
          const r = this.#onHeaderStatus(c);
          if (r === "challenged") challenged = true;
          else if (r === "refused")
            return this.#finish(false, `the server refused our credentials (${c.data})`);
        } else {
          this.#onCommandStatus(c);
        }
      } else if (c.kind === "Alert" && c.data === String(AlertCode.NextMessage)) {
        nextMessageRequested = true;
      } else if (c.kind === "Alert" && c.data === String(AlertCode.SessionAbort)) {
        return this.#finish(false, "the server aborted the session (1223)");
      }
    }
    if (challenged) {
      if (++this.#credentialRetries > MAX_CREDENTIAL_RETRIES)
        return this.#finish(false, "authentication failed after retries");
      // Re-send Package 1 with credentials built on the new nonce (protocol.md 3.7).
      this.#outbox = [];
      return this.#sendPackage(this.#package1, [], true);
    }

    // 3. The server's commands: run only for an authenticated server.
    const commands = msg.body.commands.filter(
      (c) =>
        c.kind !== "Status" &&
        c.kind !== "Results" &&
        !(c.kind === "Alert" && c.data === String(AlertCode.NextMessage)),
    );
    const replies: Command[] = [];
    if (!this.#serverAuthenticated) {
      if (++this.#serverAuthFailures > MAX_SERVER_AUTH_FAILURES)
        return this.#finish(false, "the server did not authenticate");
      for (const c of commands) replies.push(this.#refusal(c, msg, Number(hdrStatus.data)));
    } else if (commands.length > 0) {
      const tree = this.#o.tree;
      const executed = tree.transaction(() =>
        executeCommands(commands, {
          tree,
          serverId: this.#o.account.serverId,
          encoding: this.#o.encoding,
          msgId: hdr.msgId,
          nextCmdId: () => "", // numbered when the message is built
          onAlert: (alert) => this.#onServerAlert(alert),
        }),
      );
      replies.push(...executed);
    }

    // A message with Alert 1222 and no Final is the server's Next Message response (protocol.md
    // 3.6): its package is complete and it asks for the rest of ours. Otherwise a missing Final
    // means more of the server's package follows.
    const serverHasMore = !msg.body.final && !nextMessageRequested;
    const weHaveMore = this.#outbox.length > 0;
    // The session ends when the server's package is complete, it sent no commands and no challenge,
    // and we have nothing left to send (the client MUST NOT answer with only a SyncHdr Status).
    if (!serverHasMore && commands.length === 0 && !weHaveMore && this.#serverAuthenticated) {
      return this.#finish(true);
    }
    const extra: Command[] = [];
    if (serverHasMore && replies.length === 0 && !weHaveMore) {
      extra.push({ kind: "Alert", cmdId: "", data: String(AlertCode.NextMessage), items: [] });
    }
    if (
      nextMessageRequested ||
      weHaveMore ||
      replies.length > 0 ||
      extra.length > 0 ||
      !this.#serverAuthenticated
    ) {
      return this.#sendPackage([...replies, ...extra], [hdrStatus], !serverHasMore);
    }
    return this.#finish(true);
  }

  get outcome(): ClientOutcome | undefined {
    return this.#done;
  }

  // ------------------------------------------------------------------ authentication

  #authenticateServer(
    hdr: SyncHdr,
    body: Uint8Array,
    headers: Readonly<Record<string, string | undefined>>,
  ): StatusCommand {
    const auth = this.#o.account.server;
    const status = (code: number, chalScheme?: AuthScheme): StatusCommand => ({
      kind: "Status",
      cmdId: "",
      msgRef: hdr.msgId,
      cmdRef: "0",
      cmd: "SyncHdr",
      targetRefs: [hdr.target.locUri],
      sourceRefs: [hdr.source.locUri],
      ...(chalScheme !== undefined && { chal: buildChal(chalScheme, this.#serverNonce) }),
      data: String(code),
      items: [],
    });
    if (auth.scheme === "none") {
      this.#serverAuthenticated = true;
      return status(StatusCode.Ok);
    }
    if (auth.scheme === "hmac") {
      // HMAC covers every message; each answer carries a fresh nonce for the next one.
      const r = verifyHmac(headerValue(headers, HMAC_HEADER), auth, this.#serverNonce, body);
      if (!r.ok) {
        this.#serverAuthenticated = false;
        return status(r.status, "hmac");
      }
      this.#serverAuthenticated = true;
      this.#serverNonce = newNonce((n) => this.#o.randomBytes(n));
      return status(StatusCode.Ok, "hmac");
    }
    if (this.#serverAuthenticated && hdr.cred === undefined) return status(StatusCode.Ok);
    const r = verifyCred(
      hdr.cred,
      auth,
      this.#serverNonce,
      auth.scheme === "basic" ? {} : { require: auth.scheme },
    );
    if (!r.ok) return status(r.status, auth.scheme);
    this.#serverAuthenticated = true;
    // 212: authenticated for the session; the Chal names the nonce for the next session.
    this.#serverNonce = newNonce((n) => this.#o.randomBytes(n));
    return status(StatusCode.AuthenticationAccepted, auth.scheme === "basic" ? undefined : auth.scheme);
  }

  #onHeaderStatus(s: StatusCommand): "ok" | "challenged" | "refused" {
    const code = Number(s.data);
    if (s.chal !== undefined) {
      const chal = readChal(s.chal);
      if (chal.ok) {
        this.#clientNonce = chal.nonce;
        // A nonce from an unauthenticated peer is used, never stored (protocol.md 3.7).
        if (this.#serverAuthenticated) this.#persist = { ...this.#persist, client: chal.nonce };
      }
    }
    if (code === StatusCode.AuthenticationAccepted) this.#clientCredAccepted = true;
    if (code === StatusCode.Ok || code === StatusCode.AuthenticationAccepted) return "ok";
    if (code === StatusCode.InvalidCredentials || code === StatusCode.MissingCredentials) {
      return s.chal !== undefined || this.#credentialRetries < 1 ? "challenged" : "refused";
    }
    return "refused";
  }

  #onCommandStatus(s: StatusCommand): void {
    const id = this.#alertRefs.get(`${s.msgRef}/${s.cmdRef}`);
    const code = Number(s.data);
    if (id !== undefined && (code === StatusCode.Ok || code === StatusCode.AcceptedForProcessing)) {
      if (!this.#acknowledged.includes(id)) this.#acknowledged.push(id);
    }
  }

  #onServerAlert(alert: AlertCommand): number {
    const code = Number(alert.data);
    if (code >= AlertCode.Display && code <= AlertCode.MultipleChoice) {
      return this.#o.onUserInteraction?.(alert) ?? StatusCode.OptionalFeatureNotSupported;
    }
    return StatusCode.OptionalFeatureNotSupported;
  }

  #refusal(c: Command, msg: SyncMLMessage, code: number): StatusCommand {
    return {
      kind: "Status",
      cmdId: "",
      msgRef: msg.hdr.msgId,
      cmdRef: c.cmdId,
      cmd: c.kind,
      targetRefs: [],
      sourceRefs: [],
      data: String(code),
      items: [],
    };
  }

  // ------------------------------------------------------------------ messages

  #buildPackage1(): Command[] {
    const o = this.#o;
    const alert: Command = {
      kind: "Alert",
      cmdId: "",
      data: String(o.initiator === "server" ? AlertCode.ServerInitiatedMgmt : AlertCode.ClientInitiatedMgmt),
      items: [],
    };
    const devInfo: Item[] = [];
    for (const leaf of o.tree.childNames("./DevInfo") ?? []) {
      const node = o.tree.read(`./DevInfo/${leaf}`);
      if (
        node === undefined ||
        node.format === "node" ||
        node.secret === true ||
        typeof node.value !== "string"
      )
        continue;
      devInfo.push({
        source: { locUri: `./DevInfo/${leaf}` },
        meta: { format: node.format },
        data: { kind: "text", text: node.value },
      });
    }
    const commands: Command[] = [alert, { kind: "Replace", cmdId: "", items: devInfo }];
    for (const a of o.alerts ?? []) {
      commands.push({
        kind: "Alert",
        cmdId: `alert:${a.id}`, // replaced by a real CmdID when sent; the prefix maps it back
        data: String(a.code),
        ...(a.correlator !== undefined && { correlator: a.correlator }),
        items: a.items,
      });
    }
    return commands;
  }

  /**
   * Queues `commands` behind the header statuses and sends as much as fits the server's
   * MaxMsgSize; Final goes with the package's last message when `final` is set.
   */
  #sendPackage(
    commands: readonly Command[],
    headerStatuses: readonly StatusCommand[],
    final: boolean,
  ): OutgoingMessage {
    this.#outbox = [...this.#outbox, ...commands];
    this.#msgId++;
    this.#cmdId = 0;
    const msgId = String(this.#msgId);
    const hdr = this.#header(msgId);
    const numbered = (c: Command): Command => this.#number(c, msgId);
    const sent: Command[] = headerStatuses.map(numbered);
    // A nonce we issue counts only once it travels: the server must know the nonce we will hold it
    // to next time (a session that ends on the server's last message sends no Chal, so the
    // stored nonce stays the one the server last received).
    if (headerStatuses.some((h) => h.chal !== undefined)) {
      this.#persist = { ...this.#persist, server: this.#serverNonce };
    }
    const limit = Math.min(this.#serverMaxMsgSize, Number.MAX_SAFE_INTEGER) - SIZE_MARGIN;
    const size = (cmds: Command[], withFinal: boolean): number =>
      encodeMessage({ version: "1.2", hdr, body: { commands: cmds, final: withFinal } }, this.#o.encoding)
        .length;
    while (this.#outbox.length > 0) {
      const next = this.#outbox[0];
      if (next === undefined) break;
      const candidate = [...sent, numbered(next)];
      if (sent.length > headerStatuses.length && size(candidate, true) > limit) {
        this.#cmdId--;
        break;
      }
      // A command that cannot fit even alone goes anyway (large objects are future work) rather
      // than stall the session.
      sent.push(candidate[candidate.length - 1] as Command);
      this.#outbox.shift();
    }
    const isLast = this.#outbox.length === 0 && final;
    const message: SyncMLMessage = { version: "1.2", hdr, body: { commands: sent, final: isLast } };
    const body = encodeMessage(message, this.#o.encoding);
    const headers: Record<string, string> = {};
    const auth = this.#o.account.client;
    if (auth.scheme === "hmac") {
      headers[HMAC_HEADER] = formatHmacHeader({
        username: auth.name,
        mac: hmacMac(auth, this.#clientNonce, body),
      });
    }
    return { kind: "send", url: this.#url, body, contentType: contentTypeFor(this.#o.encoding), headers };
  }

  #header(msgId: string): SyncHdr {
    const o = this.#o;
    const auth = o.account.client;
    const cred =
      (auth.scheme === "basic" || auth.scheme === "md5") && !this.#clientCredAccepted
        ? buildCred(auth.scheme, auth, this.#clientNonce)
        : undefined;
    return {
      verDTD: "1.2",
      verProto: "DM/1.2",
      sessionId: o.sessionId,
      msgId,
      target: { locUri: o.account.serverUri },
      source: { locUri: o.devId, ...(auth.scheme !== "none" && { locName: auth.name }) },
      ...(cred !== undefined && { cred }),
      meta: {
        maxMsgSize: String(o.maxMsgSize),
        ...(o.maxObjSize !== undefined && { maxObjSize: String(o.maxObjSize) }),
      },
    };
  }

  /** Gives a command (and what it contains) real CmdIDs, remembering our alerts' ids. */
  #number(c: Command, msgId: string): Command {
    const cmdId = String(++this.#cmdId);
    if (c.kind === "Alert" && c.cmdId.startsWith("alert:"))
      this.#alertRefs.set(`${msgId}/${cmdId}`, c.cmdId.slice(6));
    if (c.kind === "Atomic" || c.kind === "Sequence") {
      return { ...c, cmdId, commands: c.commands.map((inner) => this.#number(inner, msgId)) };
    }
    return { ...c, cmdId };
  }

  #finish(ok: boolean, reason?: string): ClientOutcome {
    this.#done = {
      kind: "done",
      ok,
      ...(reason !== undefined && { reason }),
      serverAuthenticated: this.#serverAuthenticated,
      alertsAcknowledged: [...this.#acknowledged],
      nonces: { client: this.#persist.client, server: this.#persist.server },
    };
    return this.#done;
  }
}

function headerValue(
  headers: Readonly<Record<string, string | undefined>>,
  name: string,
): string | undefined {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === want) return v;
  return undefined;
}
