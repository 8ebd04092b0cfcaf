/**
 * The driver contract (design.md section 3, style.md 2.2): what the southbound core asks of a
 * transport. A driver moves DM messages to and from the end devices of one transport; it knows
 * nothing of sessions, accounts or the tree. The core (src/southbound/) runs the DM server session
 * over what the driver delivers.
 *
 *   proxy drivers (http, mqtt, serial, ble-proxy):
 *     device message --> driver --> ctx.onMessage(from, message, route) --> answer --> driver --> device
 *     core --> driver.notify(device, package0)      (WSP push over UDP, MQTT publish, OBEX Put, GATT write)
 *
 *   adaptation drivers (coap, ble-gatt): the core calls `execute` with DM commands; the driver maps them
 *   onto the device's protocol and answers DM statuses (issue #6).
 *
 * Rules (style.md 2.2):
 * - Constructors only assign fields; `start` is idempotent and resolves once ready (or throws a
 *   GatewayError(Driver_StartFailed)); `stop` is idempotent, never throws, is safe after a failed
 *   start, and leaves no socket, timer or child behind.
 * - A driver owns its reconnect policy (backoff with jitter, src/core/backoff.ts); a lost link is a
 *   state (`degraded`, reported through `ctx.onState`), never an exception out of a timer.
 * - Byte links are single-use: to reconnect, a driver makes a new one from its factory.
 * - What a device did (garbage, silence, a refusal) is a value; only our own I/O failing is thrown.
 */
import type { GatewayError } from "../src/core/errors.js";
import type { Logger } from "../src/core/log.js";
import type { Command, Item } from "../src/syncml/index.js";

export type TransportKind = "http" | "serial" | "ble" | "coap" | "mqtt";

export const TRANSPORT_KINDS: readonly TransportKind[] = ["http", "serial", "ble", "coap", "mqtt"];

export type DriverState = "stopped" | "starting" | "ready" | "degraded" | "stopping";

/** Where a device is on its transport. */
export interface DeviceAddress {
  readonly transport: TransportKind;
  /**
   * The transport address: `udp://host:port` or `http://...` (http), the MQTT device id of its topics
   * (mqtt), the port path or `tcp://host:port` (serial), the MAC (ble), the LwM2M endpoint (coap).
   */
  readonly address: string;
}

/** A DM message as a binding carries it. */
export interface DmMessage {
  readonly body: Uint8Array;
  /** `application/vnd.syncml.dm+xml` or `+wbxml` (protocol.md 6.5). */
  readonly contentType: string;
  /** Transport headers DM authentication needs (`x-syncml-hmac`), lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
}

/** What the core makes of a device's message. */
export type DeviceAnswer =
  /** Send this back (HTTP response body, MQTT publish on `/dm/down`, OBEX Get response). */
  | {
      readonly kind: "reply";
      readonly message: DmMessage;
      /** The session is over once this reply is delivered (a binding may release its link then). */
      readonly last?: true;
    }
  /** The session is over and the protocol sends nothing more (HTTP: 204, others: nothing). */
  | { readonly kind: "ended" }
  /**
   * Refused before any session looked at it: not SyncML (400/415), an unknown device (403), a
   * stale route (404). `status` is the HTTP status a binding with statuses uses; `reason` is for
   * logs and never holds a secret.
   */
  | { readonly kind: "refused"; readonly status: 400 | 403 | 404 | 413 | 415; readonly reason: string };

/**
 * How the core answers a device's message. `route` is what the binding knows of the conversation
 * (the RespURI token of an HTTP session; undefined where the channel itself says who is talking).
 * Never rejects.
 */
export type DeviceMessageHandler = (
  from: DeviceAddress,
  message: DmMessage,
  route: string | undefined,
) => Promise<DeviceAnswer>;

export interface DriverContext {
  /** "dmgw:drv:<kind>". */
  readonly log: Logger;
  /** Aborted when the gateway shuts down. */
  readonly signal: AbortSignal;
  /** State changes; `cause` with `degraded`. */
  onState(state: DriverState, cause?: GatewayError): void;
  /**
   * A device showed itself (MQTT birth message, LwM2M registration, BLE scan match); `info` holds
   * the DevInfo-like leaves the transport told (Man, Mod, FwV...), when it told any.
   */
  onDeviceSeen(device: DeviceAddress, info?: Readonly<Record<string, string>>): void;
  /** A device went away (MQTT last will, the port vanished). */
  onDeviceLost(device: DeviceAddress, cause: GatewayError): void;
}

export interface ProxyDriverContext extends DriverContext {
  readonly onMessage: DeviceMessageHandler;
}

export interface SouthboundDriver {
  readonly kind: TransportKind;
  readonly state: DriverState;
  /** How many devices of this driver may be in a session at once (the planner's limit). */
  readonly concurrency: number;
  /** Idempotent: resolves once ready. @throws GatewayError(Driver_StartFailed). */
  start(): Promise<void>;
  /** Idempotent, never throws; releases every socket, timer and child. */
  stop(): Promise<void>;
}

/** A driver for devices that run an OMA DM client (proxy mode). */
export interface ProxyDriver extends SouthboundDriver {
  /**
   * Delivers a Package #0 (protocol.md 5.1) to the device: WSP Push over UDP (http), a publish on
   * `/dm/down` (mqtt), an OBEX Put (serial). Resolves once handed to the transport.
   * @throws GatewayError(Driver_Unreachable) when the device cannot be reached.
   */
  notify(device: DeviceAddress, package0: Uint8Array): Promise<void>;
  /** The RespURI for an HTTP conversation (`route`); undefined for bindings that need none. */
  respUri(route: string): string | undefined;
}

/** Makes a driver from its section of the configuration and its context. */
export type ProxyDriverFactory<Config> = (config: Config, ctx: ProxyDriverContext) => ProxyDriver;

/** What became of one DM command on a device: the same shape for proxy and adaptation devices. */
export interface DeviceCommandResult {
  /** The device's (or the mapping's) status code; undefined when none came back. */
  readonly status: number | undefined;
  /** The Items of its Results (a Get). */
  readonly items: readonly Item[];
  /** The results of the commands inside an Atomic or Sequence, in order. */
  readonly inner: readonly DeviceCommandResult[];
}

/** The status the gateway reports for a device as a whole (design.md section 3). */
export type GatewayMadeStatus = 401 | 413 | 500 | 502 | 503 | 504 | 514;

/** The outcome of a list of DM commands on one device. */
export type AdaptedOutcome =
  | { readonly kind: "replied"; readonly results: readonly DeviceCommandResult[] }
  | { readonly kind: "failed"; readonly status: GatewayMadeStatus; readonly reason: string };

/**
 * A driver for devices that do not run OMA DM (adaptation mode): it maps DM commands onto the
 * device's protocol (LwM2M over CoAP, GATT) and answers DM statuses (design.md section 3).
 */
export interface AdaptationDriver extends SouthboundDriver {
  /**
   * Runs `commands` on the device. Settles before `timeoutMs` and never rejects for what the device
   * did: a per-command status (404, 405, 425, 500...) or one gateway-made status for the device.
   */
  execute(
    device: DeviceAddress,
    commands: readonly Command[],
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal },
  ): Promise<AdaptedOutcome>;
}

/** Makes an adaptation driver from its configuration section and its context. */
export type AdaptationDriverFactory<Config> = (config: Config, ctx: DriverContext) => AdaptationDriver;
