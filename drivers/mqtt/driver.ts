/**
 * The MQTT proxy driver (design.md section 3): DM messages between the gateway and DM-client
 * devices as MQTT 5 payloads through a broker (mosquitto in tests; any broker or cluster in the
 * field). Topic names, payloads and content types are in `topics.ts` (pure); this file is the I/O.
 *
 *   device --PUBLISH <prefix>/<id>/dm/up (QoS 1, Content Type, user property x-syncml-hmac)--> broker
 *     --> MqttDriver --> ctx.onMessage({mqtt, id}, message) --> reply
 *     --> PUBLISH <prefix>/<id>/dm/down (QoS 1, Content Type, x-syncml-hmac) --> broker --> device
 *   core --> notify(id, pkg0) --> PUBLISH <prefix>/<id>/dm/down (application/vnd.syncml.notification)
 *   device --retained <prefix>/<id>/status {"state":"online"} (last will: offline)--> onDeviceSeen/Lost
 *   gateway --retained <prefix>/gateway/status {"state":"online"} (last will: offline)
 *
 * Session: MQTT 5, `clean: false` with a Session Expiry Interval (default 1 h), so the broker queues
 * devices' QoS 1 messages while the gateway is away and hands them over after the CONNACK. Both
 * settings are needed (platform.md 5): `clean: false` alone ends the session at disconnect, and the
 * `message` listener must exist before the connection starts (the client is made with
 * `manualConnect` and connected only once every listener is attached). The client id must therefore
 * be stable across restarts: default `dmgw-<hostname>`; set `clientId` when several gateways share
 * a host name and a broker.
 *
 * Reconnect: MQTT.js's own reconnect is a fixed-period `setInterval` (`reconnectPeriod`, 1 s),
 * without growth or jitter, so a broker restart sees every gateway come back in step. The driver
 * sets `reconnectPeriod: 0` and owns the policy (style.md 2.2): on each `close` it waits
 * `backoffDelay(attempt)` (src/core/backoff.ts, default 0.5 s doubling to 30 s, ±25 % jitter) and
 * calls `client.reconnect()` with the client's own stores, so QoS 1 messages in flight survive. With
 * MQTT.js's resubscribe off, the driver subscribes itself: on the first CONNACK of `start()`, and
 * after a reconnect whose CONNACK says the broker lost the session (`sessionPresent: false`).
 *
 * Gateway presence: a retained `{"state":"online"}` on `<prefix>/gateway/status` after every CONNACK;
 * the last will (retained, QoS 1) is `{"state":"offline"}` on the same topic, which the broker
 * publishes when the connection dies without a DISCONNECT. `stop()` publishes the offline status
 * itself, then `end(true)`s the client (no DISCONNECT, so the session, and what devices send
 * meanwhile, is kept for the next start).
 *
 * States: `starting` -> `ready` (subscribed) -> `degraded` (connection lost; MQTT 5 with backoff
 * reconnects) -> `ready` again -> `stopping` -> `stopped`.
 *
 * QoS 1 is at-least-once: after a reconnect a message may arrive twice. The DM session layer sees
 * the repeated MsgID; the driver does not deduplicate.
 */
import { hostname } from "node:os";
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import { backoffDelay, type BackoffOptions } from "../../src/core/backoff.js";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import type {
  DeviceAddress,
  DmMessage,
  DriverState,
  ProxyDriver,
  ProxyDriverContext,
  ProxyDriverFactory,
} from "../driver.js";
import {
  CONTENT_TYPE_NOTIFICATION,
  CONTENT_TYPE_STATUS,
  DEFAULT_PREFIX,
  checkPrefix,
  decodeStatus,
  deviceTopic,
  encodeStatus,
  gatewayFilters,
  gatewayStatusTopic,
  hmacFromUserProperties,
  HMAC_USER_PROPERTY,
  parseTopic,
  type PresenceState,
} from "./topics.js";

export interface MqttDriverConfig {
  /** Broker URL: `mqtt://host:port`, `mqtts://...`, `ws://...`. Credentials in it are never logged. */
  readonly url: string;
  /** Topic prefix, one or more levels; default `dmgw`. */
  readonly prefix?: string;
  /** MQTT client id; stable across restarts (persistent session). Default `dmgw-<hostname>`. */
  readonly clientId?: string;
  readonly username?: string;
  /** Never logged. */
  readonly password?: string;
  /** MQTT 5 Session Expiry Interval, seconds: how long the broker queues for an absent gateway. Default 3600. */
  readonly sessionExpirySeconds?: number;
  /** Time for the TCP connect + CONNACK, and for the first connection of `start()`, ms. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** MQTT keepalive, seconds. Default 30. */
  readonly keepaliveSeconds?: number;
  /** How long a publish may wait for its PUBACK before `notify` gives up, ms. Default 5000. */
  readonly publishTimeoutMs?: number;
  /** Reconnect delays. Default 500 ms doubling to 30 s, jitter 0.25. */
  readonly reconnect?: BackoffOptions;
}

/** Devices in a session at once: wide, the broker does the fan-out (design.md section 3). */
export const MQTT_CONCURRENCY = 256;

const RECONNECT_DEFAULTS: Required<BackoffOptions> = {
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.25,
};
const DEFAULT_SESSION_EXPIRY_S = 3600;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_KEEPALIVE_S = 30;
const DEFAULT_PUBLISH_TIMEOUT_MS = 5000;
/** How long `stop()` waits for the PUBACK of the offline status. */
const STOP_PUBLISH_MS = 1000;
/** How long `stop()` waits for the client to close. */
const STOP_END_MS = 2000;

export class MqttDriver implements ProxyDriver {
  readonly kind = "mqtt" as const;
  readonly mode = "proxy" as const;
  readonly concurrency = MQTT_CONCURRENCY;

  readonly #config: MqttDriverConfig;
  readonly #ctx: ProxyDriverContext;
  #state: DriverState = "stopped";
  #client: MqttClient | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  /** Subscribed on this client (first CONNACK of a start, or after the broker lost the session). */
  #subscribed = false;
  readonly #presence = new Map<string, PresenceState>();
  /** Settles the pending `start()`. */
  #onFirstReady: ((err?: GatewayError) => void) | undefined;
  #abortListener: (() => void) | undefined;

  constructor(config: MqttDriverConfig, ctx: ProxyDriverContext) {
    this.#config = config;
    this.#ctx = ctx;
  }

  get state(): DriverState {
    return this.#state;
  }

  get #prefix(): string {
    return this.#config.prefix ?? DEFAULT_PREFIX;
  }

  /**
   * Connects, subscribes and publishes the gateway's online status. Idempotent.
   * @throws GatewayError(Driver_StartFailed): bad prefix, the broker refused us, or no CONNACK
   *   within `connectTimeoutMs` (retrying meanwhile).
   */
  start(): Promise<void> {
    if (this.#state === "ready" || this.#state === "degraded") return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#stopping !== undefined) await this.#stopping;
    const prefix = checkPrefix(this.#prefix);
    if (!prefix.ok) {
      throw new GatewayError(`mqtt: bad topic prefix: ${prefix.detail}`, ErrorCode.Driver_StartFailed, {
        context: { refusal: prefix.refusal },
      });
    }
    if (this.#ctx.signal.aborted) {
      throw new GatewayError("mqtt: start after shutdown", ErrorCode.Driver_StartFailed);
    }
    this.#setState("starting");
    this.#attempt = 0;
    this.#subscribed = false;
    this.#presence.clear();
    const client = connect(this.#config.url, this.#clientOptions());
    this.#client = client;
    const ready = new Promise<void>((resolve, reject) => {
      this.#onFirstReady = (err) => {
        this.#onFirstReady = undefined;
        if (err === undefined) resolve();
        else reject(err);
      };
    });
    // Every listener before the connection starts: queued messages follow the CONNACK at once.
    client.on("message", (topic, payload, packet) => {
      this.#onPublish(topic, payload, packet);
    });
    client.on("connect", (connack) => {
      void this.#onConnect(client, connack.sessionPresent);
    });
    client.on("close", () => {
      this.#onClose(client);
    });
    client.on("error", (e) => {
      this.#onError(e);
    });
    this.#abortListener = () => {
      void this.stop();
    };
    this.#ctx.signal.addEventListener("abort", this.#abortListener, { once: true });

    const timeoutMs = this.#config.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const timer = setTimeout(() => {
      this.#onFirstReady?.(
        new GatewayError(
          `mqtt: no connection to ${this.#safeUrl()} within ${timeoutMs} ms`,
          ErrorCode.Driver_StartFailed,
          {
            context: { url: this.#safeUrl(), timeoutMs },
          },
        ),
      );
    }, timeoutMs);
    this.#ctx.log.info("connecting", {
      url: this.#safeUrl(),
      clientId: this.#clientId(),
      prefix: this.#prefix,
    });
    client.connect();
    try {
      await ready;
    } catch (e) {
      await this.stop();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  #clientOptions(): IClientOptions {
    const c = this.#config;
    const prefix = this.#prefix;
    const options: IClientOptions = {
      manualConnect: true,
      protocolVersion: 5,
      clean: false,
      clientId: this.#clientId(),
      keepalive: c.keepaliveSeconds ?? DEFAULT_KEEPALIVE_S,
      connectTimeout: c.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      reconnectPeriod: 0,
      resubscribe: false,
      properties: { sessionExpiryInterval: c.sessionExpirySeconds ?? DEFAULT_SESSION_EXPIRY_S },
      will: {
        topic: gatewayStatusTopic(prefix),
        payload: Buffer.from(encodeStatus("offline")),
        qos: 1,
        retain: true,
        properties: { contentType: CONTENT_TYPE_STATUS },
      },
    };
    if (c.username !== undefined) options.username = c.username;
    if (c.password !== undefined) options.password = c.password;
    return options;
  }

  #clientId(): string {
    return this.#config.clientId ?? `dmgw-${hostname().replace(/[^A-Za-z0-9._-]/g, "_")}`.slice(0, 64);
  }

  /** The URL without user info (a password in it is never logged). */
  #safeUrl(): string {
    try {
      const u = new URL(this.#config.url);
      u.username = "";
      u.password = "";
      return u.toString();
    } catch {
      return "(unparsable url)";
    }
  }

  /** False once `client` was replaced or the driver is stopping (checked again after each await). */
  #isCurrent(client: MqttClient): boolean {
    return client === this.#client && this.#stopping === undefined;
  }

  async #onConnect(client: MqttClient, sessionPresent: boolean): Promise<void> {
    if (!this.#isCurrent(client)) return;
    this.#attempt = 0;
    const prefix = this.#prefix;
    try {
      if (!this.#subscribed || !sessionPresent) {
        const filters = gatewayFilters(prefix);
        const granted = await client.subscribeAsync([filters.up, filters.status], { qos: 1 });
        const refused = granted.filter((g) => g.qos !== 1);
        if (refused.length > 0) {
          throw new GatewayError("mqtt: subscription refused", ErrorCode.Driver_StartFailed, {
            context: { topics: refused.map((g) => g.topic), codes: refused.map((g) => g.qos) },
          });
        }
        this.#subscribed = true;
      }
      // Not awaited: the PUBACK does not gate readiness, and stop() may come first.
      client.publish(
        gatewayStatusTopic(prefix),
        Buffer.from(encodeStatus("online")),
        { qos: 1, retain: true, properties: { contentType: CONTENT_TYPE_STATUS } },
        (err) => {
          if (err instanceof Error)
            this.#ctx.log.debug("gateway status not published", { error: err.message });
        },
      );
    } catch (e) {
      if (!this.#isCurrent(client)) return;
      const cause =
        e instanceof GatewayError
          ? e
          : new GatewayError("mqtt: subscribe failed", ErrorCode.Driver_LinkLost, { cause: e });
      if (this.#onFirstReady !== undefined) {
        this.#onFirstReady(cause);
        return;
      }
      this.#ctx.log.error("subscribe failed; dropping the connection to retry", { error: cause.message });
      this.#setState("degraded", cause);
      client.stream.destroy();
      return;
    }
    if (!this.#isCurrent(client)) return;
    this.#ctx.log.info("broker connected", { sessionPresent });
    this.#setState("ready");
    this.#onFirstReady?.();
  }

  #onClose(client: MqttClient): void {
    if (!this.#isCurrent(client)) return;
    if (this.#state === "ready") {
      this.#ctx.log.warn("broker connection lost; reconnecting", { url: this.#safeUrl() });
      this.#setState(
        "degraded",
        new GatewayError("mqtt: broker connection lost", ErrorCode.Driver_LinkLost, {
          context: { url: this.#safeUrl() },
        }),
      );
    }
    if (this.#reconnectTimer !== undefined) return;
    const delayMs = backoffDelay(this.#attempt++, this.#config.reconnect ?? {}, RECONNECT_DEFAULTS);
    this.#ctx.log.debug(() => `reconnect in ${delayMs} ms (attempt ${this.#attempt})`);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.#isCurrent(client)) return;
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delayMs);
  }

  #onError(e: Error): void {
    const code = (e as { code?: unknown }).code;
    // A CONNACK refusal (bad credentials, not authorised) fails a start at once; later it is a retry.
    const refused = typeof code === "number" && code >= 0x80;
    if (refused && this.#onFirstReady !== undefined) {
      this.#onFirstReady(
        new GatewayError(
          `mqtt: the broker refused the connection: ${e.message}`,
          ErrorCode.Driver_StartFailed,
          {
            context: { reasonCode: code },
          },
        ),
      );
      return;
    }
    this.#ctx.log.debug("mqtt client error", {
      error: e.message,
      ...(typeof code === "number" || typeof code === "string" ? { code } : {}),
    });
  }

  #onPublish(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.#stopping !== undefined) return;
    const parsed = parseTopic(this.#prefix, topic);
    if (parsed === undefined) {
      this.#ctx.log.debug("message on a foreign topic ignored", { topic, length: payload.length });
      return;
    }
    if (!parsed.ok) {
      this.#ctx.log.warn("message for an invalid device id dropped", {
        refusal: parsed.refusal,
        detail: parsed.detail,
        length: payload.length,
      });
      return;
    }
    const t = parsed.value;
    if (t.kind === "gateway-status") return;
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    switch (t.channel) {
      case "status":
        this.#onStatus(t.deviceId, bytes);
        return;
      case "up":
        void this.#onUp(t.deviceId, bytes, packet);
        return;
      case "down":
        // Not subscribed; another gateway's traffic under a shared subscription, say.
        return;
    }
  }

  #onStatus(deviceId: string, payload: Uint8Array): void {
    const status = decodeStatus(payload);
    if (!status.ok) {
      this.#ctx.log.warn("bad status payload ignored", {
        deviceId,
        reason: status.reason,
        length: payload.length,
        head: Buffer.from(payload.subarray(0, 16)).toString("hex"),
      });
      return;
    }
    const state: PresenceState = status.value === "online" ? "online" : "offline";
    const before = this.#presence.get(deviceId);
    if (before === state) return;
    this.#presence.set(deviceId, state);
    const device: DeviceAddress = { transport: "mqtt", address: deviceId };
    if (state === "online") {
      this.#ctx.log.debug("device online", { deviceId });
      this.#ctx.onDeviceSeen(device);
    } else {
      this.#ctx.log.debug("device offline", { deviceId, how: status.value });
      this.#ctx.onDeviceLost(
        device,
        new GatewayError(
          `mqtt: device ${status.value === "cleared" ? "status cleared" : "offline"}`,
          ErrorCode.Driver_Unreachable,
          {
            context: { deviceId, status: status.value },
          },
        ),
      );
    }
  }

  async #onUp(deviceId: string, body: Uint8Array, packet: IPublishPacket): Promise<void> {
    const contentType = packet.properties?.contentType ?? "";
    const hmac = hmacFromUserProperties(packet.properties?.userProperties);
    const message: DmMessage = {
      body,
      contentType,
      headers: hmac === undefined ? {} : { [HMAC_USER_PROPERTY]: hmac },
    };
    const log = this.#ctx.log;
    log.debug(() => `« ${deviceId} ${body.length} bytes ${contentType}`);
    if (log.enabled("trace")) log.trace(() => `« ${deviceId} ${Buffer.from(body).toString("hex")}`);
    let answer;
    try {
      answer = await this.#ctx.onMessage({ transport: "mqtt", address: deviceId }, message, undefined);
    } catch (e) {
      // The handler never rejects by contract; a bug there must not become an unhandled rejection.
      log.error("message handler threw", { deviceId, error: e instanceof Error ? e.message : String(e) });
      return;
    }
    switch (answer.kind) {
      case "ended":
        return;
      case "refused":
        // MQTT has no status to carry the refusal: the device times out (its session code decides).
        log.warn("device message refused", {
          deviceId,
          status: answer.status,
          reason: answer.reason,
          length: body.length,
          head: Buffer.from(body.subarray(0, 16)).toString("hex"),
        });
        return;
      case "reply":
        break;
    }
    const topic = deviceTopic(this.#prefix, deviceId, "down");
    if (!topic.ok) return;
    const reply = answer.message;
    log.debug(() => `» ${deviceId} ${reply.body.length} bytes ${reply.contentType}`);
    try {
      await this.#publish(topic.value, reply.body, reply.contentType, reply.headers);
    } catch (e) {
      log.warn("reply not delivered to the broker", {
        deviceId,
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  /**
   * Publishes a Pkg#0 on the device's `/dm/down` (QoS 1, content type
   * `application/vnd.syncml.notification`); resolves on the broker's PUBACK.
   * @throws GatewayError(Driver_Unreachable): the device id cannot be a topic level, the device's
   *   status says offline, the broker is not connected, or no PUBACK within `publishTimeoutMs`.
   */
  async notify(device: DeviceAddress, package0: Uint8Array): Promise<void> {
    const deviceId = device.address;
    const topic = deviceTopic(this.#prefix, deviceId, "down");
    if (!topic.ok) {
      throw new GatewayError(`mqtt: device id refused: ${topic.detail}`, ErrorCode.Driver_Unreachable, {
        context: { refusal: topic.refusal },
      });
    }
    if (this.#presence.get(deviceId) === "offline") {
      throw new GatewayError("mqtt: device is offline (its status)", ErrorCode.Driver_Unreachable, {
        context: { deviceId },
      });
    }
    if (this.#state !== "ready") {
      throw new GatewayError(`mqtt: broker not connected (${this.#state})`, ErrorCode.Driver_Unreachable, {
        context: { state: this.#state },
      });
    }
    this.#ctx.log.debug(() => `» ${deviceId} Pkg#0 ${package0.length} bytes`);
    await this.#publish(topic.value, package0, CONTENT_TYPE_NOTIFICATION, {});
  }

  respUri(): string | undefined {
    return undefined;
  }

  /**
   * QoS 1 publish; resolves on PUBACK. Works in any state but `stopping`: a reply to a message the
   * broker queued for us arrives before the subscription of a start is confirmed, and MQTT.js keeps
   * a publish made while disconnected until the next CONNACK.
   * @throws GatewayError(Driver_Unreachable).
   */
  #publish(
    topic: string,
    body: Uint8Array,
    contentType: string,
    headers: Readonly<Record<string, string>>,
  ): Promise<void> {
    const client = this.#client;
    if (client === undefined || this.#stopping !== undefined) {
      return Promise.reject(
        new GatewayError(`mqtt: broker not connected (${this.#state})`, ErrorCode.Driver_Unreachable, {
          context: { state: this.#state },
        }),
      );
    }
    const timeoutMs = this.#config.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new GatewayError(`mqtt: no PUBACK within ${timeoutMs} ms`, ErrorCode.Driver_Unreachable, {
            context: { timeoutMs },
          }),
        );
      }, timeoutMs);
      const properties: NonNullable<IPublishPacket["properties"]> = { contentType };
      if (Object.keys(headers).length > 0) properties.userProperties = { ...headers };
      client.publish(
        topic,
        Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        { qos: 1, properties },
        (err) => {
          clearTimeout(timer);
          if (!(err instanceof Error)) resolve();
          else
            reject(
              new GatewayError(`mqtt: publish failed: ${err.message}`, ErrorCode.Driver_Unreachable, {
                cause: err,
              }),
            );
        },
      );
    });
  }

  /** Publishes the offline status, ends the client, clears every timer. Idempotent, never throws. */
  stop(): Promise<void> {
    if (this.#state === "stopped" && this.#client === undefined) return Promise.resolve();
    this.#stopping ??= this.#stop().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#setState("stopping");
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    if (this.#abortListener !== undefined) {
      this.#ctx.signal.removeEventListener("abort", this.#abortListener);
      this.#abortListener = undefined;
    }
    this.#onFirstReady?.(new GatewayError("mqtt: stopped while starting", ErrorCode.Driver_StartFailed));
    const client = this.#client;
    try {
      if (client !== undefined) {
        if (client.connected) await this.#publishOffline(client);
        await endClient(client);
        client.removeAllListeners();
        // A late error from a destroyed socket must not become an uncaught 'error' event.
        client.on("error", () => undefined);
      }
    } catch (e) {
      this.#ctx.log.warn("mqtt stop: client did not end cleanly", {
        error: e instanceof Error ? e.message : String(e),
      });
    }
    this.#client = undefined;
    this.#presence.clear();
    this.#setState("stopped");
    this.#ctx.log.info("stopped");
  }

  #publishOffline(client: MqttClient): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, STOP_PUBLISH_MS);
      client.publish(
        gatewayStatusTopic(this.#prefix),
        Buffer.from(encodeStatus("offline")),
        { qos: 1, retain: true, properties: { contentType: CONTENT_TYPE_STATUS } },
        () => {
          clearTimeout(timer);
          resolve();
        },
      );
    });
  }

  #setState(state: DriverState, cause?: GatewayError): void {
    if (state === this.#state) return;
    this.#state = state;
    try {
      if (cause === undefined) this.#ctx.onState(state);
      else this.#ctx.onState(state, cause);
    } catch (e) {
      this.#ctx.log.error("onState listener threw", { error: e instanceof Error ? e.message : String(e) });
    }
  }
}

/** `end(true)`: no DISCONNECT (the session and the will stay with the broker); bounded wait. */
function endClient(client: MqttClient): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, STOP_END_MS);
    client.end(true, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export const createMqttDriver: ProxyDriverFactory<MqttDriverConfig> = (config, ctx) =>
  new MqttDriver(config, ctx);
