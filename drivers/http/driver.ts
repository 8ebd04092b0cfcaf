/**
 * The `http` proxy driver: the OMA DM HTTP binding toward end devices (design.md section 3). The
 * gateway serves a southbound DM endpoint; a device POSTs its Package 1 to `<path>` and every later
 * message to the RespURI the session gave it (`<path>/s/<route>`); the gateway triggers a device with
 * a Package #0 in a WSP Push over UDP to the device's address (port 2948 unless the address says).
 *
 *   POST <path>            -> ctx.onMessage(from, message, undefined)  -> 200 reply | 204 | 4xx
 *   POST <path>/s/<route>  -> ctx.onMessage(from, message, route)
 *   notify(udp://host:port) -> WSP Push (TID 0, 0xC4, x-wap-application:syncml.dm) in one datagram
 *
 * Decisions:
 * - Bad requests never reach a session: a wrong method (405), path (404), content type (415) or an
 *   oversize body (413, the rest drained up to a bound, then the socket closed) is answered here.
 * - The device's address for notifications is its inventory address, not the source of its POSTs
 *   (a device behind NAT posts from a port nobody can reach); `from.address` tells where it posted
 *   from, for logs.
 * - `stop()` closes the listener and every open connection and the UDP socket; it never throws.
 */
import dgram from "node:dgram";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import { readBoundedBody } from "../../src/core/http-body.js";
import { encodingForContentType, MIME_DM_NOTIFICATION } from "../../src/syncml/index.js";
import { APP_ID_SYNCML_DM, encodeWspPush, WAP_PUSH_PORT } from "../../src/syncml/wsp-push.js";
import type { DeviceAddress, DeviceAnswer, DriverState, ProxyDriver, ProxyDriverContext } from "../driver.js";

export interface HttpDriverConfig {
  /** Listen address; default 0.0.0.0. */
  readonly host?: string;
  /** Listen port; 0 picks a free one (read `port` after start). Default 8080. */
  readonly port?: number;
  /** Base path of the endpoint; default `/dm`. */
  readonly path?: string;
  /** The URL devices reach the endpoint at (for RespURI); default `http://<host>:<port>`. */
  readonly publicUrl?: string;
  /** Largest request body, bytes; default 64 KiB. */
  readonly maxBodyBytes?: number;
  /** Sessions at once (the planner's limit); default 512. */
  readonly concurrency?: number;
}

const DEFAULT_PORT = 8080;
const DEFAULT_PATH = "/dm";
const DEFAULT_MAX_BODY = 64 * 1024;
/** An oversize body is drained (so the device reads the 413) up to this many times the limit. */
const DRAIN_FACTOR = 4;
const ROUTE = /^[0-9a-f]{32}$/;

class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "Refusal";
  }
}

export class HttpDriver implements ProxyDriver {
  readonly kind = "http";
  readonly mode = "proxy";
  readonly concurrency: number;
  readonly #config: HttpDriverConfig;
  readonly #ctx: ProxyDriverContext;
  readonly #path: string;
  readonly #maxBody: number;
  #state: DriverState = "stopped";
  #server: http.Server | undefined;
  #udp: dgram.Socket | undefined;
  readonly #sockets = new Set<Socket>();
  #port = 0;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(config: HttpDriverConfig, ctx: ProxyDriverContext) {
    this.#config = config;
    this.#ctx = ctx;
    this.#path = (config.path ?? DEFAULT_PATH).replace(/\/+$/, "");
    this.#maxBody = config.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.concurrency = config.concurrency ?? 512;
  }

  get state(): DriverState {
    return this.#state;
  }

  /** The bound port (after start). */
  get port(): number {
    return this.#port;
  }

  /** The endpoint devices post their Package 1 to. */
  get url(): string {
    return `${this.#base()}${this.#path}`;
  }

  start(): Promise<void> {
    if (this.#stopping !== undefined) {
      return Promise.reject(new GatewayError("the http driver was stopped", ErrorCode.Driver_StartFailed));
    }
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    this.#setState("starting");
    const server = http.createServer((req, res) => {
      void this.#handle(req, res);
    });
    server.on("connection", (socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    this.#server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.#config.port ?? DEFAULT_PORT, this.#config.host ?? "0.0.0.0", () => {
          server.off("error", reject);
          resolve();
        });
      });
      this.#udp = dgram.createSocket("udp4");
      // A send error (unreachable host) is reported by send's callback; this keeps a stray one from
      // becoming an unhandled 'error' event.
      this.#udp.on("error", (e) => {
        this.#ctx.log.warn("the notification socket reported an error", { error: e.message });
      });
    } catch (e) {
      this.#server = undefined;
      server.close();
      this.#setState("stopped");
      throw new GatewayError(`the http driver cannot listen: ${errorText(e)}`, ErrorCode.Driver_StartFailed, {
        cause: e,
      });
    }
    this.#port = (server.address() as AddressInfo).port;
    this.#setState("ready");
    this.#ctx.log.info("southbound DM endpoint ready", { url: this.url });
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    if (this.#state === "stopped") return;
    this.#setState("stopping");
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    }
    const udp = this.#udp;
    this.#udp = undefined;
    if (udp !== undefined) {
      await new Promise<void>((resolve) => {
        udp.close(() => {
          resolve();
        });
      });
    }
    this.#setState("stopped");
  }

  respUri(route: string): string {
    return `${this.#base()}${this.#path}/s/${route}`;
  }

  async notify(device: DeviceAddress, package0: Uint8Array): Promise<void> {
    const udp = this.#udp;
    if (udp === undefined || this.#state !== "ready") {
      throw new GatewayError("the http driver is not running", ErrorCode.Driver_Stopped);
    }
    const target = udpTarget(device.address);
    if (target === undefined) {
      throw new GatewayError(
        `no UDP address to notify in ${JSON.stringify(device.address)}`,
        ErrorCode.Driver_Unreachable,
      );
    }
    const datagram = encodeWspPush({
      tid: 0,
      contentType: MIME_DM_NOTIFICATION,
      appId: APP_ID_SYNCML_DM,
      body: package0,
    });
    await new Promise<void>((resolve, reject) => {
      udp.send(datagram, target.port, target.host, (e) => {
        if (e === null) resolve();
        else {
          reject(
            new GatewayError(
              `the notification to ${target.host}:${target.port} failed: ${e.message}`,
              ErrorCode.Driver_Unreachable,
              {
                cause: e,
              },
            ),
          );
        }
      });
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const path = new URL(req.url ?? "/", "http://device").pathname.replace(/\/+$/, "");
      let route: string | undefined;
      if (path !== this.#path) {
        const prefix = `${this.#path}/s/`;
        route = path.startsWith(prefix) ? path.slice(prefix.length) : undefined;
        if (route === undefined || !ROUTE.test(route)) throw new Refusal(404, "no such path");
      }
      if (req.method !== "POST") {
        res.setHeader("allow", "POST");
        throw new Refusal(405, "only POST");
      }
      const contentType = req.headers["content-type"] ?? "";
      if (encodingForContentType(contentType) === undefined)
        throw new Refusal(415, "not a SyncML DM content type");
      const body = await this.#readBody(req);
      const headers: Record<string, string> = {};
      const hmac = req.headers["x-syncml-hmac"];
      if (typeof hmac === "string") headers["x-syncml-hmac"] = hmac;
      const from: DeviceAddress = {
        transport: "http",
        address: `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? 0}`,
      };
      const answer = await this.#ctx.onMessage(from, { body, contentType, headers }, route);
      this.#answer(res, answer);
    } catch (e) {
      if (!(e instanceof Refusal)) {
        this.#ctx.log.error("the southbound endpoint failed on a request", { error: errorText(e) });
        this.#answer(res, { kind: "refused", status: 400, reason: "internal error" });
        return;
      }
      if (e.status === 413) res.setHeader("connection", "close");
      this.#ctx.log.warn(`southbound request refused: ${e.message}`, { status: e.status });
      const text = `${e.message}\n`;
      res.writeHead(e.status, {
        "content-type": "text/plain",
        "content-length": String(Buffer.byteLength(text)),
      });
      res.end(text);
    }
  }

  #answer(res: http.ServerResponse, answer: DeviceAnswer): void {
    switch (answer.kind) {
      case "reply": {
        const m = answer.message;
        res.writeHead(200, {
          ...m.headers,
          "content-type": m.contentType,
          "content-length": String(m.body.length),
          "cache-control": "private",
        });
        res.end(m.body);
        return;
      }
      case "ended":
        res.writeHead(204);
        res.end();
        return;
      case "refused": {
        const text = `${answer.reason}\n`;
        res.writeHead(answer.status, {
          "content-type": "text/plain",
          "content-length": String(Buffer.byteLength(text)),
        });
        res.end(text);
        return;
      }
    }
  }

  /** The body, or a 413 once it passes the limit. */
  async #readBody(req: http.IncomingMessage): Promise<Uint8Array> {
    const read = await readBoundedBody(req, this.#maxBody, DRAIN_FACTOR);
    if (!read.ok) throw new Refusal(413, `body over ${this.#maxBody} bytes`);
    return read.body;
  }

  #base(): string {
    const configured = this.#config.publicUrl?.replace(/\/+$/, "");
    if (configured !== undefined) return configured;
    const host = this.#config.host ?? "0.0.0.0";
    return `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${this.#port}`;
  }

  #setState(state: DriverState): void {
    this.#state = state;
    this.#ctx.onState(state);
  }
}

/** `udp://host:port`, `host:port` or `host` (port 2948). */
export function udpTarget(address: string): { host: string; port: number } | undefined {
  const text = address.startsWith("udp://") ? address.slice("udp://".length) : address;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(text);
  if (m === null) return undefined;
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "");
  const port = m[2] === undefined ? WAP_PUSH_PORT : Number(m[2]);
  if (host === "" || port < 1 || port > 65535) return undefined;
  return { host, port };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
