/**
 * A fleet of simulated DM-client devices on the MQTT binding (design.md section 3): N
 * `SimulatedDevice`s (src/sim/dm-device.ts, the real client-side session code) over one MQTT 5
 * connection per fleet, or a few. Runs in-process (`MqttDeviceFleet`) or as a script:
 *
 *   node --import tsx drivers/mqtt/sim.ts --url mqtt://127.0.0.1:1883 --count 1000 \
 *     --server-id dmgw --scheme md5 --client-secret c --server-secret s --failure-mix silent=0.1
 *
 *   per device: SUBSCRIBE <prefix>/<id>/dm/down (QoS 1); PUBLISH retained <prefix>/<id>/status online
 *   Pkg#0 on /dm/down (content type application/vnd.syncml.notification)
 *     -> device.onPackage0(pkg0, send)
 *        send = PUBLISH <prefix>/<id>/dm/up (QoS 1, content type, x-syncml-hmac user property)
 *               then the next DM message on /dm/down for that device, or undefined after
 *               `answerTimeoutMs` (the session then ends on the device's side)
 *   stop(): PUBLISH retained offline for every device, then DISCONNECT
 *   kill(): the connections die without DISCONNECT (the broker publishes the last wills)
 *
 * Last wills: MQTT gives a connection one will, naming one topic. A connection that carries exactly
 * one device gets that device's offline status as its will, as a real device would; a connection
 * shared by several devices has none (a shared connection is a load-test shortcut, not a device).
 * Set `connections: count` where each device's last will matters.
 *
 * Failure mix (SimulatedDevice): `silent`, `garbage`, `drop-mid-session`, `wrong-credentials`, by
 * weight, picked per device from a seeded generator so a run is repeatable; latency fixed or a
 * range. `device(index, id)` overrides any option of one device.
 */
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import { SILENT_LOGGER, type Logger } from "../../src/core/log.js";
import type { AuthConfig } from "../../src/dm/auth.js";
import {
  DEVICE_FAILURES,
  SimulatedDevice,
  type DeviceFailure,
  type DeviceMessage,
  type DeviceSessionReport,
  type SimulatedDeviceOptions,
} from "../../src/sim/dm-device.js";
import {
  CONTENT_TYPE_STATUS,
  DEFAULT_PREFIX,
  checkPrefix,
  contentKind,
  deviceTopic,
  encodeStatus,
  hmacFromUserProperties,
  HMAC_USER_PROPERTY,
  parseTopic,
} from "./topics.js";

/** A device's credentials toward the gateway. */
export interface FleetAccount {
  readonly serverId: string;
  readonly clientAuth: AuthConfig;
  readonly serverAuth: AuthConfig;
}

export interface MqttFleetOptions {
  readonly url: string;
  /** Default `dmgw`. */
  readonly prefix?: string;
  readonly count: number;
  /** Device ids are `<idPrefix><n>`, n from 1, zero-padded to the width of `count`. Default `sim-`. */
  readonly idPrefix?: string;
  /** MQTT connections the devices share, round robin; default 1, at most `count`. */
  readonly connections?: number;
  /** The same account for every device, or one per device. */
  readonly account: FleetAccount | ((deviceId: string) => FleetAccount);
  /** Failure weights, e.g. `{ none: 8, silent: 1, garbage: 1 }`; default all `none`. */
  readonly failureMix?: Readonly<Partial<Record<DeviceFailure, number>>>;
  /** Delay before each message a device sends, ms: fixed, or uniform in [min, max]. Default 0. */
  readonly latencyMs?: number | { readonly min: number; readonly max: number };
  /** Seed of the failure and latency picks; default 1. */
  readonly seed?: number;
  /** Per-device overrides, applied last. */
  readonly device?: (index: number, deviceId: string) => Partial<Omit<SimulatedDeviceOptions, "deviceId">>;
  /** How long a device waits for the gateway's answer on `/dm/down`, ms; default 10000. */
  readonly answerTimeoutMs?: number;
  /** MQTT client ids are `<clientIdPrefix><n>`; default `<idPrefix>fleet-<random>-`. */
  readonly clientIdPrefix?: string;
  /** Reconnect period of the fleet's clients, ms (MQTT.js's own); default 500. */
  readonly reconnectPeriodMs?: number;
  /** Time to connect and subscribe in `start()`, ms; default 10000. */
  readonly connectTimeoutMs?: number;
  readonly log?: Logger;
  /** Called with each finished session. */
  readonly onReport?: (deviceId: string, report: DeviceSessionReport | undefined) => void;
}

interface Waiter {
  readonly resolve: (message: DeviceMessage | undefined) => void;
  readonly timer: NodeJS.Timeout;
}

interface Member {
  readonly device: SimulatedDevice;
  readonly connection: number;
  readonly up: string;
  readonly down: string;
  readonly status: string;
  waiter: Waiter | undefined;
  session: Promise<void> | undefined;
  /** A Pkg#0 that came during the session. */
  next: Uint8Array | undefined;
  readonly reports: (DeviceSessionReport | undefined)[];
}

export class MqttDeviceFleet {
  readonly #o: MqttFleetOptions;
  readonly #log: Logger;
  readonly #members = new Map<string, Member>();
  readonly #clients: MqttClient[] = [];
  #ids: string[] = [];
  #stopped = false;
  #online = 0;
  #stopping: Promise<void> | undefined;

  constructor(options: MqttFleetOptions) {
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
  }

  /** Device ids, in index order (empty before `start()`). */
  get ids(): readonly string[] {
    return this.#ids;
  }

  /** How many times a connection came up and published its devices' online statuses. */
  get onlineCount(): number {
    return this.#online;
  }

  device(deviceId: string): SimulatedDevice | undefined {
    return this.#members.get(deviceId)?.device;
  }

  /** The sessions a device ran, in order (undefined: it ignored the Pkg#0). */
  reports(deviceId: string): readonly (DeviceSessionReport | undefined)[] {
    return this.#members.get(deviceId)?.reports ?? [];
  }

  get #prefix(): string {
    return this.#o.prefix ?? DEFAULT_PREFIX;
  }

  /**
   * Builds the devices, connects, subscribes every device's `/dm/down` and publishes each one's
   * retained online status. Rejects when a connection is not up within `connectTimeoutMs`.
   */
  async start(): Promise<void> {
    const prefix = checkPrefix(this.#prefix);
    if (!prefix.ok) throw new Error(`bad prefix: ${prefix.detail}`);
    const count = this.#o.count;
    const idPrefix = this.#o.idPrefix ?? "sim-";
    const width = String(count).length;
    const connections = Math.max(1, Math.min(this.#o.connections ?? 1, count));
    const random = mulberry32(this.#o.seed ?? 1);
    this.#ids = Array.from({ length: count }, (_, i) => `${idPrefix}${String(i + 1).padStart(width, "0")}`);
    for (const [index, deviceId] of this.#ids.entries()) {
      const topics = {
        up: deviceTopic(this.#prefix, deviceId, "up"),
        down: deviceTopic(this.#prefix, deviceId, "down"),
        status: deviceTopic(this.#prefix, deviceId, "status"),
      };
      if (!topics.up.ok || !topics.down.ok || !topics.status.ok) throw new Error(`bad device id ${deviceId}`);
      const account = typeof this.#o.account === "function" ? this.#o.account(deviceId) : this.#o.account;
      const latencyMs = pickLatency(this.#o.latencyMs, random);
      const failure = pickFailure(this.#o.failureMix, random);
      const device = new SimulatedDevice({
        deviceId,
        ...account,
        failure,
        latencyMs,
        ...this.#o.device?.(index, deviceId),
      });
      this.#members.set(deviceId, {
        device,
        connection: index % connections,
        up: topics.up.value,
        down: topics.down.value,
        status: topics.status.value,
        waiter: undefined,
        session: undefined,
        next: undefined,
        reports: [],
      });
    }
    const clientIdPrefix =
      this.#o.clientIdPrefix ?? `${idPrefix}fleet-${Math.random().toString(36).slice(2, 8)}-`;
    const started: Promise<void>[] = [];
    for (let c = 0; c < connections; c++) {
      const members = [...this.#members.values()].filter((m) => m.connection === c);
      started.push(this.#connect(c, `${clientIdPrefix}${c}`, members));
    }
    try {
      await Promise.all(started);
    } catch (e) {
      await this.kill();
      throw e;
    }
  }

  #connect(index: number, clientId: string, members: readonly Member[]): Promise<void> {
    const only = members.length === 1 ? members[0] : undefined;
    const options: IClientOptions = {
      manualConnect: true,
      protocolVersion: 5,
      clean: true,
      clientId,
      reconnectPeriod: this.#o.reconnectPeriodMs ?? 500,
      connectTimeout: this.#o.connectTimeoutMs ?? 10_000,
      ...(only !== undefined && {
        will: {
          topic: only.status,
          payload: Buffer.from(encodeStatus("offline")),
          qos: 1,
          retain: true,
          properties: { contentType: CONTENT_TYPE_STATUS },
        },
      }),
    };
    const client = connect(this.#o.url, options);
    this.#clients[index] = client;
    const timeoutMs = this.#o.connectTimeoutMs ?? 10_000;
    return new Promise<void>((resolve, reject) => {
      let first = true;
      const timer = setTimeout(() => {
        if (!first) return;
        first = false;
        reject(new Error(`fleet connection ${index}: not up within ${timeoutMs} ms`));
      }, timeoutMs);
      client.on("message", (topic, payload, packet) => {
        this.#onMessage(topic, payload, packet);
      });
      client.on("error", (e) => {
        this.#log.debug("fleet client error", { connection: index, error: e.message });
      });
      client.on("connect", () => {
        void (async () => {
          try {
            // MQTT.js resubscribes after a reconnect itself (clean session, resubscribe on).
            if (first)
              await subscribeAll(
                client,
                members.map((m) => m.down),
              );
            await this.#publishStatuses(client, members, "online");
            this.#online++;
            if (first) {
              first = false;
              clearTimeout(timer);
              resolve();
            }
          } catch (e) {
            if (first) {
              first = false;
              clearTimeout(timer);
              reject(e instanceof Error ? e : new Error(String(e)));
            } else {
              this.#log.warn("fleet: after reconnect", { error: e instanceof Error ? e.message : String(e) });
            }
          }
        })();
      });
      client.connect();
    });
  }

  #publishStatuses(
    client: MqttClient,
    members: readonly Member[],
    state: "online" | "offline",
  ): Promise<void> {
    const payload = Buffer.from(encodeStatus(state));
    return Promise.all(
      members.map((m) =>
        client.publishAsync(m.status, payload, {
          qos: 1,
          retain: true,
          properties: { contentType: CONTENT_TYPE_STATUS },
        }),
      ),
    ).then(() => undefined);
  }

  #onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const parsed = parseTopic(this.#prefix, topic);
    if (parsed?.ok !== true || parsed.value.kind !== "device" || parsed.value.channel !== "down") return;
    const member = this.#members.get(parsed.value.deviceId);
    if (member === undefined || this.#stopped) return;
    const body = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    const contentType = packet.properties?.contentType;
    if (contentKind(contentType) === "notification") {
      if (member.session !== undefined) {
        // The session's last answer and the next Pkg#0 can arrive in one read, before the session
        // has taken the answer in: keep the Pkg#0 (the latest) for when the session is over.
        this.#log.debug("Pkg#0 during a session kept for later", { deviceId: member.device.deviceId });
        member.next = Uint8Array.from(body);
        return;
      }
      this.#startSession(member, Uint8Array.from(body));
      return;
    }
    const waiter = member.waiter;
    if (waiter === undefined) {
      this.#log.debug("stray /dm/down message dropped", {
        deviceId: member.device.deviceId,
        length: body.length,
      });
      return;
    }
    member.waiter = undefined;
    clearTimeout(waiter.timer);
    const hmac = hmacFromUserProperties(packet.properties?.userProperties);
    waiter.resolve({
      body: Uint8Array.from(body),
      contentType: contentType ?? "",
      headers: hmac === undefined ? {} : { [HMAC_USER_PROPERTY]: hmac },
    });
  }

  #startSession(member: Member, pkg0: Uint8Array): void {
    member.session = this.#runSession(member, pkg0).finally(() => {
      member.session = undefined;
      const next = member.next;
      member.next = undefined;
      if (next !== undefined && !this.#stopped) this.#startSession(member, next);
    });
  }

  async #runSession(member: Member, pkg0: Uint8Array): Promise<void> {
    const client = this.#clients[member.connection];
    if (client === undefined) return;
    let report: DeviceSessionReport | undefined;
    try {
      report = await member.device.onPackage0(pkg0, (message) => this.#send(client, member, message));
    } catch (e) {
      report = {
        ok: false,
        reason: `device threw: ${e instanceof Error ? e.message : String(e)}`,
        sessionId: "",
        messages: 0,
        execs: [],
      };
    }
    member.reports.push(report);
    this.#log.debug("session over", {
      deviceId: member.device.deviceId,
      ok: report?.ok,
      reason: report?.reason,
    });
    try {
      this.#o.onReport?.(member.device.deviceId, report);
    } catch (e) {
      this.#log.error("onReport threw", { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Publishes on `/dm/up` and resolves with the next DM message on `/dm/down` (undefined: none in time). */
  #send(client: MqttClient, member: Member, message: DeviceMessage): Promise<DeviceMessage | undefined> {
    if (this.#stopped) return Promise.resolve(undefined);
    const timeoutMs = this.#o.answerTimeoutMs ?? 10_000;
    const answer = new Promise<DeviceMessage | undefined>((resolve) => {
      if (member.waiter !== undefined) {
        clearTimeout(member.waiter.timer);
        member.waiter.resolve(undefined);
      }
      const timer = setTimeout(() => {
        if (member.waiter?.timer === timer) member.waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      member.waiter = { resolve, timer };
    });
    const userProperties = Object.keys(message.headers).length > 0 ? { ...message.headers } : undefined;
    client.publish(
      member.up,
      Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength),
      {
        qos: 1,
        properties: {
          contentType: message.contentType,
          ...(userProperties !== undefined && { userProperties }),
        },
      },
      (err) => {
        if (err instanceof Error)
          this.#log.debug("fleet publish failed", { deviceId: member.device.deviceId, error: err.message });
      },
    );
    return answer;
  }

  /** Resolves once no device is in a session. */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#members.values()].flatMap((m) =>
        m.session === undefined ? [] : [m.session],
      );
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /** Publishes every device's offline status, disconnects, releases every device. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop(false);
    return this.#stopping;
  }

  /**
   * Drops every connection without DISCONNECT (the broker publishes the last wills) and releases the
   * devices: a fleet that lost power. Idempotent, and `stop()` after it does nothing more.
   */
  kill(): Promise<void> {
    this.#stopping ??= this.#stop(true);
    return this.#stopping;
  }

  async #stop(abrupt: boolean): Promise<void> {
    this.#stopped = true;
    for (const member of this.#members.values()) {
      if (member.waiter !== undefined) {
        clearTimeout(member.waiter.timer);
        member.waiter.resolve(undefined);
        member.waiter = undefined;
      }
    }
    await Promise.all(
      this.#clients.map(async (client, c) => {
        if (!abrupt && client.connected) {
          const members = [...this.#members.values()].filter((m) => m.connection === c);
          await withTimeout(this.#publishStatuses(client, members, "offline"), 2000).catch(() => undefined);
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2000);
          client.end(abrupt, {}, () => {
            clearTimeout(timer);
            resolve();
          });
        });
        client.removeAllListeners();
        client.on("error", () => undefined);
      }),
    );
    // Sessions see undefined answers now and end; their devices can then be closed.
    await this.idle();
    for (const member of this.#members.values()) member.device.close();
  }
}

function subscribeAll(client: MqttClient, topics: readonly string[]): Promise<void> {
  const chunks: string[][] = [];
  for (let i = 0; i < topics.length; i += 500) chunks.push(topics.slice(i, i + 500));
  return Promise.all(
    chunks.map(async (chunk) => {
      const granted = await client.subscribeAsync(chunk, { qos: 1 });
      const refused = granted.find((g) => g.qos !== 1);
      if (refused !== undefined) throw new Error(`subscription to ${refused.topic} refused (${refused.qos})`);
    }),
  ).then(() => undefined);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`timed out after ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => {
    clearTimeout(timer);
  });
}

/** A small seeded PRNG (mulberry32): repeatable fleets. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pickFailure(
  mix: Readonly<Partial<Record<DeviceFailure, number>>> | undefined,
  random: () => number,
): DeviceFailure {
  const draw = random();
  if (mix === undefined) return "none";
  const entries = DEVICE_FAILURES.map((f) => [f, Math.max(0, mix[f] ?? 0)] as const);
  const total = entries.reduce((s, [, w]) => s + w, 0);
  if (total === 0) return "none";
  let at = draw * total;
  for (const [failure, weight] of entries) {
    if (at < weight) return failure;
    at -= weight;
  }
  return "none";
}

function pickLatency(latency: MqttFleetOptions["latencyMs"], random: () => number): number {
  const draw = random();
  if (latency === undefined) return 0;
  if (typeof latency === "number") return latency;
  return Math.round(latency.min + draw * (latency.max - latency.min));
}

// ---------------------------------------------------------------------------------------------------
// Script

const USAGE = `usage: sim.ts --url mqtt://host:port --count N [--prefix dmgw] [--id-prefix sim-]
  [--connections 1] [--server-id dmgw] [--scheme md5|hmac|basic|none]
  [--client-name NAME] [--client-secret S] [--server-name NAME] [--server-secret S]
  [--failure-mix none=8,silent=1,garbage=1,drop-mid-session=1,wrong-credentials=1]
  [--latency-ms 50 | --latency-ms 20-200] [--seed 1] [--answer-timeout-ms 10000]`;

/** Parses `a=1,b=2`. */
function parseMix(text: string): Partial<Record<DeviceFailure, number>> {
  const mix: Partial<Record<DeviceFailure, number>> = {};
  for (const part of text.split(",")) {
    const [name, weight] = part.split("=");
    const failure = DEVICE_FAILURES.find((f) => f === name);
    if (failure === undefined || weight === undefined || !Number.isFinite(Number(weight))) {
      throw new Error(`bad --failure-mix entry '${part}'`);
    }
    mix[failure] = Number(weight);
  }
  return mix;
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      url: { type: "string" },
      count: { type: "string" },
      prefix: { type: "string" },
      "id-prefix": { type: "string" },
      connections: { type: "string" },
      "server-id": { type: "string", default: "dmgw" },
      scheme: { type: "string", default: "md5" },
      "client-name": { type: "string" },
      "client-secret": { type: "string", default: "client-secret" },
      "server-name": { type: "string" },
      "server-secret": { type: "string", default: "server-secret" },
      "failure-mix": { type: "string" },
      "latency-ms": { type: "string" },
      seed: { type: "string" },
      "answer-timeout-ms": { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  const count = Number(values.count);
  if (values.url === undefined || !Number.isInteger(count) || count < 1) {
    process.stderr.write(`${USAGE}\n`);
    return 64;
  }
  const scheme = values.scheme;
  if (scheme !== "md5" && scheme !== "hmac" && scheme !== "basic" && scheme !== "none") {
    process.stderr.write(`bad --scheme ${scheme}\n${USAGE}\n`);
    return 64;
  }
  const serverId = values["server-id"];
  const auth = (name: string | undefined, secret: string): AuthConfig =>
    scheme === "none" ? { scheme } : { scheme, name: name ?? serverId, secret };
  const latency = values["latency-ms"];
  const range = latency?.split("-").map(Number);
  let stats = { ok: 0, failed: 0, ignored: 0 };
  const fleet = new MqttDeviceFleet({
    url: values.url,
    count,
    account: (deviceId) => ({
      serverId,
      clientAuth: auth(values["client-name"] ?? deviceId, values["client-secret"]),
      serverAuth: auth(values["server-name"] ?? serverId, values["server-secret"]),
    }),
    ...(values.prefix !== undefined && { prefix: values.prefix }),
    ...(values["id-prefix"] !== undefined && { idPrefix: values["id-prefix"] }),
    ...(values.connections !== undefined && { connections: Number(values.connections) }),
    ...(values["failure-mix"] !== undefined && { failureMix: parseMix(values["failure-mix"]) }),
    ...(range?.length === 1 && { latencyMs: range[0] ?? 0 }),
    ...(range?.length === 2 && { latencyMs: { min: range[0] ?? 0, max: range[1] ?? 0 } }),
    ...(values.seed !== undefined && { seed: Number(values.seed) }),
    ...(values["answer-timeout-ms"] !== undefined && {
      answerTimeoutMs: Number(values["answer-timeout-ms"]),
    }),
    onReport: (deviceId, report) => {
      if (report === undefined) stats = { ...stats, ignored: stats.ignored + 1 };
      else if (report.ok) stats = { ...stats, ok: stats.ok + 1 };
      else stats = { ...stats, failed: stats.failed + 1 };
      if (!values.quiet) {
        process.stdout.write(
          `${deviceId} ${report === undefined ? "ignored" : report.ok ? "ok" : `failed: ${report.reason ?? "?"}`}\n`,
        );
      }
    },
  });
  await fleet.start();
  process.stdout.write(`${count} devices online under ${values.prefix ?? DEFAULT_PREFIX}/; Ctrl-C stops\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await fleet.stop();
  process.stdout.write(`sessions: ${stats.ok} ok, ${stats.failed} failed, ${stats.ignored} ignored\n`);
  return 0;
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await main(process.argv.slice(2));
}
