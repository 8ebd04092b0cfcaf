/**
 * The serial proxy driver: the OMA DM OBEX binding over serial lines (design.md section 3). One
 * device per port; ports come from the board profile or the config (`/dev/serial/by-id/...`, or
 * `tcp://host:port` for a serial server). The OBEX framing is in obex.ts, the OBEX roles on a line
 * in line.ts; this file owns the links, their reconnects and the mapping onto the driver contract.
 *
 *   device: Connect(SYNCML-DM) -> Put(DM message) -> ctx.onMessage(serial, port path) -> answer
 *           Get -> answer as Type + Length + Body ... End-of-Body (reply), empty Success (ended),
 *                  an OBEX error (refused: 400 Bad Request, 403 Forbidden, 404 Not Found,
 *                  413 Request Entity Too Large, 415 Unsupported Media Type)
 *   notify(port, Pkg#0): Connect(SYNCML-DM) -> Put(application/vnd.syncml.notification) -> Disconnect
 *
 * Decisions:
 * - The Put is answered Success as soon as it is whole (the message was received); the core's
 *   answer goes out on the Get, which waits for it. So a device never waits on a Put for the core.
 * - DM transport headers (`x-syncml-hmac`) travel in the OBEX HTTP header (0x47) as
 *   "name: value" lines, both ways.
 * - start() resolves `ready` when every port opened, `degraded` when some did (the others reconnect
 *   with backoff), and throws Driver_StartFailed only when none did.
 * - A port whose link fails goes down: `onDeviceLost`, state `degraded`, a new link from the factory
 *   after a backoff delay (500 ms doubling to 30 s, ±20 %); back up: `onDeviceSeen`, `ready` when
 *   all ports are up. A notify to a down port rejects at once with Driver_Unreachable.
 * - Notifications to one port queue (one session at a time per port); concurrency = port count.
 */
import { backoffDelay, type BackoffOptions } from "../../src/core/backoff.js";
import { serialLinkFactory, type ByteLink, type ByteLinkFactory } from "../../src/core/byte-link.js";
import { ErrorCode, GatewayError, isGatewayError } from "../../src/core/errors.js";
import type {
  DeviceAddress,
  DeviceAnswer,
  DriverState,
  ProxyDriver,
  ProxyDriverContext,
  ProxyDriverFactory,
} from "../driver.js";
import { ObexClient, ObexLine, ObexServer, type GetAnswer } from "./line.js";
import {
  MAX_MAX_PACKET_LENGTH,
  MIN_MAX_PACKET_LENGTH,
  NOTIFICATION_TYPE,
  ObexFramer,
  ResponseCode,
} from "./obex.js";

export interface SerialPortConfig {
  /** `/dev/serial/by-id/...` (or a udev symlink, a pty link in tests), or `tcp://host:port`. */
  readonly path: string;
  /** The device expected on this port, for logs. */
  readonly deviceId?: string;
}

export interface SerialDriverConfig {
  readonly ports: readonly SerialPortConfig[];
  /** Default 115200. */
  readonly baudRate?: number;
  /** The OBEX max packet length we accept and announce; 255..65535, default 4096. */
  readonly maxPacketLength?: number;
  /** How long we wait for each OBEX response of a notify; default 5000 ms. */
  readonly responseTimeoutMs?: number;
  /** Largest DM message a device may Put; default 1 MiB. */
  readonly maxMessageBytes?: number;
  /** Reconnect backoff; default 500 ms doubling to 30 s, ±20 %. */
  readonly reconnect?: BackoffOptions;
}

export interface SerialDriverOptions {
  /** The link factory of a port; default `serialLinkFactory` (serial port or tcp://). */
  readonly linkFactory?: (port: SerialPortConfig) => ByteLinkFactory;
  /** Random source of the backoff jitter. */
  readonly random?: () => number;
}

const RECONNECT_DEFAULTS: Required<BackoffOptions> = {
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.2,
};
const DEFAULT_MAX_PACKET = 4096;
const DEFAULT_RESPONSE_TIMEOUT_MS = 5000;
const DEFAULT_MAX_MESSAGE = 1 << 20;

const REFUSED_CODES: Readonly<Record<number, number>> = {
  400: ResponseCode.BadRequest,
  403: ResponseCode.Forbidden,
  404: ResponseCode.NotFound,
  413: ResponseCode.RequestEntityTooLarge,
  415: ResponseCode.UnsupportedMediaType,
};

/** One port: its link (recreated on loss) and the OBEX roles on it. */
class Port {
  readonly config: SerialPortConfig;
  readonly address: DeviceAddress;
  readonly factory: ByteLinkFactory;
  line: ObexLine | undefined;
  server: ObexServer | undefined;
  gen = 0;
  attempt = 0;
  reconnectTimer: NodeJS.Timeout | undefined;
  notifyChain: Promise<unknown> = Promise.resolve();
  answer: Promise<DeviceAnswer> | undefined;
  lastCause: GatewayError | undefined;

  constructor(config: SerialPortConfig, factory: ByteLinkFactory) {
    this.config = config;
    this.address = { transport: "serial", address: config.path };
    this.factory = factory;
  }

  get up(): boolean {
    return this.line !== undefined && !this.line.closed;
  }
}

export class SerialDriver implements ProxyDriver {
  readonly kind = "serial" as const;
  readonly mode = "proxy" as const;
  readonly #config: SerialDriverConfig;
  readonly #ctx: ProxyDriverContext;
  readonly #options: SerialDriverOptions;
  readonly #ports: Port[];
  #state: DriverState = "stopped";
  #life = 0;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #onAbort: (() => void) | undefined;

  constructor(config: SerialDriverConfig, ctx: ProxyDriverContext, options: SerialDriverOptions = {}) {
    this.#config = config;
    this.#ctx = ctx;
    this.#options = options;
    this.#ports = config.ports.map(
      (p) =>
        new Port(
          p,
          options.linkFactory?.(p) ??
            serialLinkFactory({
              path: p.path,
              ...(config.baudRate === undefined ? {} : { baudRate: config.baudRate }),
            }),
        ),
    );
  }

  get state(): DriverState {
    return this.#state;
  }

  get concurrency(): number {
    return this.#ports.length;
  }

  get #maxPacket(): number {
    const m = this.#config.maxPacketLength ?? DEFAULT_MAX_PACKET;
    return Math.min(MAX_MAX_PACKET_LENGTH, Math.max(MIN_MAX_PACKET_LENGTH, Math.floor(m)));
  }

  get #timeoutMs(): number {
    return this.#config.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS;
  }

  start(): Promise<void> {
    if (this.#state === "ready" || this.#state === "degraded") return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#stopping !== undefined) await this.#stopping;
    const life = ++this.#life;
    this.#setState("starting");
    if (this.#ctx.signal.aborted) {
      this.#setState("stopped");
      throw new GatewayError("serial driver: the gateway is shutting down", ErrorCode.Driver_StartFailed);
    }
    const results = await Promise.allSettled(this.#ports.map((p) => this.#open(p, life)));
    if (life !== this.#life) {
      throw new GatewayError("serial driver stopped while starting", ErrorCode.Driver_StartFailed);
    }
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    if (this.#ports.length > 0 && failed.length === this.#ports.length) {
      this.#life++;
      await Promise.all(this.#ports.map((p) => this.#closePort(p)));
      this.#setState("stopped");
      throw new GatewayError("serial driver: no port could be opened", ErrorCode.Driver_StartFailed, {
        cause: failed[0]?.reason,
        context: { ports: this.#ports.map((p) => p.config.path) },
      });
    }
    this.#onAbort = () => {
      void this.stop();
    };
    this.#ctx.signal.addEventListener("abort", this.#onAbort, { once: true });
    for (const p of this.#ports) if (!p.up) this.#scheduleReconnect(p, life);
    this.#updateState();
  }

  stop(): Promise<void> {
    if (this.#state === "stopped" && this.#starting === undefined) return Promise.resolve();
    this.#stopping ??= this.#stop().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const starting = this.#starting;
    try {
      this.#life++;
      this.#setState("stopping");
      if (this.#onAbort !== undefined) this.#ctx.signal.removeEventListener("abort", this.#onAbort);
      this.#onAbort = undefined;
      await Promise.all(this.#ports.map((p) => this.#closePort(p)));
      await starting?.catch(() => undefined);
      await Promise.all(this.#ports.map((p) => this.#closePort(p))); // a link a late start opened
    } catch (e) {
      this.#ctx.log.error(`serial driver stop: ${describe(e)}`);
    } finally {
      this.#setState("stopped");
    }
  }

  respUri(): string | undefined {
    return undefined;
  }

  /**
   * Puts a Package #0 to the device on `device.address` (a configured port path): Connect with the
   * SYNCML-DM target, Put with Type application/vnd.syncml.notification, Disconnect. Resolves once
   * the device accepted the Put. @throws GatewayError(Driver_Unreachable).
   */
  notify(device: DeviceAddress, package0: Uint8Array): Promise<void> {
    const port = this.#ports.find((p) => p.config.path === device.address);
    if (device.transport !== "serial" || port === undefined) {
      return Promise.reject(
        new GatewayError(`no serial port ${device.address}`, ErrorCode.Driver_Unreachable, {
          context: { address: device.address },
        }),
      );
    }
    const run = async (): Promise<void> => {
      const line = port.line;
      if (line === undefined || line.closed || (this.#state !== "ready" && this.#state !== "degraded")) {
        throw new GatewayError(`serial port ${port.config.path} is down`, ErrorCode.Driver_Unreachable, {
          context: { address: port.config.path },
          ...(port.lastCause !== undefined && { cause: port.lastCause }),
        });
      }
      const client = new ObexClient(line, { maxPacketLength: this.#maxPacket, timeoutMs: this.#timeoutMs });
      await client.connect();
      await client.put(NOTIFICATION_TYPE, package0);
      await client.disconnect().catch((e: unknown) => {
        this.#ctx.log.debug(() => `serial ${port.config.path}: Disconnect after the Pkg#0: ${describe(e)}`);
      });
      this.#ctx.log.debug(() => `serial ${port.config.path}: Pkg#0 of ${package0.length} bytes delivered`);
    };
    const result = port.notifyChain.then(run, run).catch((e: unknown) => {
      throw isGatewayError(e, ErrorCode.Driver_Unreachable)
        ? e
        : new GatewayError(`notify on ${port.config.path} failed`, ErrorCode.Driver_Unreachable, {
            cause: e,
            context: { address: port.config.path },
          });
    });
    port.notifyChain = result.catch(() => undefined);
    return result;
  }

  // ---- ports ---------------------------------------------------------------------------------------

  async #open(port: Port, life: number): Promise<void> {
    let link: ByteLink;
    try {
      link = await port.factory();
    } catch (e) {
      port.lastCause = isGatewayError(e)
        ? e
        : new GatewayError(`cannot open ${port.config.path}`, ErrorCode.Link_OpenFailed, {
            cause: e,
            context: { path: port.config.path },
          });
      throw port.lastCause;
    }
    if (life !== this.#life) {
      await link.close();
      throw new GatewayError("serial driver stopped while opening", ErrorCode.Driver_Stopped);
    }
    const gen = ++port.gen;
    const log = this.#ctx.log.child(portName(port.config.path));
    const server = new ObexServer({
      line: () => (gen === port.gen ? port.line : undefined),
      maxPacketLength: this.#maxPacket,
      maxObjectLength: this.#config.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
      log,
      onPut: (object, headers) => {
        const message = { body: object.body, contentType: object.type ?? "", headers };
        port.answer = this.#ctx
          .onMessage(port.address, message, undefined)
          .catch((e: unknown): DeviceAnswer => ({ kind: "refused", status: 400, reason: describe(e) }));
        return ResponseCode.Success;
      },
      onGet: async (): Promise<GetAnswer> => {
        const pending = port.answer;
        if (pending === undefined) return { code: ResponseCode.NotFound };
        const answer = await pending;
        if (port.answer === pending) port.answer = undefined;
        switch (answer.kind) {
          case "reply":
            return {
              code: ResponseCode.Success,
              type: answer.message.contentType,
              body: answer.message.body,
              headers: answer.message.headers,
            };
          case "ended":
            return { code: ResponseCode.Success };
          case "refused":
            log.info(`device message refused (${answer.status}): ${answer.reason}`);
            return { code: REFUSED_CODES[answer.status] ?? ResponseCode.BadRequest };
        }
      },
    });
    port.server = server;
    port.line = new ObexLine(link, new ObexFramer(this.#maxPacket), {
      maxPacketLength: this.#maxPacket,
      idleResetMs: this.#timeoutMs,
      log,
      onRequest: (p) => server.handle(p),
      onClosed: (cause) => {
        this.#portLost(port, gen, cause);
      },
    });
    port.attempt = 0;
    port.lastCause = undefined;
    this.#ctx.log.info(`serial port ${port.config.path} up`, {
      path: port.config.path,
      ...(port.config.deviceId !== undefined && { deviceId: port.config.deviceId }),
    });
    this.#safe(() => {
      this.#ctx.onDeviceSeen(port.address);
    });
  }

  #portLost(port: Port, gen: number, cause: GatewayError): void {
    if (gen !== port.gen || this.#state === "stopping" || this.#state === "stopped") return;
    port.gen++;
    const line = port.line;
    port.line = undefined;
    port.server?.reset();
    port.answer = undefined;
    void line?.close();
    const lost = new GatewayError(`serial port ${port.config.path} lost`, ErrorCode.Driver_LinkLost, {
      cause,
      context: { path: port.config.path },
    });
    port.lastCause = lost;
    this.#ctx.log.warn(`serial port ${port.config.path} lost: ${cause.message}`);
    this.#safe(() => {
      this.#ctx.onDeviceLost(port.address, lost);
    });
    this.#updateState(lost);
    this.#scheduleReconnect(port, this.#life);
  }

  #scheduleReconnect(port: Port, life: number): void {
    if (life !== this.#life) return;
    const delay = backoffDelay(
      port.attempt,
      this.#config.reconnect ?? {},
      RECONNECT_DEFAULTS,
      this.#options.random,
    );
    port.attempt++;
    clearTimeout(port.reconnectTimer);
    port.reconnectTimer = setTimeout(() => {
      port.reconnectTimer = undefined;
      this.#open(port, life).then(
        () => {
          if (life === this.#life) this.#updateState();
        },
        (e: unknown) => {
          if (life !== this.#life) return;
          this.#ctx.log.debug(() => `serial ${port.config.path}: reconnect failed: ${describe(e)}`);
          this.#scheduleReconnect(port, life);
        },
      );
    }, delay);
  }

  async #closePort(port: Port): Promise<void> {
    clearTimeout(port.reconnectTimer);
    port.reconnectTimer = undefined;
    port.gen++;
    const line = port.line;
    port.line = undefined;
    port.server?.reset();
    port.answer = undefined;
    await line?.close();
    await port.notifyChain;
  }

  #updateState(cause?: GatewayError): void {
    if (this.#state !== "starting" && this.#state !== "ready" && this.#state !== "degraded") return;
    const down = this.#ports.filter((p) => !p.up);
    if (down.length === 0) this.#setState("ready");
    else this.#setState("degraded", cause ?? down[0]?.lastCause);
  }

  #setState(state: DriverState, cause?: GatewayError): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#safe(() => {
      if (cause === undefined) this.#ctx.onState(state);
      else this.#ctx.onState(state, cause);
    });
  }

  #safe(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.#ctx.log.error(`serial driver listener threw: ${describe(e)}`);
    }
  }
}

export const createSerialDriver: ProxyDriverFactory<SerialDriverConfig> = (config, ctx) =>
  new SerialDriver(config, ctx);

function portName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1) || path;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
