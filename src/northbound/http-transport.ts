/**
 * Moves one DM message to a DM server and back over HTTP(S) (protocol.md 3.11): the I/O half of a
 * management session, kept apart from the sans-I/O `ClientSession` (style.md 2.3).
 *
 *   postMessage(request) -> POST url (keep-alive agent, TLS options) -> 2xx: body (capped)
 *                                                                     -> otherwise: a failure value
 *
 * Decisions:
 * - Failures are values, not exceptions: a server that times out, answers 4xx/5xx, sends too much or
 *   cannot be reached is a normal northbound condition the session runner reports and retries later.
 *   Only misuse (a URL that is not http/https) is a programmer error and throws.
 * - One deadline covers the whole exchange (connect, upload, response head and body); it always
 *   settles before `timeoutMs` plus the event loop's latency.
 * - Messages never hold the request body, headers (HMAC MACs, credentials) or the URL's query, nor
 *   OpenSSL's long error strings (source paths, library names): a TLS failure says what failed,
 *   for which host:port, and the short code (describeTlsFailure).
 * - Stale keep-alive sockets: a request on a reused idle socket that dies (ECONNRESET, EPIPE,
 *   "socket hang up") before any response byte is resent once on a fresh connection: the server
 *   closed the socket while it was idle and never saw the request. Nothing else is retried: once
 *   a fresh connection took the request, or the server began answering, the server may have acted
 *   on the message. Idle sockets are closed after `idleSocketMs` so that case stays rare.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";

/** PEM material for https: our trust anchors and, for mutual TLS, our client certificate. */
export interface TlsOptions {
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

export interface MessageRequest {
  readonly url: string;
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Deadline for the whole exchange, ms (> 0). */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Largest response body accepted, bytes; default the transport's (1 MiB). */
  readonly maxResponseBytes?: number;
}

export interface MessageResponse {
  readonly ok: true;
  readonly status: number;
  readonly body: Uint8Array;
  readonly contentType: string;
  /** Response headers, lower-case names; repeated ones joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Why an exchange failed. `tls`: the server's certificate did not verify (untrusted, expired, not
 * for this host), the server refused our client certificate, or the TLS handshake failed; fixing
 * it takes configuration, unlike a `network` failure (unreachable, reset), which may pass.
 */
export type TransportFailureKind = "timeout" | "http-status" | "too-large" | "network" | "tls" | "aborted";

export interface TransportFailure {
  readonly ok: false;
  readonly kind: TransportFailureKind;
  /** The HTTP status, for `http-status` (and `too-large` when the head came). */
  readonly status?: number;
  /** For logs: no secrets, no body. */
  readonly message: string;
}

export type MessageResult = MessageResponse | TransportFailure;

/** What the session runner needs from a transport (HttpTransport, or a fake in tests). */
export interface MessageTransport {
  postMessage(request: MessageRequest): Promise<MessageResult>;
}

/** Default response body cap, bytes. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

export interface HttpTransportOptions {
  readonly tls?: TlsOptions;
  /** Default response body cap, bytes (>= 1). */
  readonly maxResponseBytes?: number;
  /** Sockets kept per origin (default 2: one session at a time, plus a spare). */
  readonly maxSockets?: number;
  /**
   * An idle keep-alive socket is closed after this many ms (default 15 s; >= 1), or sooner when
   * the server's `Keep-Alive: timeout=N` says it closes first (Node's agent then keeps N - 1 s):
   * a socket the server is about to close is not reused.
   */
  readonly idleSocketMs?: number;
}

/** Default idle keep-alive socket lifetime, ms. */
export const DEFAULT_IDLE_SOCKET_MS = 15_000;

/**
 * A keep-alive agent per scheme: one session's messages reuse one connection. `close()` destroys
 * both agents and every socket they hold, so nothing keeps the process alive.
 */
export class HttpTransport implements MessageTransport {
  readonly #http: http.Agent;
  readonly #https: https.Agent;
  readonly #maxResponseBytes: number;
  readonly #presentsClientCert: boolean;
  #closed = false;

  constructor(options: HttpTransportOptions = {}) {
    const maxSockets = options.maxSockets ?? 2;
    const idleSocketMs = options.idleSocketMs ?? DEFAULT_IDLE_SOCKET_MS;
    assert.ok(Number.isInteger(idleSocketMs) && idleSocketMs >= 1, "idleSocketMs must be an integer >= 1");
    // `timeout` is the socket timeout: the agent destroys a socket in its idle pool when it fires;
    // on a socket in use it only emits 'timeout' on the request, and each request has its own
    // deadline (timeoutMs) anyway.
    this.#http = new http.Agent({ keepAlive: true, maxSockets, timeout: idleSocketMs });
    const tls = options.tls ?? {};
    this.#presentsClientCert = tls.cert !== undefined;
    this.#https = new https.Agent({
      keepAlive: true,
      maxSockets,
      timeout: idleSocketMs,
      ...(tls.ca !== undefined && { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
      ...(tls.cert !== undefined && { cert: tls.cert }),
      ...(tls.key !== undefined && { key: tls.key }),
    });
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  }

  /**
   * POSTs one message; after `close()` every call fails with `network`. The URL's scheme picks the
   * agent; for https the transport's TLS options apply (a request's own are not used).
   */
  postMessage(request: MessageRequest): Promise<MessageResult> {
    if (this.#closed) {
      return Promise.resolve({ ok: false, kind: "network", message: "the transport is closed" });
    }
    const isHttps = new URL(request.url).protocol === "https:";
    return send(
      { ...request, maxResponseBytes: request.maxResponseBytes ?? this.#maxResponseBytes },
      isHttps ? this.#https : this.#http,
      {}, // the https agent holds the TLS options
      isHttps && this.#presentsClientCert,
    );
  }

  /** Destroys the agents and their sockets (in use or idle). Idempotent. */
  close(): void {
    this.#closed = true;
    this.#http.destroy();
    this.#https.destroy();
  }
}

/**
 * POSTs `body` to `url` and resolves with the 2xx response or a failure value; never rejects.
 * Without `agent` the request uses a one-off connection (`agent: false`) closed after it.
 *
 * @throws AssertionError for a URL that is not http: or https:, or a `timeoutMs` that is not > 0.
 */
export function postMessage(
  request: MessageRequest & { readonly agent?: http.Agent; readonly tls?: TlsOptions },
): Promise<MessageResult> {
  const tls = request.tls ?? {};
  return send(request, request.agent, tls, tls.cert !== undefined);
}

/** Codes Node gives a certificate that does not verify (OpenSSL's X509_V_ERR_* names). */
const CERT_VERIFY_CODES: ReadonlySet<string> = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_CRL",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CRL_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CRL_NOT_YET_VALID",
  "CRL_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "ERROR_IN_CRL_LAST_UPDATE_FIELD",
  "ERROR_IN_CRL_NEXT_UPDATE_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
]);

/** A connection that died under a request: on a reused idle socket, the mark of a stale one. */
const CONNECTION_LOST_CODES: ReadonlySet<string> = new Set(["ECONNRESET", "EPIPE"]);

/** What one attempt knew when its request failed. */
interface AttemptState {
  /** The socket came from the agent's idle pool (`req.reusedSocket`). */
  reused: boolean;
  /** Some response byte (decrypted, for TLS) arrived on this request's socket. */
  answered: boolean;
}

function send(
  request: MessageRequest,
  agent: http.Agent | undefined,
  tls: TlsOptions,
  presentsClientCert: boolean,
): Promise<MessageResult> {
  const url = new URL(request.url);
  assert.ok(url.protocol === "http:" || url.protocol === "https:", `not an http(s) URL: ${url.protocol}`);
  assert.ok(request.timeoutMs > 0, "timeoutMs must be > 0");
  const where = `${url.origin}${url.pathname}`;
  const isHttps = url.protocol === "https:";
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? (isHttps ? 443 : 80) : Number(url.port);
  const hostPort = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const cap = request.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const lib = isHttps ? https : http;

  return new Promise<MessageResult>((resolve) => {
    let settled = false;
    let req: http.ClientRequest | undefined = undefined;
    let detach = (): void => undefined;
    const finish = (result: MessageResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", onAbort);
      detach();
      if (!result.ok) req?.destroy();
      resolve(result);
    };
    const fail = (kind: TransportFailureKind, message: string, status?: number): void => {
      finish({ ok: false, kind, message, ...(status !== undefined && { status }) });
    };
    // One deadline and one abort signal for the whole exchange, a retry included.
    const timer = setTimeout(() => {
      fail("timeout", `no answer from ${where} within ${request.timeoutMs} ms`);
    }, request.timeoutMs);
    const onAbort = (): void => {
      fail("aborted", `the request to ${where} was aborted`);
    };
    if (request.signal?.aborted === true) {
      onAbort();
      return;
    }
    request.signal?.addEventListener("abort", onAbort, { once: true });

    const attempt = (retry: boolean): void => {
      const state: AttemptState = { reused: false, answered: false };
      const current = lib.request(
        url,
        {
          method: "POST",
          agent: agent ?? false,
          headers: {
            ...request.headers,
            "content-type": request.contentType,
            "content-length": String(request.body.byteLength),
          },
          ...(isHttps && {
            ...(tls.ca !== undefined && { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
            ...(tls.cert !== undefined && { cert: tls.cert }),
            ...(tls.key !== undefined && { key: tls.key }),
          }),
        },
        (res) => {
          onResponse(res);
        },
      );
      req = current;
      current.on("socket", (socket) => {
        if (settled || req !== current) return;
        state.reused = current.reusedSocket;
        // Decrypted bytes for TLS: a close_notify or a session ticket is not an answer. The
        // listener goes when the exchange settles or retries, before the socket can serve another.
        const onData = (): void => {
          state.answered = true;
        };
        socket.on("data", onData);
        detach = () => {
          socket.removeListener("data", onData);
        };
      });
      current.on("error", (e: Error) => {
        // After a timeout or abort the destroy() error lands here; the result is already settled.
        if (settled || req !== current) return;
        const code = errorCode(e);
        if (
          !retry &&
          agent !== undefined &&
          state.reused &&
          !state.answered &&
          CONNECTION_LOST_CODES.has(code)
        ) {
          // A stale keep-alive socket: the server closed it while idle and never saw this
          // request, so resending the message is safe. Once, on a fresh connection: the
          // origin's other idle sockets are as old as this one, so they go too.
          detach();
          evictIdleSockets(agent, host, port);
          attempt(true);
          return;
        }
        const tlsMessage = isHttps
          ? describeTlsFailure(e, code, {
              host,
              hostPort,
              fresh: !state.reused,
              answered: state.answered,
              presentsClientCert,
            })
          : undefined;
        if (tlsMessage !== undefined) fail("tls", tlsMessage);
        else fail("network", `POST to ${where} failed: ${safeErrorText(e, code)}`);
      });
      current.end(request.body);
    };

    const onResponse = (res: http.IncomingMessage): void => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume(); // drain so a keep-alive socket can be reused
        fail("http-status", `${where} answered HTTP ${status}`, status);
        return;
      }
      const declared = Number(res.headers["content-length"]);
      if (Number.isFinite(declared) && declared > cap) {
        fail("too-large", `${where} announced ${declared} bytes, over the ${cap}-byte cap`, status);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > cap) {
          fail("too-large", `${where} sent more than the ${cap}-byte cap`, status);
          return;
        }
        chunks.push(chunk);
      });
      res.on("error", (e: Error) => {
        fail("network", `reading the answer of ${where} failed: ${safeErrorText(e, errorCode(e))}`);
      });
      res.on("aborted", () => {
        fail("network", `${where} closed the connection mid-answer`);
      });
      res.on("end", () => {
        if (!res.complete) {
          fail("network", `${where} closed the connection mid-answer`);
          return;
        }
        finish({
          ok: true,
          status,
          body: new Uint8Array(Buffer.concat(chunks)),
          contentType: res.headers["content-type"] ?? "",
          headers: flattenHeaders(res.headers),
        });
      });
    };

    attempt(false);
  });
}

function errorCode(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  return typeof code === "string" ? code : "";
}

/**
 * The message of a `tls` failure, or undefined when `e` is not one. Decided from Node's error code:
 *
 * - A server certificate that does not verify (untrusted, self-signed, expired, not yet valid,
 *   revoked...): OpenSSL's verify code (CERT_VERIFY_CODES). Host name mismatch:
 *   ERR_TLS_CERT_ALTNAME_INVALID. These are certain.
 * - The handshake failing in OpenSSL: ERR_SSL_* (an alert from the server, such as TLS 1.3's
 *   "certificate required" when we present no client certificate, or an unknown CA / bad
 *   certificate alert in TLS 1.2), ERR_TLS_* (Node's own checks, handshake timeout), and EPROTO
 *   (no common protocol version, or a peer that does not speak TLS at all).
 * - A client certificate the server's *application* refuses (Node's https server, for one,
 *   verifies the chain after the handshake and destroys the socket without an alert): all we see
 *   is ECONNRESET / EPIPE ("socket hang up") on a fresh connection before any response byte.
 *   That is `tls` only when we presented a client certificate, as the likely cause; it cannot be
 *   told apart from a server that crashes or resets right after the handshake. Without a client
 *   certificate the same reset is `network`, as is a reset on a reused socket (no handshake ran).
 */
function describeTlsFailure(
  e: Error,
  code: string,
  ctx: {
    readonly host: string;
    readonly hostPort: string;
    readonly fresh: boolean;
    readonly answered: boolean;
    readonly presentsClientCert: boolean;
  },
): string | undefined {
  const { hostPort } = ctx;
  if (code === "CERT_HAS_EXPIRED") return `the certificate of ${hostPort} has expired (${code})`;
  if (code === "CERT_NOT_YET_VALID") return `the certificate of ${hostPort} is not yet valid (${code})`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") {
    return `the certificate of ${hostPort} is not issued for ${ctx.host} (${code})`;
  }
  if (CERT_VERIFY_CODES.has(code)) return `the certificate of ${hostPort} is not trusted (${code})`;
  if (code.includes("CERTIFICATE_REQUIRED")) {
    return `${hostPort} requires a client certificate: TLS handshake refused (${code})`;
  }
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_") || code === "EPROTO") {
    const reason = openSslReason(e);
    return `the TLS handshake with ${hostPort} failed${reason === undefined ? "" : `: ${reason}`} (${code})`;
  }
  if (CONNECTION_LOST_CODES.has(code) && ctx.fresh && !ctx.answered && ctx.presentsClientCert) {
    return `${hostPort} closed the connection after the TLS handshake without answering: it likely refused our client certificate (${code})`;
  }
  return undefined;
}

/**
 * OpenSSL's reason phrase ("wrong version number", "tlsv13 alert certificate required") from
 * `err.reason` or the error string `<id>:error:<code>:<library>:<function>:<reason>:<file>:<line>:`;
 * never the source file path or the rest of the library string.
 */
function openSslReason(e: Error): string | undefined {
  const own = (e as { reason?: unknown }).reason;
  const text =
    typeof own === "string" ? own : /:error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^:]+):/.exec(e.message)?.[1];
  if (text === undefined) return undefined;
  const reason = text.replace(/\s+/g, " ").trim();
  if (reason === "" || /[/\\]/.test(reason)) return undefined;
  return reason.length > 80 ? `${reason.slice(0, 80)}…` : reason;
}

/** An error's text for a log line: OpenSSL's long strings reduced to their reason and code. */
function safeErrorText(e: Error, code: string): string {
  if (/:error:[0-9A-Fa-f]+:/.test(e.message) || /\.[ch]:\d+/.test(e.message)) {
    const reason = openSslReason(e);
    return `${reason ?? "TLS error"}${code === "" ? "" : ` (${code})`}`;
  }
  const text = e.message.replace(/\s+/g, " ").trim();
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/**
 * Destroys the agent's idle sockets to host:port. Node names an agent's pools
 * `host:port:localAddress[:family][:TLS options]`, so the pool names start with `host:port:`.
 */
function evictIdleSockets(agent: http.Agent, host: string, port: number): void {
  const prefix = `${host}:${port}:`;
  for (const [name, sockets] of Object.entries(agent.freeSockets)) {
    if (!name.startsWith(prefix) || sockets === undefined) continue;
    for (const socket of [...sockets]) socket.destroy();
  }
}

function flattenHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}
