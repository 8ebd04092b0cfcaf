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
 * Large objects (protocol.md 3.6): a Results Item too large for the server's MaxMsgSize goes in
 * chunks, one per message (MoreData on all but the last, Meta Size on the first), continuing as the
 * server answers 213 (+ 1222); larger than the server's MaxObjSize, the Get is answered 413. A
 * server Add/Replace Item with MoreData is buffered (213 per chunk) and run only once reassembled
 * (424 on a size mismatch, 413 above our MaxObjSize); a new command before the last chunk breaks the
 * object (Alert 1225).
 */
import {
  AlertCode,
  contentTypeFor,
  encodeMessage,
  StatusCode,
  tryDecodeMessage,
  type AlertCommand,
  type Command,
  type Data,
  type Encoding,
  type Item,
  type ItemCommand,
  type ResultsCommand,
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
  type AuthConfig,
  type AuthScheme,
} from "./auth.js";
import { executeCommands } from "./command-executor.js";
import type { AlertAnswer } from "./user-interaction.js";
import {
  carriesItems,
  dataSize,
  emptyPiece,
  headerValue,
  joinData,
  omitSize,
  positiveInt,
  takePiece,
  withoutMoreData,
} from "./large-object.js";

export type { AuthConfig } from "./auth.js";

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
  onUserInteraction?(alert: AlertCommand): AlertAnswer;
}

export interface OutgoingMessage {
  readonly kind: "send";
  readonly url: string;
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Our Alert 1223: send it and stop; the session is over (`outcome` says how) whatever comes back. */
  readonly last?: true;
}

export interface ClientOutcome {
  readonly kind: "done";
  /** True when the session ended as the protocol ends it (not aborted, not refused). */
  readonly ok: boolean;
  readonly reason?: string;
  /** The server sent a message that does not decode (metrics count these: codec errors). */
  readonly undecodable?: true;
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
/** The reassembly buffer's bound when no maxObjSize is set. */
const DEFAULT_MAX_OBJ_SIZE = 16 * 1024 * 1024;

/** A Results we send in chunks: what is left of its one Item's Data. */
interface LargeOut {
  readonly command: ResultsCommand;
  readonly data: Data & { kind: "text" | "opaque" };
  readonly total: number;
  sentBytes: number;
  sentChars: number;
  /** `${msgId}/${cmdId}` of the chunk last sent. */
  lastRef?: string;
}

/** A server Add/Replace arriving in chunks. */
interface LargeIn {
  readonly first: ItemCommand;
  /** Items before the chunked one in the first command. */
  readonly before: readonly Item[];
  readonly item: Item;
  readonly parts: Data[];
  bytes: number;
  readonly declared: number | undefined;
  refused: number | undefined;
}

export class ClientSession {
  readonly #o: ClientSessionOptions;
  #url: string;
  #msgId = 0;
  #cmdId = 0;
  #serverMaxMsgSize = Number.POSITIVE_INFINITY;
  #undecodable = false;
  #serverMaxObjSize = Number.POSITIVE_INFINITY;
  /** The outbox's head being sent in chunks. */
  #largeOut: LargeOut | undefined;
  /** The server's object being reassembled. */
  #largeIn: LargeIn | undefined;
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
    // A message we cannot read, or one of another session, has no command we could answer: abort.
    if (!decoded.ok) {
      this.#undecodable = true;
      return this.#abortOrFinish(`the server sent an undecodable message: ${decoded.error.code}`);
    }
    const msg = decoded.value.message;
    const hdr = msg.hdr;
    if (hdr.sessionId !== this.#o.sessionId)
      return this.#abortOrFinish(`the server changed the SessionID to ${hdr.sessionId}`);
    if (hdr.respUri !== undefined && hdr.respUri !== "") this.#url = hdr.respUri;
    const maxMsg = Number(hdr.meta?.maxMsgSize);
    if (Number.isFinite(maxMsg) && maxMsg > 0) this.#serverMaxMsgSize = maxMsg;
    const maxObj = Number(hdr.meta?.maxObjSize);
    if (Number.isFinite(maxObj) && maxObj > 0) this.#serverMaxObjSize = maxObj;

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
      this.#largeOut = undefined;
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
      // Challenged before and back with nothing to run and no more to come: the server has given
      // up on authenticating (answering again would only reach a session it already closed).
      if (this.#serverAuthFailures > 1 && commands.length === 0 && msg.body.final)
        return this.#finish(false, "the server did not authenticate");
      for (const c of commands) replies.push(this.#status(c, msg, Number(hdrStatus.data)));
    } else if (commands.length > 0) {
      const toRun = this.#assemble(commands, msg, replies);
      if (msg.body.final) this.#breakIncoming(replies);
      const tree = this.#o.tree;
      const executed = tree.transaction(() =>
        executeCommands(toRun, {
          tree,
          serverId: this.#o.account.serverId,
          encoding: this.#o.encoding,
          msgId: hdr.msgId,
          nextCmdId: () => "", // numbered when the message is built
          onAlert: (alert) => this.#onServerAlert(alert),
        }),
      );
      replies.push(...this.#limitResults(executed));
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

  /**
   * What the server's SyncHdr Meta declared so far in this session (protocol.md 3.2, 3.6): its
   * MaxMsgSize and MaxObjSize, bytes; a limit it did not declare is absent. Read-only; the caller
   * decides whether to keep them (only an authenticated server's, say).
   */
  get serverLimits(): { readonly maxMsgSize?: number; readonly maxObjSize?: number } {
    return {
      ...(Number.isFinite(this.#serverMaxMsgSize) && { maxMsgSize: this.#serverMaxMsgSize }),
      ...(Number.isFinite(this.#serverMaxObjSize) && { maxObjSize: this.#serverMaxObjSize }),
    };
  }

  /**
   * Ends the session from our side (protocol.md 3.9): the last message, Alert 1223 with Final, which
   * the caller sends without waiting for anything back (the server may answer it or not). The
   * outcome is `ok: false` with `reason`, and keeps what the session already settled: alerts the
   * server acknowledged and the nonces that travelled. Returns undefined once the session is over.
   */
  abort(reason: string): OutgoingMessage | undefined {
    if (this.#done !== undefined || this.#msgId === 0) return undefined;
    this.#outbox = [];
    this.#largeOut = undefined;
    this.#largeIn = undefined;
    const message = this.#sendPackage(
      [{ kind: "Alert", cmdId: "", data: String(AlertCode.SessionAbort), items: [] }],
      [],
      true,
    );
    this.#finish(false, reason);
    return { ...message, last: true };
  }

  #abortOrFinish(reason: string): ClientStep {
    return this.abort(reason) ?? this.#finish(false, reason);
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
    const lo = this.#largeOut;
    if (lo !== undefined && lo.lastRef === `${s.msgRef}/${s.cmdRef}`) {
      // A chunk refused: the object is abandoned.
      if (Number(s.data) !== StatusCode.ChunkedItemAccepted && this.#outbox[0] === lo.command) {
        this.#outbox.shift();
        this.#largeOut = undefined;
      }
    }
    const id = this.#alertRefs.get(`${s.msgRef}/${s.cmdRef}`);
    const code = Number(s.data);
    if (id !== undefined && (code === StatusCode.Ok || code === StatusCode.AcceptedForProcessing)) {
      if (!this.#acknowledged.includes(id)) this.#acknowledged.push(id);
    }
  }

  #onServerAlert(alert: AlertCommand): AlertAnswer {
    const code = Number(alert.data);
    const answer =
      code >= AlertCode.Display && code <= AlertCode.MultipleChoice
        ? this.#o.onUserInteraction?.(alert)
        : undefined;
    return answer ?? { status: StatusCode.OptionalFeatureNotSupported };
  }

  /** A Status for a server command (CmdID numbered when the message is built). */
  #status(c: Command, msg: SyncMLMessage, code: number, target?: string): StatusCommand {
    return {
      kind: "Status",
      cmdId: "",
      msgRef: msg.hdr.msgId,
      cmdRef: c.cmdId,
      cmd: c.kind,
      targetRefs: target === undefined ? [] : [target],
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
   * MaxMsgSize; Final goes with the package's last message when `final` is set. A single-Item
   * Results that does not fit a message alone goes as a large object, one chunk per message.
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
    // Encoding the whole message again for every command made a reply of n commands cost O(n^2).
    // Instead each command is encoded alone once and the sizes are summed; only when that estimate
    // comes near the limit is the candidate message encoded whole (exact, as the limit demands).
    // The slack covers what encoding alone cannot see (a WBXML page switch between commands).
    // The common case first: everything fits in one message, encoded once and sent as it is.
    let whole: Uint8Array | undefined;
    if (this.#largeOut === undefined && this.#outbox.length > 0) {
      const before = this.#cmdId;
      const all = [...sent, ...this.#outbox.map(numbered)];
      const body = encodeMessage({ version: "1.2", hdr, body: { commands: all, final } }, this.#o.encoding);
      if (body.length <= limit) {
        sent.splice(0, sent.length, ...all);
        this.#outbox = [];
        whole = body;
      } else {
        this.#cmdId = before;
      }
    }
    const base = whole === undefined ? size([], true) : 0;
    const slack = (count: number): number => 32 + 4 * count;
    let estimate = whole === undefined ? size(sent, true) : 0;
    while (this.#outbox.length > 0) {
      const next = this.#outbox[0];
      if (next === undefined) break;
      if (this.#largeOut === undefined || this.#largeOut.command !== next) {
        const command = numbered(next);
        const alone = size([command], true) - base;
        let fits = estimate + alone <= limit - slack(sent.length + 1);
        if (!fits) {
          const exact = size([...sent, command], true);
          fits = exact <= limit;
          if (fits) estimate = exact - alone;
        }
        if (!fits && sent.length > headerStatuses.length) {
          this.#cmdId--;
          break;
        }
        // A Results of many items (a Get with ?list=StructData on a big subtree) that does not fit
        // a message alone is split into Results of fewer items with the same CmdRef, sent over as
        // many messages as they need (a multi-message package: the server asks for each with Alert
        // 1222, protocol.md 3.6).
        if (!fits && next.kind === "Results" && next.items.length > 1) {
          this.#cmdId--;
          const half = Math.ceil(next.items.length / 2);
          this.#outbox.splice(
            0,
            1,
            { ...next, items: next.items.slice(0, half) },
            { ...next, items: next.items.slice(half) },
          );
          continue;
        }
        const lo = fits ? undefined : largeObjectOf(next);
        if (lo === undefined) {
          // A command that cannot fit even alone and is no single-Item Results goes anyway rather
          // than stall the session.
          sent.push(command);
          estimate += alone;
          this.#outbox.shift();
          continue;
        }
        this.#cmdId--;
        this.#largeOut = lo;
      }
      const lo = this.#largeOut;
      const chunk = this.#chunk(lo, sent, numbered, size, limit);
      if (chunk === undefined) {
        if (sent.length > headerStatuses.length) break;
        // Not one byte fits: send what we can rather than stall (the server decides).
        const rest = this.#chunkCommand(lo, numbered, takePiece(lo, lo.total - lo.sentBytes).data, true);
        sent.push(rest);
        this.#outbox.shift();
        this.#largeOut = undefined;
        continue;
      }
      sent.push(chunk.command);
      lo.lastRef = `${msgId}/${chunk.command.cmdId}`;
      if (!chunk.last) break;
      this.#outbox.shift();
      this.#largeOut = undefined;
      estimate = size(sent, true);
    }
    const isLast = this.#outbox.length === 0 && final;
    const message: SyncMLMessage = { version: "1.2", hdr, body: { commands: sent, final: isLast } };
    const body = whole ?? encodeMessage(message, this.#o.encoding);
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

  /** The next chunk of `lo` that fits after `sent`, or undefined when not one byte fits. */
  #chunk(
    lo: LargeOut,
    sent: readonly Command[],
    numbered: (c: Command) => Command,
    size: (cmds: Command[], withFinal: boolean) => number,
    limit: number,
  ): { command: Command; last: boolean } | undefined {
    const remaining = lo.total - lo.sentBytes;
    const empty = this.#chunkCommand(lo, numbered, emptyPiece(lo.data), false);
    this.#cmdId--;
    // Meta Size is on the first chunk: count it as if present.
    let room = Math.min(limit - size([...sent, empty], false) - 16, remaining);
    while (room >= 1) {
      const piece = takePiece(lo, room);
      if (piece.bytes === 0) return undefined;
      const last = piece.bytes === remaining;
      const command = this.#chunkCommand(lo, numbered, piece.data, last);
      const total = size([...sent, command], last);
      if (total <= limit) {
        lo.sentBytes += piece.bytes;
        lo.sentChars += piece.chars;
        return { command, last };
      }
      this.#cmdId--;
      room = Math.min(piece.bytes - 1, piece.bytes - (total - limit));
    }
    return undefined;
  }

  /** A chunk of `lo` as a numbered Results: Meta Size on the first, MoreData on all but the last. */
  #chunkCommand(lo: LargeOut, numbered: (c: Command) => Command, data: Data, last: boolean): Command {
    const item = lo.command.items[0] as Item;
    const first = lo.sentBytes === 0;
    const meta = first && !last ? { ...item.meta, size: String(lo.total) } : omitSize(item.meta);
    const chunkItem: Item = {
      ...(item.target !== undefined && { target: item.target }),
      ...(item.source !== undefined && { source: item.source }),
      ...(meta !== undefined && { meta }),
      data,
      ...(!last && { moreData: true }),
    };
    return numbered({ ...lo.command, items: [chunkItem] });
  }

  // ------------------------------------------------------------------ large objects from the server

  /**
   * Passes the server's commands through chunk reassembly: returns those to run (a completed object
   * as one command), pushing 213/413/424 for chunks and Alert 1225 for broken objects to `replies`.
   */
  #assemble(commands: readonly Command[], msg: SyncMLMessage, replies: Command[]): Command[] {
    const toRun: Command[] = [];
    for (const c of commands) {
      const inc = this.#largeIn;
      if (inc !== undefined) {
        if (continuesObject(inc, c) && (c.kind === "Add" || c.kind === "Replace")) {
          const [head, ...rest] = c.items;
          if (head === undefined) continue;
          this.#appendChunk(inc, head.data);
          if (head.moreData === true) {
            if (rest.length > 0) {
              this.#largeIn = undefined;
              replies.push(this.#chunkStatus(c, msg, StatusCode.BadRequest));
            } else {
              replies.push(this.#chunkStatus(c, msg, inc.refused ?? StatusCode.ChunkedItemAccepted));
            }
            continue;
          }
          this.#largeIn = undefined;
          const failure =
            inc.refused ??
            (inc.declared !== undefined && inc.declared !== inc.bytes ? StatusCode.SizeMismatch : undefined);
          if (failure !== undefined) {
            replies.push(this.#chunkStatus(c, msg, failure));
            continue;
          }
          const whole: Item = { ...withoutMoreData(inc.item), data: joinData(inc.parts) };
          const items = [...inc.before, whole, ...rest];
          this.#startOrRun({ ...inc.first, cmdId: c.cmdId, items }, msg, replies, toRun);
          continue;
        }
        if (carriesItems(c)) this.#breakIncoming(replies);
      }
      this.#startOrRun(c, msg, replies, toRun);
    }
    return toRun;
  }

  #startOrRun(c: Command, msg: SyncMLMessage, replies: Command[], toRun: Command[]): void {
    const last = c.kind === "Add" || c.kind === "Replace" ? c.items.at(-1) : undefined;
    if ((c.kind !== "Add" && c.kind !== "Replace") || last?.moreData !== true) {
      toRun.push(c);
      return;
    }
    const declared = positiveInt(last.meta?.size ?? c.meta?.size);
    const max = this.#maxObjSize();
    const inc: LargeIn = {
      first: c,
      before: c.items.slice(0, -1),
      item: last,
      parts: [],
      bytes: 0,
      declared,
      refused: declared !== undefined && declared > max ? StatusCode.RequestEntityTooLarge : undefined,
    };
    this.#largeIn = inc;
    this.#appendChunk(inc, last.data);
    replies.push(this.#chunkStatus(c, msg, inc.refused ?? StatusCode.ChunkedItemAccepted));
  }

  #maxObjSize(): number {
    return this.#o.maxObjSize ?? DEFAULT_MAX_OBJ_SIZE;
  }

  #appendChunk(inc: LargeIn, data: Data | undefined): void {
    if (data === undefined || inc.refused !== undefined) return;
    inc.bytes += dataSize(data);
    if (inc.bytes > this.#maxObjSize()) {
      inc.refused = StatusCode.RequestEntityTooLarge;
      inc.parts.length = 0;
      return;
    }
    inc.parts.push(data);
  }

  /** An object cut short: Alert 1225 naming its Target and Source, nothing kept. */
  #breakIncoming(replies: Command[]): void {
    const inc = this.#largeIn;
    if (inc === undefined) return;
    this.#largeIn = undefined;
    const item: Item = {
      ...(inc.item.target !== undefined && { target: { locUri: inc.item.target.locUri } }),
      ...(inc.item.source !== undefined && { source: { locUri: inc.item.source.locUri } }),
    };
    replies.push({ kind: "Alert", cmdId: "", data: String(AlertCode.NoEndOfData), items: [item] });
  }

  #chunkStatus(c: ItemCommand, msg: SyncMLMessage, code: number): StatusCommand {
    return this.#status(c, msg, code, c.items[0]?.target?.locUri);
  }

  /** Results whose object exceeds the server's MaxObjSize: dropped, their Get answered 413. */
  #limitResults(replies: readonly Command[]): Command[] {
    const max = this.#serverMaxObjSize;
    const tooLarge = new Set<string>();
    for (const r of replies) {
      if (r.kind === "Results" && r.items.some((i) => i.data !== undefined && dataSize(i.data) > max))
        tooLarge.add(`${r.msgRef ?? ""}/${r.cmdRef}`);
    }
    if (tooLarge.size === 0) return [...replies];
    const out: Command[] = [];
    for (const r of replies) {
      const key = r.kind === "Status" || r.kind === "Results" ? `${r.msgRef ?? ""}/${r.cmdRef}` : "";
      if (r.kind === "Results" && tooLarge.has(key)) continue;
      if (r.kind === "Status" && r.cmd === "Get" && tooLarge.has(key)) {
        out.push({ ...r, data: String(StatusCode.RequestEntityTooLarge) });
        continue;
      }
      out.push(r);
    }
    return out;
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
      ...(this.#undecodable && { undecodable: true as const }),
      serverAuthenticated: this.#serverAuthenticated,
      alertsAcknowledged: [...this.#acknowledged],
      nonces: { client: this.#persist.client, server: this.#persist.server },
    };
    return this.#done;
  }
}

/** A Results of one Item with text or binary Data, sendable in chunks. */
function largeObjectOf(c: Command): LargeOut | undefined {
  if (c.kind !== "Results" || c.items.length !== 1) return undefined;
  const data = c.items[0]?.data;
  if (data === undefined || data.kind === "element") return undefined;
  return { command: c, data, total: dataSize(data), sentBytes: 0, sentChars: 0 };
}

/** Whether `c` is the next chunk of `inc`: same command kind, same Item. */
function continuesObject(inc: LargeIn, c: Command): boolean {
  if (c.kind !== inc.first.kind || !("items" in c)) return false;
  const head = c.items[0];
  if (head === undefined) return false;
  const same = (a: { locUri: string } | undefined, b: { locUri: string } | undefined): boolean =>
    a === undefined || b === undefined || a.locUri === b.locUri;
  return same(head.source, inc.item.source) && same(head.target, inc.item.target);
}
