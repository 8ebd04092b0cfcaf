/**
 * A loopback HTTP proxy in front of the DM server simulator, for tests of what the gateway does with
 * a bad answer: each request is forwarded as it came, and a per-response hook may replace the
 * status, content type, headers or body of the simulator's answer, or hold it back for a while.
 *
 *   gateway --POST--> TamperProxy (records the request body) --POST--> DmServerSimulator
 *   gateway <-------- hook(exchange) -> tampered answer (or the original) <-----------+
 *
 * The simulator must announce the proxy as its origin (`publicOrigin: proxy.origin`), so every
 * RespURI it gives out points back at the proxy: start the proxy first, then the simulator, then set
 * `proxy.target` to the simulator's origin.
 *
 * `stop()` closes the listener, every connection (keep-alive too), every upstream request and every
 * pending delay. Plain code (no mocha), so child processes of crash tests may use it too.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** One request the proxy received (and forwarded, when a target was set). */
export interface ProxiedRequest {
  /** 0-based, in arrival order. */
  readonly index: number;
  /** Path and query, as received. */
  readonly path: string;
  readonly contentType: string;
  /** Request headers, lower-case names, repeated ones joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/** The simulator's answer to one request, as the hook sees it. */
export interface ProxyExchange {
  readonly request: ProxiedRequest;
  readonly status: number;
  readonly contentType: string;
  /** Response headers, lower-case names, hop-by-hop ones and content-type/-length left out. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/** What to change in one answer; an absent field keeps the simulator's. */
export interface Tamper {
  readonly status?: number;
  readonly contentType?: string;
  /** The whole header set to send instead (content-type and content-length are set apart). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string;
  /** Hold the answer back this long, ms. */
  readonly delayMs?: number;
  /** Send the body chunked, without a content-length (so a size cap is hit while streaming). */
  readonly omitContentLength?: boolean;
}

export type TamperHook = (exchange: ProxyExchange) => Tamper | undefined;

export interface TamperProxyOptions {
  /** The origin requests go to (`http://127.0.0.1:1234`); may be set later with `target`. */
  readonly target?: string;
  readonly hook?: TamperHook;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "host",
  "content-length",
  "content-type",
]);

export class TamperProxy {
  /** The upstream origin; requests before it is set are answered 502. */
  target: string | undefined;
  /** Called for every upstream answer; undefined (or returning undefined) forwards it unchanged. */
  hook: TamperHook | undefined;
  readonly #requests: ProxiedRequest[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #upstream = new Set<http.ClientRequest>();
  #server: http.Server | undefined;
  #origin: string | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: TamperProxyOptions = {}) {
    this.target = options.target;
    this.hook = options.hook;
  }

  /** `http://127.0.0.1:<port>` once started. */
  get origin(): string {
    if (this.#origin === undefined) throw new Error("the tamper proxy is not started");
    return this.#origin;
  }

  /** Every request received so far, oldest first. */
  requests(): readonly ProxiedRequest[] {
    return [...this.#requests];
  }

  /** Listens on a free loopback port and resolves with the origin. */
  async start(): Promise<{ origin: string }> {
    if (this.#server !== undefined) throw new Error("the tamper proxy is already started");
    const server = http.createServer((req, res) => {
      this.#handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(e instanceof Error ? e.message : String(e));
      });
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    this.#origin = `http://127.0.0.1:${port}`;
    return { origin: this.#origin };
  }

  /** Closes the listener, every connection, upstream request and pending delay. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const r of this.#upstream) r.destroy();
    this.#upstream.clear();
    const server = this.#server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
      server.closeAllConnections();
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const headers = flatten(req.headers);
    const request: ProxiedRequest = {
      index: this.#requests.length,
      path: req.url ?? "/",
      contentType: headers["content-type"] ?? "",
      headers,
      body: new Uint8Array(Buffer.concat(chunks)),
    };
    this.#requests.push(request);
    const target = this.target;
    if (target === undefined) throw new Error("the tamper proxy has no target");
    const upstream = await this.#forward(target, req, request);
    const tamper = this.hook?.(upstream) ?? {};
    if (tamper.delayMs !== undefined && tamper.delayMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.#timers.delete(t);
          resolve();
        }, tamper.delayMs);
        this.#timers.add(t);
      });
    }
    if (res.destroyed) return; // the client went away (or stop()) while the answer was held back
    const body =
      tamper.body === undefined
        ? upstream.body
        : typeof tamper.body === "string"
          ? Buffer.from(tamper.body, "utf8")
          : tamper.body;
    const out: Record<string, string> = {
      ...(tamper.headers ?? upstream.headers),
      "content-type": tamper.contentType ?? upstream.contentType,
    };
    if (tamper.omitContentLength !== true) out["content-length"] = String(body.byteLength);
    res.writeHead(tamper.status ?? upstream.status, out);
    res.end(body);
  }

  #forward(target: string, req: http.IncomingMessage, request: ProxiedRequest): Promise<ProxyExchange> {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (name !== "host" && name !== "connection" && name !== "keep-alive") headers[name] = value;
    }
    headers["content-length"] = String(request.body.byteLength);
    return new Promise<ProxyExchange>((resolve, reject) => {
      const up = http.request(
        new URL(request.path, target),
        { method: req.method ?? "POST", headers, agent: false },
        (r) => {
          const chunks: Buffer[] = [];
          r.on("data", (c: Buffer) => chunks.push(c));
          r.on("error", reject);
          r.on("end", () => {
            this.#upstream.delete(up);
            const all = flatten(r.headers);
            const kept: Record<string, string> = {};
            for (const [name, value] of Object.entries(all)) if (!HOP_BY_HOP.has(name)) kept[name] = value;
            resolve({
              request,
              status: r.statusCode ?? 502,
              contentType: all["content-type"] ?? "",
              headers: kept,
              body: new Uint8Array(Buffer.concat(chunks)),
            });
          });
        },
      );
      this.#upstream.add(up);
      up.on("error", (e) => {
        this.#upstream.delete(up);
        reject(e);
      });
      up.end(request.body);
    });
  }
}

function flatten(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}
