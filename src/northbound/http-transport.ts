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
 * - Messages never hold the request body, headers (HMAC MACs, credentials) or the URL's query.
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

export type TransportFailureKind = "timeout" | "http-status" | "too-large" | "network" | "aborted";

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
}

/**
 * A keep-alive agent per scheme: one session's messages reuse one connection. `close()` destroys
 * both agents and every socket they hold, so nothing keeps the process alive.
 */
export class HttpTransport implements MessageTransport {
  readonly #http: http.Agent;
  readonly #https: https.Agent;
  readonly #maxResponseBytes: number;
  #closed = false;

  constructor(options: HttpTransportOptions = {}) {
    const maxSockets = options.maxSockets ?? 2;
    this.#http = new http.Agent({ keepAlive: true, maxSockets });
    const tls = options.tls ?? {};
    this.#https = new https.Agent({
      keepAlive: true,
      maxSockets,
      ...(tls.ca !== undefined && { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
      ...(tls.cert !== undefined && { cert: tls.cert }),
      ...(tls.key !== undefined && { key: tls.key }),
    });
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  }

  /** POSTs one message; after `close()` every call fails with `network`. */
  postMessage(request: MessageRequest): Promise<MessageResult> {
    if (this.#closed) {
      return Promise.resolve({ ok: false, kind: "network", message: "the transport is closed" });
    }
    const agent = new URL(request.url).protocol === "https:" ? this.#https : this.#http;
    return postMessage({
      ...request,
      agent,
      maxResponseBytes: request.maxResponseBytes ?? this.#maxResponseBytes,
    });
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
  const url = new URL(request.url);
  assert.ok(url.protocol === "http:" || url.protocol === "https:", `not an http(s) URL: ${url.protocol}`);
  assert.ok(request.timeoutMs > 0, "timeoutMs must be > 0");
  const where = `${url.origin}${url.pathname}`;
  const cap = request.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const lib = url.protocol === "https:" ? https : http;
  const tls = request.tls ?? {};

  return new Promise<MessageResult>((resolve) => {
    let settled = false;
    let req: http.ClientRequest | undefined = undefined;
    const finish = (result: MessageResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", onAbort);
      if (!result.ok) req?.destroy();
      resolve(result);
    };
    const fail = (kind: TransportFailureKind, message: string, status?: number): void => {
      finish({ ok: false, kind, message, ...(status !== undefined && { status }) });
    };
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

    req = lib.request(
      url,
      {
        method: "POST",
        agent: request.agent ?? false,
        headers: {
          ...request.headers,
          "content-type": request.contentType,
          "content-length": String(request.body.byteLength),
        },
        ...(url.protocol === "https:" && {
          ...(tls.ca !== undefined && { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
          ...(tls.cert !== undefined && { cert: tls.cert }),
          ...(tls.key !== undefined && { key: tls.key }),
        }),
      },
      (res) => {
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
          fail("network", `reading the answer of ${where} failed: ${e.message}`);
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
      },
    );
    req.on("error", (e: Error) => {
      // After a timeout or abort the destroy() error lands here; the result is already settled.
      fail("network", `POST to ${where} failed: ${e.message}`);
    });
    req.end(request.body);
  });
}

function flattenHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}
