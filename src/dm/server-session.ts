/**
 * The DM server side of one OMA DM 1.2 session, sans-I/O (style.md 2.3): bytes, content type and
 * headers in; the HTTP response to send, or the end of the session with its outcome, out. It keeps no
 * timers (the caller owns timeouts) and does no I/O; randomness is injected. The same code runs the
 * DM Server simulator (northbound tests) and the gateway's proxy sessions toward End Devices.
 *
 *   receive(body, contentType, headers)
 *     -> decode (a body that does not decode ends the session: there is nothing to answer)
 *     -> Pkg#1 checks: device, SessionID and Alert 1200/1201, VerProto        (refusal ends it)
 *     -> authenticate the client: Cred (basic, md5) on Pkg#1, x-syncml-hmac on every message
 *          failure: 401/407 + Chal on the SyncHdr, the same code for every command, nothing run
 *     -> the client's Status on our SyncHdr (our credentials; one retry on a challenge)
 *     -> take in Status, Results (large objects reassembled), Alerts, the DevInfo Replace
 *     -> reply: the next message of our open package (large object) | the Next Message response
 *        (client package incomplete) | a new package of queued commands | statuses + Final (end)
 *
 * Package rule (DM Protocol 1.2 section 2.1; protocol.md 3.6): the server sends Final in every
 * message except while it sends a large object or a Next Message response, and never sends new
 * commands before the client has returned status for the previous package. So queued commands that
 * do not fit the client's MaxMsgSize go out as several one-message packages, each closed with Final,
 * the next one only after the client's package of statuses is complete. Only a large object spans
 * several messages of one package (MoreData chunks, the client asking for more with Alert 1222).
 */
import assert from "node:assert/strict";
import {
  AlertCode,
  StatusCode,
  contentTypeFor,
  encodeMessage,
  encodingForContentType,
  tryDecodeMessage,
  type AlertCommand,
  type Chal,
  type Command,
  type Cred,
  type Data,
  type Encoding,
  type Item,
  type ItemCommand,
  type ContainerCommand,
  type Location,
  type ResultsCommand,
  type StatusCommand,
  type SyncHdr,
  type SyncMLMessage,
  type SyncMLVersion,
} from "../syncml/index.js";
import {
  DEFAULT_NONCE_SIZE,
  HMAC_HEADER,
  buildChal,
  buildCred,
  formatHmacHeader,
  hmacMac,
  newNonce,
  readChal,
  verifyCred,
  verifyHmac,
  type AuthResult,
  type AuthConfig,
  type Credentials,
} from "./auth.js";
import {
  carriesItems,
  dataSize,
  elementText,
  emptyPiece,
  headerValue,
  joinData,
  omitSize,
  positiveInt,
  takePiece,
  withoutMoreData,
  type ChunkSource,
} from "./large-object.js";

// ---------------------------------------------------------------------------------------------------
// Public types

export type { AuthConfig } from "./auth.js";

/** The name and secret of a side ("" for `none`, which never uses them). */
function credentialsOf(auth: AuthConfig): { scheme: AuthConfig["scheme"]; name: string; secret: string } {
  return auth.scheme === "none" ? { scheme: "none", name: "", secret: "" } : auth;
}

/**
 * How the session began.
 * - `{ sessionId }`: server-initiated after a Package #0 with that session id (upper-case hex as
 *   protocol.md 5.1 maps it); Pkg#1 must carry Alert 1200 and exactly this SessionID.
 * - `client`: client-initiated; Pkg#1 must carry Alert 1201.
 * - `any`: either alert (the caller matches triggers itself from the outcome).
 */
export type Initiation = { readonly sessionId: string } | "client" | "any";

export interface ServerSessionOptions {
  /** The server's URI: the Source LocURI of every reply (the client's Target is not checked). */
  readonly serverUri: string;
  /** The device id (SyncHdr Source LocURI) the session is for; undefined accepts any device. */
  readonly expectedDevice?: string | undefined;
  /** What the client must present. */
  readonly clientAuth: AuthConfig;
  /** What this server presents to the client. */
  readonly serverAuth: AuthConfig;
  /** The nonce the client must use in its md5 Cred or HMAC (the last one this server issued). */
  readonly clientNonce: Uint8Array;
  /** The nonce this server uses for its own md5 Cred or HMAC (the last one the client issued). */
  readonly serverNonce: Uint8Array;
  /** Source of fresh nonces (`crypto.randomBytes` in production). */
  readonly randomBytes: (size: number) => Uint8Array;
  /** Default `any`. */
  readonly initiation?: Initiation;
  /** Encoding of replies; default `client`: the encoding of the message being answered. */
  readonly replyEncoding?: Encoding | "client";
  /** Largest message this server accepts, in bytes; advertised in every reply's SyncHdr Meta. */
  readonly maxMsgSize?: number;
  /** Largest object this server accepts, in bytes; advertised, and enforced on chunked objects (413). */
  readonly maxObjSize?: number;
  /** Sent as RespURI in every reply when set. */
  readonly respUri?: string;
  /** Failed client authentications (401/407) after which the session ends. Default 3. */
  readonly maxAuthAttempts?: number;
  /** Size of the nonces this server issues, in octets. Default 16. */
  readonly nonceSize?: number;
  /**
   * Called each time a client package is complete (its Final received), before the reply is built:
   * it may inspect `outcome` and `enqueue` more commands, which then go out in the reply.
   */
  readonly onClientPackage?: (session: ServerSession) => void;
  /** Status for a well-formed Generic Alert (200, 202, 415, 500...). Default 200. */
  readonly answerGenericAlert?: (alert: Omit<GenericAlert, "status">) => number;
}

/** An HTTP response to send. `headers` holds `x-syncml-hmac` when the server uses HMAC. */
export interface ServerReply {
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
}

export type ServerStep =
  | ({ readonly kind: "reply" } & ServerReply)
  | { readonly kind: "end"; readonly reply?: ServerReply; readonly outcome: SessionOutcome };

/** Why a session ended abnormally. */
export type SessionErrorCode =
  /** The Content-Type is not a SyncML DM message type. */
  | "content-type"
  /** The body does not decode as a SyncML DM message. */
  | "decode"
  /** The client broke the protocol: wrong VerProto, Pkg#1 without one Alert 1200/1201, a message
   * of another SessionID or device. */
  | "protocol"
  /** Pkg#1 came from a device other than the expected one (answered 403). */
  | "unexpected-device"
  /** Server-initiated session: Pkg#1 without Alert 1200, or with another SessionID (answered 400). */
  | "wrong-session"
  /** The client failed authentication `maxAuthAttempts` times. */
  | "auth-failed"
  /** The client refused this server's credentials (again, or without a usable challenge). */
  | "server-auth-rejected"
  /** The client aborted the session (Alert 1223). */
  | "aborted"
  /** A queued command fits no message of the client's MaxMsgSize and cannot be chunked. */
  | "command-too-large"
  /** A queued object is larger than the client's MaxObjSize. */
  | "object-too-large"
  /** A queued command cannot be encoded (binary Data over XML, for example). */
  | "encode";

export interface SessionError {
  readonly code: SessionErrorCode;
  /** For logs: what was wrong, never a secret. */
  readonly reason: string;
}

/** One Item of a Generic Alert (1226) or Client Event (1224). */
export interface AlertItem {
  readonly source: string | undefined;
  readonly target: string | undefined;
  readonly type: string | undefined;
  readonly format: string | undefined;
  readonly mark: string | undefined;
  readonly data: Data | undefined;
}

/** A Generic Alert received (protocol.md 3.8), with the status it was answered with. */
export interface GenericAlert {
  readonly msgId: string;
  readonly cmdId: string;
  readonly correlator: string | undefined;
  readonly items: readonly AlertItem[];
  readonly status: number;
}

/** A Client Event alert (1224) received; answered 200. */
export interface ClientEvent {
  readonly msgId: string;
  readonly cmdId: string;
  readonly items: readonly AlertItem[];
}

/** A chunked Results the client sent that was refused instead of recorded. */
export interface RefusedResults {
  /** 424 size mismatch, 413 larger than our MaxObjSize, or 1225 (the chunks stopped short). */
  readonly code: number;
  readonly reason: string;
}

/** What became of one enqueued command. Live: it fills in as the session goes on. */
export interface CommandRecord {
  /** Position in enqueue order across the session (inner commands share their container's). */
  readonly ticket: number;
  /** The command as enqueued (its CmdID is ignored: the session assigns them). */
  readonly command: Command;
  /** Every message and CmdID it went out under: several for a large object or a re-send. */
  readonly sentAs: readonly { readonly msgId: string; readonly cmdId: string }[];
  /** The client's Status commands for it, in arrival order (213 for each accepted chunk). */
  readonly statuses: readonly StatusCommand[];
  /** The last status code other than 213; undefined while none came. */
  readonly status: number | undefined;
  /** Results for it (a chunked Results appears once, reassembled, with one Item). */
  readonly results: readonly ResultsCommand[];
  readonly refusedResults: readonly RefusedResults[];
  /** The records of an Atomic's or Sequence's commands. */
  readonly inner: readonly CommandRecord[];
}

export interface SessionOutcome {
  /** The client passed authentication (always true once past Pkg#1 when clientAuth is `none`). */
  readonly authenticated: boolean;
  /** The client accepted this server's credentials (200 or 212 on our SyncHdr). */
  readonly serverAccepted: boolean;
  readonly deviceId: string | undefined;
  readonly sessionId: string | undefined;
  /** From the Pkg#1 alert: 1200 server, 1201 client. */
  readonly initiatedBy: "server" | "client" | undefined;
  /** The DevInfo leaves of the client's Replace, keyed by the path below DevInfo (`DevId`, `Ext/X`). */
  readonly devInfo: Readonly<Record<string, string>>;
  readonly genericAlerts: readonly GenericAlert[];
  readonly clientEvents: readonly ClientEvent[];
  /** One record per enqueued command, in enqueue order. */
  readonly commands: readonly CommandRecord[];
  /** Status and Results that refer to nothing this session sent. */
  readonly unmatched: readonly (StatusCommand | ResultsCommand)[];
  /**
   * Persist: the nonce the client must use in its next session's credentials (md5, HMAC): the last
   * one issued to it once authenticated, else the one the session started with.
   */
  readonly nextClientNonce: Uint8Array;
  /** Persist: the nonce this server must use in its next credentials (md5, HMAC). */
  readonly nextServerNonce: Uint8Array;
  readonly error: SessionError | undefined;
}

// ---------------------------------------------------------------------------------------------------
// Internals: types

interface MutableRecord {
  readonly ticket: number;
  readonly command: Command;
  readonly sentAs: { msgId: string; cmdId: string }[];
  readonly statuses: StatusCommand[];
  status: number | undefined;
  readonly results: ResultsCommand[];
  readonly refusedResults: RefusedResults[];
  readonly inner: MutableRecord[];
}

interface LargeObject {
  readonly data: ChunkSource;
  /** Total size in bytes (UTF-8 for text): Meta Size of the first chunk. */
  readonly total: number;
  /** Bytes already sent. */
  sentBytes: number;
  /** UTF-16 units already sent (text). */
  sentChars: number;
}

interface PendingEntry {
  readonly record: MutableRecord;
  lo: LargeObject | undefined;
}

/** What a sent CmdID stands for: a caller's command (or chunk of one), or an internal Alert. */
interface SentCommand {
  readonly msgId: string;
  readonly record: MutableRecord | undefined;
  /** A chunk followed by more chunks. */
  readonly moreData: boolean;
}

type ChunkCarrier = ResultsCommand | AlertCommand | ItemCommand;

/** A client object arriving in chunks (DM Protocol 1.2 section 2.2). */
interface Incoming {
  /** The command that carried the first chunk: its header fields stand for the whole. */
  readonly first: ChunkCarrier;
  /** Complete Items that preceded the chunked one in `first`. */
  readonly before: readonly Item[];
  /** The first chunk's Item (Source, Target, Meta). */
  readonly item: Item;
  readonly parts: Data[];
  bytes: number;
  readonly declared: number | undefined;
  /** The status every further chunk gets once the object is refused (413). */
  refused: number | undefined;
}

interface Snapshot {
  readonly msgId: string;
  readonly pending: readonly PendingEntry[];
  readonly packageOpen: boolean;
}

type Layout = { readonly commands: Command[]; readonly final: boolean } | SessionError;

const VER_PROTO: Readonly<Record<SyncMLVersion, string>> = { "1.2": "DM/1.2", "1.1": "DM/1.1" };
const UTF8 = new TextEncoder();
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8_LENIENT = new TextDecoder("utf-8", { ignoreBOM: true });
const DEFAULT_MAX_AUTH_ATTEMPTS = 3;
/** Slack kept per command added on an estimated size, against WBXML page-switch rounding. */
const ESTIMATE_SLACK_BYTES = 4;

// ---------------------------------------------------------------------------------------------------
// The session

export class ServerSession {
  readonly #opts: ServerSessionOptions;
  readonly #maxAuthAttempts: number;
  readonly #nonceSize: number;

  #phase: "pkg1" | "session" | "ended" = "pkg1";
  #encoding: Encoding = "xml";
  #version: SyncMLVersion = "1.2";
  #deviceId: string | undefined;
  #sessionId: string | undefined;
  #initiatedBy: "server" | "client" | undefined;
  #clientMsgId = "0";
  #serverMsgId = 0;
  #nextCmdId = 1;

  #clientMaxMsgSize: number | undefined;
  #clientMaxObjSize: number | undefined;

  /** The nonce the client's next credentials must use (the latest this server issued). */
  #clientNonce: Uint8Array;
  /**
   * The nonce to persist for the client: the latest one issued to an authenticated client (the 212
   * Chal, the HMAC NextNonce). A challenge nonce sent to an unauthenticated peer is not one a client
   * keeps (protocol.md 3.7: no stored nonce from an unauthenticated peer).
   */
  #persistClientNonce: Uint8Array;
  #serverNonce: Uint8Array;
  #authenticated = false;
  #authFailures = 0;
  #serverAccepted = false;
  /** The client answered 212: no more Cred from this server this session. */
  #serverAuthDone = false;
  #serverRejections = 0;
  /** A message whose Status the client answered with an auth failure: its statuses are not answers. */
  #rejectedMsgId: string | undefined;

  #tickets = 0;
  readonly #records: MutableRecord[] = [];
  #pending: PendingEntry[] = [];
  /** We sent a message of a package without Final (a large object in progress). */
  #packageOpen = false;
  #lastSent: Snapshot | undefined;
  readonly #sent = new Map<string, SentCommand>();
  /** Internal Alerts (1225) to put in the next reply. */
  #alertsOut: AlertCommand[] = [];
  #incoming: Incoming | undefined;

  readonly #devInfo: Record<string, string> = {};
  readonly #genericAlerts: GenericAlert[] = [];
  readonly #clientEvents: ClientEvent[] = [];
  readonly #unmatched: (StatusCommand | ResultsCommand)[] = [];
  #error: SessionError | undefined;

  constructor(options: ServerSessionOptions) {
    assert.ok(options.serverUri.length > 0, "a server URI is required");
    const attempts = options.maxAuthAttempts ?? DEFAULT_MAX_AUTH_ATTEMPTS;
    assert.ok(Number.isSafeInteger(attempts) && attempts >= 1, "maxAuthAttempts is a positive integer");
    for (const limit of [options.maxMsgSize, options.maxObjSize]) {
      assert.ok(
        limit === undefined || (Number.isSafeInteger(limit) && limit > 0),
        "sizes are positive integers",
      );
    }
    this.#opts = options;
    this.#maxAuthAttempts = attempts;
    this.#nonceSize = options.nonceSize ?? DEFAULT_NONCE_SIZE;
    this.#clientNonce = Uint8Array.from(options.clientNonce);
    this.#persistClientNonce = this.#clientNonce;
    this.#serverNonce = Uint8Array.from(options.serverNonce);
  }

  /** True once the session has ended (normally or not). */
  get ended(): boolean {
    return this.#phase === "ended";
  }

  /** The nonce to persist for the client's next session (see `SessionOutcome.nextClientNonce`). */
  get nextClientNonce(): Uint8Array {
    return Uint8Array.from(this.#persistClientNonce);
  }

  /** The nonce this server must use in its next credentials: persist it at the end of the session. */
  get nextServerNonce(): Uint8Array {
    return Uint8Array.from(this.#serverNonce);
  }

  get outcome(): SessionOutcome {
    return {
      authenticated: this.#authenticated,
      serverAccepted: this.#serverAccepted,
      deviceId: this.#deviceId,
      sessionId: this.#sessionId,
      initiatedBy: this.#initiatedBy,
      devInfo: { ...this.#devInfo },
      genericAlerts: [...this.#genericAlerts],
      clientEvents: [...this.#clientEvents],
      commands: [...this.#records],
      unmatched: [...this.#unmatched],
      nextClientNonce: this.nextClientNonce,
      nextServerNonce: this.nextServerNonce,
      error: this.#error,
    };
  }

  /**
   * Queues management commands (Add, Copy, Delete, Exec, Get, Replace, Atomic, Sequence, and
   * user-interaction Alerts) for the client. The session assigns every CmdID, inner ones included.
   * Commands go out in order once the client's current package is complete; commands queued after
   * the session ended are never sent.
   *
   * @returns the tickets of the commands: their indexes in `outcome.commands`.
   */
  enqueue(commands: readonly Command[]): number[] {
    return commands.map((command) => {
      assert.ok(
        command.kind !== "Status" && command.kind !== "Results",
        "Status and Results are answers, not commands to queue",
      );
      const record = newRecord(this.#tickets++, command);
      this.#records.push(record);
      this.#pending.push({ record, lo: undefined });
      return record.ticket;
    });
  }

  /**
   * Takes one message from the client and says what to answer.
   *
   * @param body the exact bytes received (HMAC is computed over them).
   * @param contentType the request's Content-Type (`application/vnd.syncml.dm+xml` or `+wbxml`).
   * @param headers the request's headers; names are matched without regard to case.
   */
  receive(
    body: Uint8Array,
    contentType: string,
    headers: Readonly<Record<string, string | undefined>>,
  ): ServerStep {
    if (this.#phase === "ended") return this.#end(undefined);
    const encoding = encodingForContentType(contentType);
    if (encoding === undefined) {
      return this.#fail("content-type", `Content-Type "${printable(contentType)}" is not a SyncML DM type`);
    }
    const decoded = tryDecodeMessage(body, { encoding });
    if (!decoded.ok) return this.#fail("decode", decoded.error.message);
    const msg = decoded.value.message;
    this.#encoding =
      this.#opts.replyEncoding === undefined || this.#opts.replyEncoding === "client"
        ? encoding
        : this.#opts.replyEncoding;
    this.#version = msg.version;
    return this.#phase === "pkg1"
      ? this.#receivePkg1(msg, decoded.value.raw, headers)
      : this.#receiveInSession(msg, decoded.value.raw, headers);
  }

  // -------------------------------------------------------------------------------------------------
  // Package #1 and authentication

  #receivePkg1(
    msg: SyncMLMessage,
    raw: Uint8Array,
    headers: Readonly<Record<string, string | undefined>>,
  ): ServerStep {
    const hdr = msg.hdr;
    // A re-sent Pkg#1 (after a challenge) keeps the device and the SessionID (protocol.md 3.7).
    if (this.#deviceId !== undefined && hdr.source.locUri !== this.#deviceId) {
      return this.#fail("protocol", "a re-sent Pkg#1 comes from another device");
    }
    if (this.#sessionId !== undefined && hdr.sessionId !== this.#sessionId) {
      return this.#fail("protocol", "a re-sent Pkg#1 carries another SessionID");
    }
    this.#deviceId = hdr.source.locUri;
    this.#sessionId = hdr.sessionId;
    this.#clientMsgId = hdr.msgId;
    this.#takeHdrMeta(hdr);

    if (hdr.verProto.trim() !== VER_PROTO[msg.version]) {
      return this.#refuse(msg, StatusCode.ProtocolVersionNotSupported, {
        code: "protocol",
        reason: `VerProto "${printable(hdr.verProto)}" is not ${VER_PROTO[msg.version]}`,
      });
    }
    const expected = this.#opts.expectedDevice;
    if (expected !== undefined && hdr.source.locUri !== expected) {
      return this.#refuse(msg, StatusCode.Forbidden, {
        code: "unexpected-device",
        reason: `Pkg#1 from "${printable(hdr.source.locUri)}", not the expected device`,
      });
    }
    const sessionAlerts = msg.body.commands.filter(
      (c): c is AlertCommand =>
        c.kind === "Alert" &&
        (isAlert(c, AlertCode.ServerInitiatedMgmt) || isAlert(c, AlertCode.ClientInitiatedMgmt)),
    );
    const initiation = this.#opts.initiation ?? "any";
    const alert = sessionAlerts[0];
    if (typeof initiation === "object") {
      if (
        sessionAlerts.length !== 1 ||
        alert === undefined ||
        !isAlert(alert, AlertCode.ServerInitiatedMgmt)
      ) {
        return this.#refuse(msg, StatusCode.BadRequest, {
          code: "wrong-session",
          reason: "Pkg#1 of a server-initiated session does not carry one Alert 1200",
        });
      }
      if (hdr.sessionId !== initiation.sessionId) {
        return this.#refuse(msg, StatusCode.BadRequest, {
          code: "wrong-session",
          reason: `Pkg#1 carries SessionID "${printable(hdr.sessionId)}", not the one of the Package #0`,
        });
      }
    } else if (sessionAlerts.length !== 1 || alert === undefined) {
      return this.#refuse(msg, StatusCode.BadRequest, {
        code: "protocol",
        reason: "Pkg#1 does not carry one Alert 1200 or 1201",
      });
    } else if (initiation === "client" && !isAlert(alert, AlertCode.ClientInitiatedMgmt)) {
      return this.#refuse(msg, StatusCode.BadRequest, {
        code: "protocol",
        reason: "Pkg#1 of a client-initiated session does not carry Alert 1201",
      });
    }

    const auth = this.#checkClient(msg, raw, headers);
    if (!auth.ok) return this.#challenge(msg, auth.status);

    this.#authenticated = true;
    this.#phase = "session";
    this.#initiatedBy = isAlert(alert, AlertCode.ServerInitiatedMgmt) ? "server" : "client";
    const scheme = this.#opts.clientAuth.scheme;
    let hdrStatus: StatusCommand;
    if (scheme === "basic") {
      hdrStatus = this.#hdrStatus(msg, StatusCode.AuthenticationAccepted);
    } else if (scheme === "md5") {
      // 212 with a Chal: the nonce the client uses in its next session (protocol.md 3.7).
      hdrStatus = this.#hdrStatus(
        msg,
        StatusCode.AuthenticationAccepted,
        buildChal("md5", this.#freshClientNonce()),
      );
    } else if (scheme === "hmac") {
      hdrStatus = this.#hdrStatus(msg, StatusCode.Ok, buildChal("hmac", this.#freshClientNonce()));
    } else {
      hdrStatus = this.#hdrStatus(msg, StatusCode.Ok);
    }
    return this.#continue(msg, hdrStatus);
  }

  #receiveInSession(
    msg: SyncMLMessage,
    raw: Uint8Array,
    headers: Readonly<Record<string, string | undefined>>,
  ): ServerStep {
    const hdr = msg.hdr;
    if (hdr.sessionId !== this.#sessionId) return this.#fail("protocol", "a message of another SessionID");
    if (hdr.source.locUri !== this.#deviceId) return this.#fail("protocol", "a message from another device");
    this.#clientMsgId = hdr.msgId;
    if (this.#opts.clientAuth.scheme === "hmac") {
      const auth = this.#checkClient(msg, raw, headers);
      if (!auth.ok) return this.#challenge(msg, auth.status);
      // HMAC: 200 and a fresh NextNonce on every message (protocol.md 3.7).
      this.#takeHdrMeta(hdr);
      return this.#continue(
        msg,
        this.#hdrStatus(msg, StatusCode.Ok, buildChal("hmac", this.#freshClientNonce())),
      );
    }
    this.#takeHdrMeta(hdr);
    return this.#continue(msg, this.#hdrStatus(msg, StatusCode.Ok));
  }

  #checkClient(
    msg: SyncMLMessage,
    raw: Uint8Array,
    headers: Readonly<Record<string, string | undefined>>,
  ): AuthResult {
    const { scheme, name, secret } = credentialsOf(this.#opts.clientAuth);
    const expected: Credentials = { name, secret };
    switch (scheme) {
      case "none":
        return { ok: true, scheme: "basic" };
      case "basic":
      case "md5":
        return verifyCred(msg.hdr.cred, expected, this.#clientNonce, { require: scheme });
      case "hmac":
        return verifyHmac(headerValue(headers, HMAC_HEADER), expected, this.#clientNonce, raw);
    }
  }

  /**
   * An authentication failure: 401/407 and a Chal with a fresh nonce on the SyncHdr, the same code
   * for every command, nothing executed; after `maxAuthAttempts` failures, the end.
   */
  #challenge(msg: SyncMLMessage, code: number): ServerStep {
    this.#authFailures++;
    const exhausted = this.#authFailures >= this.#maxAuthAttempts;
    const scheme = this.#opts.clientAuth.scheme;
    let chal: Chal | undefined;
    if (!exhausted)
      chal =
        scheme === "basic"
          ? buildChal("basic")
          : buildChal(scheme === "md5" ? "md5" : "hmac", this.#freshClientNonce());
    const statuses = [this.#hdrStatus(msg, code, chal), ...this.#statusesForAll(msg, code)];
    if (exhausted) {
      const reply = this.#emitOrFail(statuses, true);
      if (reply === undefined) return this.#end(undefined);
      return this.#end(reply, {
        code: "auth-failed",
        reason: `the client failed authentication ${this.#authFailures} times`,
      });
    }
    // Pkg#1: a whole Pkg#2 the client answers by re-sending Pkg#1. Later (HMAC): no Final, the client
    // re-sends its message; our package state is untouched.
    const reply = this.#emitOrFail(statuses, this.#phase === "pkg1");
    return reply === undefined ? this.#end(undefined) : { kind: "reply", ...reply };
  }

  /** A refused Pkg#1: the SyncHdr gets `code`, every command 215 (not executed), then the end. */
  #refuse(msg: SyncMLMessage, code: number, error: SessionError): ServerStep {
    const statuses = [this.#hdrStatus(msg, code), ...this.#statusesForAll(msg, StatusCode.NotExecuted)];
    const reply = this.#emitOrFail(statuses, true);
    return this.#end(reply, error);
  }

  #freshClientNonce(): Uint8Array {
    this.#clientNonce = newNonce(this.#opts.randomBytes, this.#nonceSize);
    if (this.#authenticated) this.#persistClientNonce = this.#clientNonce;
    return this.#clientNonce;
  }

  #takeHdrMeta(hdr: SyncHdr): void {
    const msgSize = positiveInt(hdr.meta?.maxMsgSize);
    if (msgSize !== undefined) this.#clientMaxMsgSize = msgSize;
    const objSize = positiveInt(hdr.meta?.maxObjSize);
    if (objSize !== undefined) this.#clientMaxObjSize = objSize;
  }

  // -------------------------------------------------------------------------------------------------
  // An authenticated message

  #continue(msg: SyncMLMessage, hdrStatus: StatusCommand): ServerStep {
    const statuses: StatusCommand[] = [hdrStatus];
    const rejection = this.#takeStatusOnOurHdr(msg);
    if (rejection !== undefined) {
      const reply = this.#emitOrFail(statuses, true);
      return this.#end(reply, rejection);
    }
    let abortStatus: StatusCommand | undefined;
    for (const c of msg.body.commands) {
      if (c.kind === "Status") {
        if (!isHdrStatus(c)) this.#takeStatus(c);
        continue;
      }
      // Chunks travel in contiguous messages: an object or Item between them breaks the object
      // (Status, and Alerts without Items such as 1222, may sit between them).
      const next = this.#incoming !== undefined && continues(this.#incoming, c);
      if (!next && carriesItems(c)) this.#breakIncoming();
      const whole = this.#assemble(c, next, statuses);
      if (whole === undefined) continue;
      if (whole.kind === "Results") {
        this.#takeResults(whole);
      } else if (whole.kind === "Alert") {
        const st = this.#status(c, this.#answerAlert(whole));
        statuses.push(st);
        if (isAlert(whole, AlertCode.SessionAbort)) abortStatus ??= st;
      } else if (whole.kind === "Replace") {
        statuses.push(this.#status(c, this.#takeReplace(whole)));
      } else {
        // A client sends only Replace (DevInfo), Results, Alert and Status (protocol.md 3.1).
        statuses.push(this.#status(c, StatusCode.CommandNotAllowed));
      }
    }
    if (abortStatus !== undefined) {
      // Session abort: only Status for the SyncHdr and for the Alert (protocol.md 3.9).
      this.#incoming = undefined;
      const reply = this.#emitOrFail([hdrStatus, abortStatus], true);
      return this.#end(reply, { code: "aborted", reason: "the client aborted the session (Alert 1223)" });
    }
    // A package may not close on an unfinished chunked object.
    if (msg.body.final && this.#incoming !== undefined) this.#breakIncoming();
    return this.#reply(msg, statuses);
  }

  #reply(msg: SyncMLMessage, statuses: StatusCommand[]): ServerStep {
    if (!this.#packageOpen && !msg.body.final) {
      // Next Message response: SyncHdr status, no new commands, Alert 1222, no Final.
      const commands: Command[] = [
        ...statuses,
        ...this.#takeAlertsOut(),
        this.#internalAlert(AlertCode.NextMessage),
      ];
      const reply = this.#emitOrFail(commands, false);
      return reply === undefined ? this.#end(undefined) : { kind: "reply", ...reply };
    }
    if (!this.#packageOpen) {
      // The client's package is complete: the caller may queue more before we decide.
      this.#opts.onClientPackage?.(this);
      if (this.#pending.length === 0 && this.#alertsOut.length === 0) {
        // Nothing to send: statuses and Final, a package the client must not answer (protocol.md 3.1).
        return this.#end(this.#emitOrFail(statuses, true));
      }
    }
    const msgId = String(this.#serverMsgId + 1);
    const snapshot: Snapshot = {
      msgId,
      pending: this.#pending.map((e) => ({
        record: e.record,
        lo: e.lo === undefined ? undefined : { ...e.lo },
      })),
      packageOpen: this.#packageOpen,
    };
    const base: Command[] = [...statuses, ...this.#takeAlertsOut()];
    const layout = this.#layout(msgId, base);
    if ("code" in layout) {
      // The queue cannot go out: close with statuses and Final, and report why.
      this.#packageOpen = false;
      return this.#end(this.#emitOrFail(base, true), layout);
    }
    this.#packageOpen = !layout.final;
    const reply = this.#emitOrFail(layout.commands, layout.final);
    if (reply === undefined) return this.#end(undefined);
    this.#lastSent = snapshot;
    return { kind: "reply", ...reply };
  }

  // -------------------------------------------------------------------------------------------------
  // What the client sent

  /**
   * The client's Status for our SyncHdr: our credentials accepted (200, 212; a Chal gives the nonce
   * to use next), or refused (401, 407), which sends the refused message's commands again with
   * credentials built on the challenge's nonce, once. Returns the error that ends the session.
   */
  #takeStatusOnOurHdr(msg: SyncMLMessage): SessionError | undefined {
    const st = msg.body.commands.find((c): c is StatusCommand => c.kind === "Status" && isHdrStatus(c));
    if (st === undefined) return undefined;
    const code = Number(st.data.trim());
    if (code === StatusCode.Ok || code === StatusCode.AuthenticationAccepted) {
      this.#serverAccepted = true;
      if (code === StatusCode.AuthenticationAccepted) this.#serverAuthDone = true;
      if (st.chal !== undefined) {
        const chal = readChal(st.chal);
        if (chal.ok) this.#serverNonce = chal.nonce;
      }
      return undefined;
    }
    if (code !== StatusCode.InvalidCredentials && code !== StatusCode.MissingCredentials) return undefined;
    const scheme = this.#opts.serverAuth.scheme;
    if (scheme === "none")
      return {
        code: "server-auth-rejected",
        reason: `the client answered ${code} and this server has no credentials`,
      };
    if (this.#serverRejections >= 1) {
      return {
        code: "server-auth-rejected",
        reason: `the client refused this server's credentials again (${code})`,
      };
    }
    if (st.chal === undefined) {
      return {
        code: "server-auth-rejected",
        reason: `the client refused this server's credentials (${code}) without a challenge`,
      };
    }
    const chal = readChal(st.chal);
    if (!chal.ok) return { code: "server-auth-rejected", reason: `unusable challenge: ${chal.reason}` };
    if (chal.scheme !== scheme) {
      // The auth type does not change within a session (protocol.md 3.7); no downgrade either.
      return {
        code: "server-auth-rejected",
        reason: `the client challenges for ${chal.scheme}, this server uses ${scheme}`,
      };
    }
    this.#serverRejections++;
    this.#serverNonce = chal.nonce;
    this.#serverAuthDone = false;
    this.#serverAccepted = false;
    this.#rejectedMsgId = st.msgRef;
    const snap = this.#lastSent;
    if (snap !== undefined && snap.msgId === st.msgRef.trim()) {
      // Send the refused message's commands again (new CmdIDs): the snapshot, then what came since.
      const known = new Set(snap.pending.map((e) => e.record));
      this.#pending = [
        ...snap.pending.map((e) => ({ record: e.record, lo: e.lo === undefined ? undefined : { ...e.lo } })),
        ...this.#pending.filter((e) => !known.has(e.record)),
      ];
      this.#packageOpen = snap.packageOpen;
      this.#lastSent = undefined;
    }
    return undefined;
  }

  #takeStatus(st: StatusCommand): void {
    // The statuses of a message refused for our credentials say "not executed", not results.
    if (this.#rejectedMsgId !== undefined && st.msgRef.trim() === this.#rejectedMsgId.trim()) return;
    const sent = this.#sent.get(st.cmdRef.trim());
    if (sent === undefined || sent.msgId !== st.msgRef.trim()) {
      this.#unmatched.push(st);
      return;
    }
    const record = sent.record;
    if (record === undefined) return; // our own Alert 1222/1225
    record.statuses.push(st);
    const code = Number(st.data.trim());
    if (code !== StatusCode.ChunkedItemAccepted) record.status = code;
    // A chunk refused: the object is abandoned, its remaining chunks are not sent.
    if (sent.moreData && code >= 300) this.#pending = this.#pending.filter((e) => e.record !== record);
  }

  #takeResults(r: ResultsCommand): void {
    const record = this.#resultsRecord(r);
    if (record === undefined) this.#unmatched.push(r);
    else record.results.push(r);
  }

  #resultsRecord(r: ResultsCommand): MutableRecord | undefined {
    const sent = this.#sent.get(r.cmdRef.trim());
    if (sent === undefined) return undefined;
    if (r.msgRef !== undefined && r.msgRef.trim() !== sent.msgId) return undefined;
    return sent.record;
  }

  #answerAlert(a: AlertCommand): number {
    const code = Number(a.data?.trim());
    switch (code) {
      case AlertCode.ServerInitiatedMgmt:
      case AlertCode.ClientInitiatedMgmt:
      case AlertCode.NextMessage:
      case AlertCode.SessionAbort:
      case AlertCode.NoEndOfData:
        return StatusCode.Ok;
      case AlertCode.ClientEvent:
        this.#clientEvents.push({ msgId: this.#clientMsgId, cmdId: a.cmdId, items: a.items.map(alertItem) });
        return StatusCode.Ok;
      case AlertCode.GenericAlert: {
        const items = a.items.map(alertItem);
        // Meta Type, Meta Format and Data are REQUIRED on every Item (protocol.md 3.8).
        const complete =
          items.length > 0 &&
          items.every((i) => i.type !== undefined && i.format !== undefined && i.data !== undefined);
        const draft: Omit<GenericAlert, "status"> = {
          msgId: this.#clientMsgId,
          cmdId: a.cmdId,
          correlator: a.correlator,
          items,
        };
        const status = complete
          ? (this.#opts.answerGenericAlert?.(draft) ?? StatusCode.Ok)
          : StatusCode.IncompleteCommand;
        this.#genericAlerts.push({ ...draft, status });
        return status;
      }
      case AlertCode.Display:
      case AlertCode.ConfirmOrReject:
      case AlertCode.TextInput:
      case AlertCode.SingleChoice:
      case AlertCode.MultipleChoice:
        // User interaction goes from server to client only.
        return StatusCode.CommandNotAllowed;
      default:
        return StatusCode.OptionalFeatureNotSupported;
    }
  }

  /** The DevInfo Replace: every Item a leaf below ./DevInfo (200), anything else refused (405). */
  #takeReplace(r: ItemCommand): number {
    const leaves: [string, string][] = [];
    for (const item of r.items) {
      const uri = (item.source ?? item.target)?.locUri.replace(/^\.\//, "");
      if (uri?.startsWith("DevInfo/") !== true || uri.length <= "DevInfo/".length)
        return StatusCode.CommandNotAllowed;
      leaves.push([uri.slice("DevInfo/".length), item.data === undefined ? "" : dataText(item.data)]);
    }
    for (const [k, v] of leaves) this.#devInfo[k] = v;
    return StatusCode.Ok;
  }

  // -------------------------------------------------------------------------------------------------
  // Large objects from the client (DM Protocol 1.2 section 2.2)

  /**
   * Passes `c` through the chunk reassembly: returns the whole command to act on, or undefined when
   * `c` only carried chunks (answered 213 here) or completed a refused object (424, 413 here).
   */
  #assemble(
    c: Exclude<Command, StatusCommand>,
    next: boolean,
    statuses: StatusCommand[],
  ): Command | undefined {
    if (c.kind !== "Results" && c.kind !== "Alert" && c.kind !== "Replace") return c;
    let items = [...c.items];
    let base: ChunkCarrier = c;
    const inc = this.#incoming;
    if (next && inc !== undefined) {
      // `continues` checked that c's first Item is the next chunk.
      const head = items.shift();
      assert.ok(head !== undefined);
      this.#appendChunk(inc, head.data);
      if (head.moreData === true) {
        if (items.length > 0) {
          // Items after an unfinished chunk: nothing may sit between chunks.
          this.#breakIncoming();
          statuses.push(this.#status(c, StatusCode.BadRequest));
          return undefined;
        }
        statuses.push(this.#status(c, inc.refused ?? StatusCode.ChunkedItemAccepted, true));
        return undefined;
      }
      this.#incoming = undefined;
      const failure = this.#completionFailure(inc);
      if (failure !== undefined) {
        statuses.push(this.#status(c, failure.code, true));
        if (inc.first.kind === "Results") {
          const record = this.#resultsRecord(inc.first);
          if (record !== undefined) record.refusedResults.push(failure);
        }
        return undefined;
      }
      const whole: Item = { ...withoutMoreData(inc.item), data: joinData(inc.parts) };
      items = [...inc.before, whole, ...items];
      base = inc.first;
    }
    const last = items.at(-1);
    if (last?.moreData === true) {
      const commandMeta = base.kind === "Alert" ? undefined : base.meta;
      const declared = positiveInt(last.meta?.size ?? commandMeta?.size);
      const max = this.#opts.maxObjSize;
      const refused =
        declared !== undefined && max !== undefined && declared > max
          ? StatusCode.RequestEntityTooLarge
          : undefined;
      const started: Incoming = {
        first: base,
        before: items.slice(0, -1),
        item: last,
        parts: [],
        bytes: 0,
        declared,
        refused,
      };
      this.#incoming = started;
      this.#appendChunk(started, last.data);
      statuses.push(this.#status(c, started.refused ?? StatusCode.ChunkedItemAccepted, true));
      return undefined;
    }
    return { ...base, items };
  }

  #appendChunk(inc: Incoming, data: Data | undefined): void {
    if (data === undefined || inc.refused !== undefined) return;
    const size = dataSize(data);
    inc.bytes += size;
    const max = this.#opts.maxObjSize;
    if (max !== undefined && inc.bytes > max) {
      inc.refused = StatusCode.RequestEntityTooLarge;
      inc.parts.length = 0;
      return;
    }
    inc.parts.push(data);
  }

  #completionFailure(inc: Incoming): RefusedResults | undefined {
    if (inc.refused !== undefined) {
      return { code: inc.refused, reason: `the object is larger than this server's MaxObjSize` };
    }
    if (inc.declared !== undefined && inc.declared !== inc.bytes) {
      return {
        code: StatusCode.SizeMismatch,
        reason: `the chunks add up to ${inc.bytes} bytes, the first one declared ${inc.declared}`,
      };
    }
    return undefined;
  }

  /** A chunked object cut short: Alert 1225 naming its Source and Target, nothing kept. */
  #breakIncoming(): void {
    const inc = this.#incoming;
    if (inc === undefined) return;
    this.#incoming = undefined;
    const item: Item = {
      ...(inc.item.target === undefined ? {} : { target: { locUri: inc.item.target.locUri } }),
      ...(inc.item.source === undefined ? {} : { source: { locUri: inc.item.source.locUri } }),
    };
    this.#alertsOut.push({ kind: "Alert", cmdId: "", data: String(AlertCode.NoEndOfData), items: [item] });
    if (inc.first.kind === "Results") {
      const record = this.#resultsRecord(inc.first);
      if (record !== undefined) {
        record.refusedResults.push({
          code: AlertCode.NoEndOfData,
          reason: "the chunks stopped before the last one",
        });
      }
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Building replies

  /**
   * Fills one message with queued commands after `base` (statuses, internal alerts), within the
   * client's MaxMsgSize. Stops at the first command that does not fit (it opens the next package); a
   * command that does not fit even first in a message goes as a large object when it is an Add or
   * Replace of one Item with Data, else the session cannot go on.
   */
  #layout(msgId: string, base: readonly Command[]): Layout {
    const limit = this.#clientMaxMsgSize ?? Number.POSITIVE_INFINITY;
    const out: Command[] = [...base];
    const empty = this.#measure(msgId, []);
    if (typeof empty !== "number") return empty;
    const start = this.#measure(msgId, out);
    if (typeof start !== "number") return start;
    let estimate = start;
    let sinceExact = 0;
    while (this.#pending.length > 0) {
      const entry = this.#pending[0];
      assert.ok(entry !== undefined);
      if (entry.lo === undefined) {
        const objError = this.#checkObjectSizes(entry.record.command);
        if (objError !== undefined) return objError;
        const counter = { next: this.#nextCmdId };
        const numbered = numberCommand(entry.record, counter);
        const alone = this.#measure(msgId, [numbered.command]);
        if (typeof alone !== "number") return alone;
        const guess = estimate + (alone - empty);
        const slack = ESTIMATE_SLACK_BYTES * (sinceExact + 1);
        let fits: boolean;
        if (guess + slack <= limit) {
          fits = true;
          estimate = guess;
          sinceExact++;
        } else if (guess - slack > limit) {
          fits = false;
        } else {
          const size = this.#measure(msgId, [...out, numbered.command]);
          if (typeof size !== "number") return size;
          fits = size <= limit;
          if (fits) {
            estimate = size;
            sinceExact = 0;
          }
        }
        if (fits) {
          out.push(numbered.command);
          this.#commit(msgId, counter.next, numbered.ids, false);
          this.#pending.shift();
          continue;
        }
        if (out.length > base.length) break; // the next package
        const lo = largeObjectOf(entry.record.command, this.#encoding);
        if (lo === undefined) {
          return {
            code: "command-too-large",
            reason: `a ${entry.record.command.kind} does not fit the client's MaxMsgSize (${limit}) and is not one Item with Data`,
          };
        }
        if ("code" in lo) return lo;
        entry.lo = lo;
      }
      const chunk = this.#chunk(msgId, entry, out, limit);
      if (chunk === undefined) {
        if (out.length > base.length) break;
        return {
          code: "command-too-large",
          reason: `no chunk of the object fits the client's MaxMsgSize (${limit})`,
        };
      }
      if ("code" in chunk) return chunk;
      out.push(chunk.command);
      this.#commit(msgId, chunk.nextCmdId, [[chunk.command.cmdId, entry.record]], !chunk.last);
      if (!chunk.last) return { commands: out, final: false };
      this.#pending.shift();
      const size = this.#measure(msgId, out);
      if (typeof size !== "number") return size;
      estimate = size;
      sinceExact = 0;
    }
    return { commands: out, final: true };
  }

  #commit(
    msgId: string,
    nextCmdId: number,
    ids: readonly (readonly [string, MutableRecord])[],
    moreData: boolean,
  ): void {
    this.#nextCmdId = nextCmdId;
    for (const [cmdId, record] of ids) {
      this.#sent.set(cmdId, { msgId, record, moreData });
      record.sentAs.push({ msgId, cmdId });
    }
  }

  /**
   * The next chunk of a large object that fits after `out`: Meta Size on the first chunk only,
   * MoreData on all but the last (protocol.md 3.6). Undefined when not even one byte fits.
   */
  #chunk(
    msgId: string,
    entry: PendingEntry,
    out: readonly Command[],
    limit: number,
  ): { command: Command & { cmdId: string }; nextCmdId: number; last: boolean } | SessionError | undefined {
    const lo = entry.lo;
    const command = entry.record.command;
    assert.ok(lo !== undefined && (command.kind === "Add" || command.kind === "Replace"));
    const item = command.items[0];
    assert.ok(item !== undefined);
    const cmdId = String(this.#nextCmdId);
    const first = lo.sentBytes === 0;
    const remaining = lo.total - lo.sentBytes;
    const make = (data: Data, last: boolean): Command & { cmdId: string } => ({
      ...command,
      cmdId,
      items: [chunkItem(item, data, first && !last ? lo.total : undefined, !last)],
    });
    const overhead = this.#measure(msgId, [...out, make(emptyPiece(lo.data), false)]);
    if (typeof overhead !== "number") return overhead;
    let room = Math.min(limit - overhead, remaining);
    while (room >= 1) {
      const piece = takePiece(lo, room);
      if (piece.bytes === 0) return undefined;
      const last = piece.bytes === remaining;
      const candidate = make(piece.data, last);
      const size = this.#measure(msgId, [...out, candidate]);
      if (typeof size !== "number") return size;
      if (size <= limit) {
        lo.sentBytes += piece.bytes;
        lo.sentChars += piece.chars;
        return { command: candidate, nextCmdId: this.#nextCmdId + 1, last };
      }
      // Escaping made it larger than counted: shrink by the excess and try again.
      room = Math.min(piece.bytes - 1, piece.bytes - (size - limit));
    }
    return undefined;
  }

  /** Every object of a command against the client's MaxObjSize. */
  #checkObjectSizes(command: Command): SessionError | undefined {
    const max = this.#clientMaxObjSize;
    if (max === undefined) return undefined;
    const check = (c: Command): SessionError | undefined => {
      if (isContainer(c)) {
        for (const inner of c.commands) {
          const e = check(inner);
          if (e !== undefined) return e;
        }
        return undefined;
      }
      if (c.kind === "Status" || c.kind === "Results") return undefined;
      for (const item of c.items) {
        if (item.data !== undefined && dataSize(item.data) > max) {
          return {
            code: "object-too-large",
            reason: `a ${c.kind} carries ${dataSize(item.data)} bytes, the client's MaxObjSize is ${max}`,
          };
        }
      }
      return undefined;
    };
    return check(command);
  }

  /** Encoded size of a message with these commands (Final counted), or why it cannot be encoded. */
  #measure(msgId: string, commands: readonly Command[]): number | SessionError {
    try {
      return encodeMessage(this.#message(msgId, commands, true), this.#encoding).length;
    } catch (e) {
      return { code: "encode", reason: `a queued command cannot be encoded: ${errorText(e)}` };
    }
  }

  #message(msgId: string, commands: readonly Command[], final: boolean): SyncMLMessage {
    assert.ok(this.#sessionId !== undefined && this.#deviceId !== undefined);
    let cred: Cred | undefined;
    const { scheme, name, secret } = credentialsOf(this.#opts.serverAuth);
    // Credentials go only to an authenticated client (a basic Cred would hand the password to
    // whoever asked), until it answers 212.
    if (this.#authenticated && !this.#serverAuthDone) {
      if (scheme === "basic") cred = buildCred("basic", { name, secret });
      else if (scheme === "md5") cred = buildCred("md5", { name, secret }, this.#serverNonce);
    }
    const meta: { maxMsgSize?: string; maxObjSize?: string } = {};
    if (this.#opts.maxMsgSize !== undefined) meta.maxMsgSize = String(this.#opts.maxMsgSize);
    if (this.#opts.maxObjSize !== undefined) meta.maxObjSize = String(this.#opts.maxObjSize);
    // LocName carries the user id for md5 and HMAC (protocol.md 3.2).
    const named = this.#authenticated && (scheme === "hmac" || (scheme === "md5" && cred !== undefined));
    const hdr: SyncHdr = {
      verDTD: this.#version,
      verProto: VER_PROTO[this.#version],
      sessionId: this.#sessionId,
      msgId,
      target: { locUri: this.#deviceId },
      source: named ? { locUri: this.#opts.serverUri, locName: name } : { locUri: this.#opts.serverUri },
      ...(this.#opts.respUri === undefined ? {} : { respUri: this.#opts.respUri }),
      ...(cred === undefined ? {} : { cred }),
      ...(Object.keys(meta).length === 0 ? {} : { meta }),
    };
    return { version: this.#version, hdr, body: { commands, final } };
  }

  /** Encodes and signs a reply; an encoding failure ends the session (returns undefined). */
  #emitOrFail(commands: readonly Command[], final: boolean): ServerReply | undefined {
    const msgId = String(this.#serverMsgId + 1);
    let body: Uint8Array;
    try {
      body = encodeMessage(this.#message(msgId, commands, final), this.#encoding);
    } catch (e) {
      this.#setError({ code: "encode", reason: `the reply cannot be encoded: ${errorText(e)}` });
      return undefined;
    }
    this.#serverMsgId++;
    const headers: Record<string, string> = {};
    const { scheme, name, secret } = credentialsOf(this.#opts.serverAuth);
    if (scheme === "hmac" && this.#authenticated) {
      headers[HMAC_HEADER] = formatHmacHeader({
        username: name,
        mac: hmacMac({ name, secret }, this.#serverNonce, body),
      });
    }
    return { body, contentType: contentTypeFor(this.#encoding), headers };
  }

  #hdrStatus(msg: SyncMLMessage, code: number, chal?: Chal): StatusCommand {
    return {
      kind: "Status",
      cmdId: this.#allocCmdId(),
      msgRef: msg.hdr.msgId,
      cmdRef: "0",
      cmd: "SyncHdr",
      targetRefs: [msg.hdr.target.locUri],
      sourceRefs: [msg.hdr.source.locUri],
      ...(chal === undefined ? {} : { chal }),
      data: String(code),
      items: [],
    };
  }

  /**
   * A Status for a client command. TargetRef/SourceRef are optional; they are echoed only with
   * `refs` (chunk statuses, where they name the object), which keeps statuses small under a tight
   * MaxMsgSize.
   */
  #status(c: Exclude<Command, StatusCommand>, code: number, refs = false): StatusCommand {
    const items = refs && "items" in c ? c.items : [];
    return {
      kind: "Status",
      cmdId: this.#allocCmdId(),
      msgRef: this.#clientMsgId,
      cmdRef: c.cmdId,
      cmd: c.kind,
      targetRefs: items.flatMap((i) => (i.target === undefined ? [] : [i.target.locUri])),
      sourceRefs: items.flatMap((i) => (i.source === undefined ? [] : [i.source.locUri])),
      data: String(code),
      items: [],
    };
  }

  /** One Status per received command (not for the client's own Status elements). */
  #statusesForAll(msg: SyncMLMessage, code: number): StatusCommand[] {
    return msg.body.commands.flatMap((c) => (c.kind === "Status" ? [] : [this.#status(c, code)]));
  }

  #internalAlert(code: number): AlertCommand {
    const alert: AlertCommand = { kind: "Alert", cmdId: this.#allocCmdId(), data: String(code), items: [] };
    this.#sent.set(alert.cmdId, { msgId: String(this.#serverMsgId + 1), record: undefined, moreData: false });
    return alert;
  }

  #takeAlertsOut(): AlertCommand[] {
    const alerts = this.#alertsOut.map((a) => {
      const numbered: AlertCommand = { ...a, cmdId: this.#allocCmdId() };
      this.#sent.set(numbered.cmdId, {
        msgId: String(this.#serverMsgId + 1),
        record: undefined,
        moreData: false,
      });
      return numbered;
    });
    this.#alertsOut = [];
    return alerts;
  }

  #allocCmdId(): string {
    return String(this.#nextCmdId++);
  }

  // -------------------------------------------------------------------------------------------------
  // Ending

  #fail(code: SessionErrorCode, reason: string): ServerStep {
    return this.#end(undefined, { code, reason });
  }

  #setError(error: SessionError): void {
    this.#error ??= error;
  }

  #end(reply: ServerReply | undefined, error?: SessionError): ServerStep {
    if (error !== undefined) this.#setError(error);
    this.#phase = "ended";
    return reply === undefined
      ? { kind: "end", outcome: this.outcome }
      : { kind: "end", reply, outcome: this.outcome };
  }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function newRecord(ticket: number, command: Command): MutableRecord {
  return {
    ticket,
    command,
    sentAs: [],
    statuses: [],
    status: undefined,
    results: [],
    refusedResults: [],
    inner:
      command.kind === "Atomic" || command.kind === "Sequence"
        ? command.commands.map((c) => newRecord(ticket, c))
        : [],
  };
}

/** The command with session CmdIDs, its own and its inner commands', and which record each stands for. */
function numberCommand(
  record: MutableRecord,
  counter: { next: number },
): { command: Command; ids: [string, MutableRecord][] } {
  const cmdId = String(counter.next++);
  const c = record.command;
  if (c.kind === "Atomic" || c.kind === "Sequence") {
    const inner = record.inner.map((r) => numberCommand(r, counter));
    return {
      command: { ...c, cmdId, commands: inner.map((i) => i.command) },
      ids: [[cmdId, record], ...inner.flatMap((i) => i.ids)],
    };
  }
  return { command: { ...c, cmdId }, ids: [[cmdId, record]] };
}

/** The data of a command that may go as a large object, normalised for the encoding. */
function largeObjectOf(command: Command, encoding: Encoding): LargeObject | SessionError | undefined {
  if (command.kind !== "Add" && command.kind !== "Replace") return undefined;
  const item = command.items[0];
  if (command.items.length !== 1 || item?.data === undefined) return undefined;
  const data = item.data;
  if (data.kind === "element") return undefined;
  if (data.kind === "text") return { data, total: UTF8.encode(data.text).length, sentBytes: 0, sentChars: 0 };
  if (encoding === "wbxml") return { data, total: data.bytes.length, sentBytes: 0, sentChars: 0 };
  // XML carries text only: binary must have been given as b64 text.
  let text: string;
  try {
    text = UTF8_STRICT.decode(data.bytes);
  } catch {
    return {
      code: "encode",
      reason: `a ${command.kind} carries binary Data, which XML cannot (send it as b64)`,
    };
  }
  return { data: { kind: "text", text }, total: data.bytes.length, sentBytes: 0, sentChars: 0 };
}

/** A chunk's Item: Target, Source and Meta repeated (Size only when given), the piece, MoreData. */
function chunkItem(item: Item, data: Data, totalSize: number | undefined, moreData: boolean): Item {
  const meta = totalSize === undefined ? omitSize(item.meta) : { ...item.meta, size: String(totalSize) };
  return {
    ...(item.target === undefined ? {} : { target: item.target }),
    ...(item.source === undefined ? {} : { source: item.source }),
    ...(meta === undefined ? {} : { meta }),
    data,
    ...(moreData ? { moreData: true } : {}),
  };
}

function dataText(d: Data): string {
  switch (d.kind) {
    case "text":
      return d.text;
    case "opaque":
      return UTF8_LENIENT.decode(d.bytes);
    case "element":
      return elementText(d.element);
  }
}

function alertItem(i: Item): AlertItem {
  return {
    source: i.source?.locUri,
    target: i.target?.locUri,
    type: i.meta?.type,
    format: i.meta?.format,
    mark: i.meta?.mark,
    data: i.data,
  };
}

/** Whether `c` is the next chunk of `inc`: same command kind, same Results CmdRef, same Item. */
function continues(inc: Incoming, c: Command): boolean {
  if (c.kind === "Status" || c.kind !== inc.first.kind) return false;
  if (c.kind === "Results" && inc.first.kind === "Results" && c.cmdRef.trim() !== inc.first.cmdRef.trim())
    return false;
  const head = "items" in c ? c.items[0] : undefined;
  if (head === undefined) return false;
  const same = (a: Location | undefined, b: Location | undefined): boolean =>
    a === undefined || b === undefined || a.locUri === b.locUri;
  return same(head.source, inc.item.source) && same(head.target, inc.item.target);
}

function isContainer(c: Command): c is ContainerCommand {
  return c.kind === "Atomic" || c.kind === "Sequence";
}

function isHdrStatus(st: StatusCommand): boolean {
  return st.cmdRef.trim() === "0" && st.cmd.trim() === "SyncHdr";
}

function isAlert(a: AlertCommand, code: number): boolean {
  return a.data?.trim() === String(code);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Peer text made safe for a reason: printable ASCII only, at most 40 characters. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return clean.length > 40 ? `${clean.slice(0, 40)}...` : clean;
}
