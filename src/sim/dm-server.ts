/**
 * A scripted OMA DM Server on node:http (or node:https), for tests and demos: the northbound peer of
 * the gateway's DM client. The protocol is `ServerSession` (sans-I/O); this file only moves bytes.
 *
 *   POST <base>            -> decode (routing only) -> device settings -> new ServerSession
 *   POST <base>/s/<token>  -> the session that gave out that RespURI
 *        -> session.receive(body, content type, headers) -> reply (200) | end: record the outcome,
 *           persist the nonces, answer the last reply
 *   notify(device, target) -> Pkg#0 in a WSP Push (protocol.md 5.3), as a UDP datagram to
 *                             {host, port} or handed to {deliver} (an SMS path such as the modem
 *                             simulator); the next session of that device must be server-initiated
 *                             with its session id
 *
 * Decisions:
 * - Sessions are routed by RespURI (each gets its own path), not by cookie or session id: the client
 *   follows RespURI (protocol.md 3.11), and two devices may well pick the same SessionID.
 * - HTTP-level refusals come before the session sees the body, and leave any session untouched:
 *   413 over `maxBodyBytes`, 415 for a type that is not SyncML DM, 400 for a body that does not
 *   decode, 403 for a device the simulator does not know, 404 for an unknown session path.
 * - Each new session takes one command list from the device's queue; the rest wait for later sessions.
 * - Nonces persist per device from each finished session's outcome, as a real server stores them.
 * - Sessions the client abandons stay open until `stop()`; the simulator keeps no timers.
 * - `notify` marks the device's next session as server-initiated before the push leaves (a device
 *   may answer before the send call returns) and takes the mark back when the delivery fails.
 * - Mutual TLS (`tls.requestClientCert`) verifies client certificates against `tls.ca` only, and
 *   needs it: the handshake fails for a client without a certificate that CA signed, so such a
 *   client never reaches a session.
 */
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { readBoundedBody } from "../core/http-body.js";
import dgram from "node:dgram";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { MIME_DM_NOTIFICATION, encodingForContentType, tryDecodeMessage } from "../syncml/index.js";
import type { Command } from "../syncml/index.js";
import { APP_ID_SYNCML_DM, encodeWspPush } from "../syncml/wsp-push.js";
import {
  PACKAGE0_VERSION,
  buildPackage0,
  package0Credentials,
  sessionIdText,
  type Initiator,
  type UiMode,
} from "../dm/package0.js";
import {
  ServerSession,
  type AuthConfig,
  type GenericAlert,
  type Initiation,
  type SessionOutcome,
} from "../dm/server-session.js";

/** A device's DM-level settings, as a server keeps them per account. */
export interface DeviceSettings {
  /** What the device must present (its CLCRED). */
  readonly clientAuth: AuthConfig;
  /** What the simulator presents to the device (the device's SRVCRED). */
  readonly serverAuth: AuthConfig;
  /** The nonce the device's first credentials must use. Default 4 zero bytes. */
  readonly clientNonce?: Uint8Array;
  /** The nonce the simulator's first credentials (and Pkg#0 digest) use. Default 4 zero bytes. */
  readonly serverNonce?: Uint8Array;
  /** The ServerID written in Pkg#0 and used in its digest. Default `serverAuth.name`. */
  readonly serverId?: string;
}

export interface DmServerSimulatorOptions {
  /** Listen address. Default 127.0.0.1. */
  readonly host?: string;
  /** Listen port. Default 0 (any free port; read it back from `start()`). */
  readonly port?: number;
  /** Base path a client's Pkg#1 goes to. Default `/dm`. */
  readonly path?: string;
  /**
   * The origin clients reach the simulator at (`http://127.0.0.1:8080`) when that is not the
   * listening one, e.g. behind a test proxy: the server URI (Source LocURI) and every RespURI the
   * sessions announce are built on it (plus `path`), so clients keep going through the proxy.
   * Default: the listening origin.
   */
  readonly publicOrigin?: string;
  /** PEM key and certificate: serve HTTPS instead of HTTP (with `requestClientCert`, mutual TLS). */
  readonly tls?: SimulatorTlsOptions;
  /** Largest request body accepted, in bytes (413 above). Default 64 KiB. */
  readonly maxBodyBytes?: number;
  /** MaxMsgSize advertised to clients. Default `maxBodyBytes`. */
  readonly maxMsgSize?: number;
  /** Settings for devices not added with `addDevice`; without it such devices get 403. */
  readonly defaults?: DeviceSettings;
  /** Randomness for nonces and Pkg#0 session ids. Default `crypto.randomBytes`. */
  readonly randomBytes?: (size: number) => Uint8Array;
}

/** The simulator's HTTPS settings (PEM). */
export interface SimulatorTlsOptions {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** The CA(s) client certificates must chain to; required with `requestClientCert`. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Ask for a client certificate and refuse the handshake without a valid one (mutual TLS). */
  readonly requestClientCert?: boolean;
}

/** Where `notify` sends the push: a UDP address, or a callback that carries the datagram (SMS...). */
export type NotificationTarget =
  | { readonly host: string; readonly port: number }
  | { readonly deliver: (datagram: Uint8Array) => void | Promise<void> };

/** A Generic Alert received, with the device and session it came in. */
export interface ReceivedAlert {
  readonly deviceId: string;
  readonly sessionId: string | undefined;
  readonly alert: GenericAlert;
}

/** What `notify` sent. */
export interface SentNotification {
  /** The Pkg#1 SessionID the device must use (upper-case hex). */
  readonly sessionId: string;
  /** The Pkg#0 bytes (inside the WSP Push). */
  readonly package0: Uint8Array;
  /** The whole WSP Push (the UDP datagram, or what `deliver` was given). */
  readonly datagram: Uint8Array;
}

interface DeviceState {
  settings: DeviceSettings;
  clientNonce: Uint8Array;
  serverNonce: Uint8Array;
  readonly queue: Command[][];
  readonly sessions: SessionOutcome[];
  /** Set by `notify`: the next session must be server-initiated with this SessionID. */
  pendingSessionId: string | undefined;
}

interface LiveSession {
  readonly deviceId: string;
  readonly session: ServerSession;
}

const DEFAULT_PATH = "/dm";
const DEFAULT_MAX_BODY = 64 * 1024;
/** After the limit, a body is drained (so the client can read the 413) up to this many times it. */
const DRAIN_FACTOR = 8;
const ZERO_NONCE = new Uint8Array(4);

class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpRefusal";
  }
}

export class DmServerSimulator {
  readonly #opts: DmServerSimulatorOptions;
  readonly #path: string;
  readonly #maxBody: number;
  readonly #random: (size: number) => Uint8Array;
  readonly #devices = new Map<string, DeviceState>();
  readonly #live = new Map<string, LiveSession>();
  readonly #alerts: ReceivedAlert[] = [];
  readonly #sockets = new Set<dgram.Socket>();
  #server: http.Server | https.Server | undefined;
  #connections = 0;
  readonly #clientCertificates: string[] = [];
  #url: string | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: DmServerSimulatorOptions = {}) {
    this.#opts = options;
    this.#path = (options.path ?? DEFAULT_PATH).replace(/\/+$/, "");
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.#random = options.randomBytes ?? ((n) => new Uint8Array(cryptoRandomBytes(n)));
    if (options.tls?.requestClientCert === true && options.tls.ca === undefined) {
      throw new Error("tls.requestClientCert needs tls.ca: the CA client certificates must chain to");
    }
  }

  /** The base URL (Pkg#1 goes here) once started. */
  get url(): string | undefined {
    return this.#url;
  }

  /**
   * Listens (port 0 by default) and resolves with the base URL.
   * @throws the listen error (EADDRINUSE...); calling it twice is a caller bug.
   */
  async start(): Promise<{ url: string }> {
    if (this.#server !== undefined) throw new Error("the DM server simulator is already started");
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.#handle(req, res).catch((e: unknown) => {
        // A bug of ours: answer 500 rather than leave the client hanging or crash the test.
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(e instanceof Error ? e.message : String(e));
      });
    };
    const tls = this.#opts.tls;
    let server: http.Server | https.Server;
    if (tls === undefined) {
      server = http.createServer(handler);
      server.on("connection", () => {
        this.#connections++;
      });
    } else {
      const mutual = tls.requestClientCert === true;
      server = https.createServer(
        {
          key: tls.key,
          cert: tls.cert,
          ...(tls.ca !== undefined && { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
          ...(mutual && { requestCert: true, rejectUnauthorized: true }),
        },
        handler,
      );
      server.on("secureConnection", (socket: TLSSocket) => {
        this.#connections++;
        if (mutual) this.#clientCertificates.push(commonName(socket.getPeerCertificate().subject));
      });
    }
    this.#server = server;
    const host = this.#opts.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#opts.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    const scheme = this.#opts.tls === undefined ? "http" : "https";
    const hostText = host.includes(":") ? `[${host}]` : host;
    this.#url = `${scheme}://${hostText}:${port}${this.#path}`;
    return { url: this.#url };
  }

  /** Closes the listener, every connection (keep-alive too) and UDP socket. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const socket of this.#sockets) socket.close();
    this.#sockets.clear();
    this.#live.clear();
    const server = this.#server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
      server.closeAllConnections();
    });
  }

  /** Adds (or replaces) a device's settings; its queue and recorded sessions are kept. */
  addDevice(deviceId: string, settings: DeviceSettings): void {
    const known = this.#devices.get(deviceId);
    if (known !== undefined) {
      known.settings = settings;
      known.clientNonce = Uint8Array.from(settings.clientNonce ?? ZERO_NONCE);
      known.serverNonce = Uint8Array.from(settings.serverNonce ?? ZERO_NONCE);
      return;
    }
    this.#devices.set(deviceId, newDevice(settings));
  }

  /** Queues a command list: the device's next session (without one already queued) sends it. */
  queue(deviceId: string, commands: readonly Command[]): void {
    this.#device(deviceId).queue.push([...commands]);
  }

  /** The outcomes of the device's finished sessions, oldest first. */
  sessions(deviceId: string): readonly SessionOutcome[] {
    return [...(this.#devices.get(deviceId)?.sessions ?? [])];
  }

  /** Every Generic Alert received in finished sessions, oldest first. */
  alerts(): readonly ReceivedAlert[] {
    return [...this.#alerts];
  }

  /** The nonces the simulator holds for the device: the ones the next session's credentials use. */
  nonces(deviceId: string): { client: Uint8Array; server: Uint8Array } | undefined {
    const d = this.#devices.get(deviceId);
    return d === undefined
      ? undefined
      : { client: Uint8Array.from(d.clientNonce), server: Uint8Array.from(d.serverNonce) };
  }

  /**
   * Connections accepted so far: TLS connections whose handshake completed (`secureConnection`) over
   * HTTPS, TCP connections over HTTP. A keep-alive client counts once for all its requests.
   */
  get connections(): number {
    return this.#connections;
  }

  /** The subject CN of each verified client certificate, one per mutual-TLS connection, oldest first. */
  clientCertificates(): readonly string[] {
    return [...this.#clientCertificates];
  }

  /** Sessions started and not yet finished. */
  get openSessions(): number {
    return this.#live.size;
  }

  /**
   * Sends a Pkg#0 in a WSP Push (TID 0, Content-Type 0xC4, App-Id syncml.dm), keyed with the
   * device's server credentials and nonce: as one UDP datagram to `{host, port}`, or handed to
   * `{deliver}` (e.g. `(d) => modem.injectWapPush(d)` for SMS), which gets a copy of the returned
   * `datagram`. The device's next session must then be server-initiated (Alert 1200) with the
   * returned SessionID.
   * @throws for an unknown device (without `defaults`), a send error, or what `deliver` throws.
   */
  async notify(
    deviceId: string,
    target: NotificationTarget,
    mode: { readonly uiMode?: UiMode; readonly initiator?: Initiator } = {},
  ): Promise<SentNotification> {
    const device = this.#device(deviceId);
    const bytes = this.#random(2);
    const id = (((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0)) % 0xffff || 1;
    const auth = device.settings.serverAuth;
    const serverId = device.settings.serverId ?? (auth.scheme === "none" ? "" : auth.name);
    const package0 = buildPackage0(
      {
        version: PACKAGE0_VERSION,
        uiMode: mode.uiMode ?? "background",
        initiator: mode.initiator ?? "server",
        sessionId: id,
        serverId,
        vendorSpecific: new Uint8Array(0),
      },
      package0Credentials(serverId, auth, device.serverNonce),
    );
    const datagram = encodeWspPush({
      tid: 0,
      contentType: MIME_DM_NOTIFICATION,
      appId: APP_ID_SYNCML_DM,
      body: package0,
    });
    const sessionId = sessionIdText(id);
    const previous = device.pendingSessionId;
    device.pendingSessionId = sessionId;
    try {
      if ("deliver" in target) await target.deliver(Uint8Array.from(datagram));
      else await this.#sendUdp(datagram, target);
    } catch (e) {
      // Nothing reached the device: a later notify or session must not expect this id.
      if (device.pendingSessionId === sessionId) device.pendingSessionId = previous;
      throw e;
    }
    return { sessionId, package0, datagram };
  }

  async #sendUdp(
    datagram: Uint8Array,
    address: { readonly host: string; readonly port: number },
  ): Promise<void> {
    const family = address.host.includes(":") ? "udp6" : "udp4";
    const socket = dgram.createSocket(family);
    this.#sockets.add(socket);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.send(datagram, address.port, address.host, (e) => {
          if (e === null) resolve();
          else reject(e);
        });
      });
    } finally {
      this.#sockets.delete(socket);
      socket.close();
    }
  }

  // -------------------------------------------------------------------------------------------------
  // HTTP

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const path = new URL(req.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "");
      const token = this.#tokenOf(path);
      if (token === undefined && path !== this.#path) throw new HttpRefusal(404, "no such path");
      if (req.method !== "POST") {
        res.setHeader("allow", "POST");
        throw new HttpRefusal(405, "only POST");
      }
      const contentType = req.headers["content-type"] ?? "";
      const encoding = encodingForContentType(contentType);
      if (encoding === undefined) throw new HttpRefusal(415, "not a SyncML DM content type");
      if (token !== undefined && !this.#live.has(token)) throw new HttpRefusal(404, "no such session");
      const body = await this.#readBody(req);
      const decoded = tryDecodeMessage(body, { encoding });
      if (!decoded.ok) throw new HttpRefusal(400, `the body does not decode: ${decoded.error.code}`);

      const key = token ?? this.#newToken();
      let live = this.#live.get(key);
      if (token === undefined) {
        live = this.#newSession(decoded.value.message.hdr.source.locUri, key);
        this.#live.set(key, live);
      }
      // The session may have ended (stop(), a concurrent request) while the body was read.
      if (live === undefined) throw new HttpRefusal(404, "no such session");
      const step = live.session.receive(body, contentType, headersOf(req));
      const reply = step.kind === "reply" ? step : step.reply;
      if (step.kind === "end") {
        this.#live.delete(key);
        this.#record(live.deviceId, step.outcome);
      }
      if (reply === undefined) throw new HttpRefusal(400, "the session ended without a reply");
      res.writeHead(200, {
        ...reply.headers,
        "content-type": reply.contentType,
        "content-length": String(reply.body.length),
        "cache-control": "private",
      });
      res.end(reply.body);
    } catch (e) {
      if (!(e instanceof HttpRefusal)) throw e;
      const text = `${e.message}\n`;
      if (e.status === 413) res.setHeader("connection", "close");
      res.writeHead(e.status, {
        "content-type": "text/plain",
        "content-length": String(Buffer.byteLength(text)),
      });
      res.end(text);
    }
  }

  #tokenOf(path: string): string | undefined {
    const prefix = `${this.#path}/s/`;
    if (!path.startsWith(prefix)) return undefined;
    const token = path.slice(prefix.length);
    return /^[0-9a-f]{32}$/.test(token) ? token : undefined;
  }

  #newToken(): string {
    return Buffer.from(cryptoRandomBytes(16)).toString("hex");
  }

  /** The body, or a 413 once it passes the limit (the rest drained so the client reads the 413). */
  async #readBody(req: http.IncomingMessage): Promise<Uint8Array> {
    const read = await readBoundedBody(req, this.#maxBody, DRAIN_FACTOR);
    if (!read.ok) throw new HttpRefusal(413, `body over ${this.#maxBody} bytes`);
    return read.body;
  }

  #newSession(deviceId: string, token: string): LiveSession {
    const device = this.#devices.get(deviceId) ?? this.#fromDefaults(deviceId);
    if (device === undefined) throw new HttpRefusal(403, "unknown device");
    const publicOrigin = this.#opts.publicOrigin?.replace(/\/+$/, "");
    const base = publicOrigin === undefined ? (this.#url ?? "") : `${publicOrigin}${this.#path}`;
    const initiation: Initiation =
      device.pendingSessionId === undefined ? "client" : { sessionId: device.pendingSessionId };
    device.pendingSessionId = undefined;
    const session = new ServerSession({
      serverUri: base,
      expectedDevice: deviceId,
      clientAuth: device.settings.clientAuth,
      serverAuth: device.settings.serverAuth,
      clientNonce: device.clientNonce,
      serverNonce: device.serverNonce,
      randomBytes: this.#random,
      initiation,
      maxMsgSize: this.#opts.maxMsgSize ?? this.#maxBody,
      respUri: `${base}/s/${token}`,
    });
    const commands = device.queue.shift();
    if (commands !== undefined) session.enqueue(commands);
    return { deviceId, session };
  }

  #fromDefaults(deviceId: string): DeviceState | undefined {
    const defaults = this.#opts.defaults;
    if (defaults === undefined) return undefined;
    const device = newDevice(defaults);
    this.#devices.set(deviceId, device);
    return device;
  }

  #device(deviceId: string): DeviceState {
    const device = this.#devices.get(deviceId) ?? this.#fromDefaults(deviceId);
    if (device === undefined) throw new Error(`unknown device ${deviceId}: addDevice() it first`);
    return device;
  }

  #record(deviceId: string, outcome: SessionOutcome): void {
    const device = this.#devices.get(deviceId);
    if (device === undefined) return;
    device.sessions.push(outcome);
    device.clientNonce = outcome.nextClientNonce;
    device.serverNonce = outcome.nextServerNonce;
    for (const alert of outcome.genericAlerts) {
      this.#alerts.push({ deviceId, sessionId: outcome.sessionId, alert });
    }
  }
}

function newDevice(settings: DeviceSettings): DeviceState {
  return {
    settings,
    clientNonce: Uint8Array.from(settings.clientNonce ?? ZERO_NONCE),
    serverNonce: Uint8Array.from(settings.serverNonce ?? ZERO_NONCE),
    queue: [],
    sessions: [],
    pendingSessionId: undefined,
  };
}

/** The CN of a certificate subject (the first, if repeated), or "" without one. */
function commonName(subject: { readonly CN?: string | string[] } | undefined): string {
  const cn = subject?.CN;
  return (Array.isArray(cn) ? cn[0] : cn) ?? "";
}

/** Request headers as single strings (repeated ones joined). */
function headersOf(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}
