/**
 * An LwM2M 1.1 client simulator (issue #6): many endpoints per process, each on its own UDP socket,
 * holding objects 0 (Security), 1 (Server), 3 (Device), 5 (Firmware Update) and a test object 10250
 * (one opaque RW resource, for block-wise transfers). It registers with the gateway, updates and
 * de-registers, and answers Read (text, opaque, TLV, SenML JSON), Write, Execute, Create, Delete,
 * Discover and Observe (notifications when a value changes).
 *
 *   gateway <--UDP--> CoapEndpoint (one per client) --> Lwm2mClientSim.#handle --> the object store
 *
 * Behaviours for tests: `failure: "silent"` (registers, then answers nothing), `"slow"` (each answer
 * after `slowMs`). Executing /5/0/2 (Update) after a Package write makes the firmware version the
 * package's text, so Observe of /3/0 has something to report.
 *
 * As a script: `node --import tsx drivers/coap/sim.ts [--server coap://127.0.0.1:5683] [--count 10]
 * [--prefix sim-] [--lifetime 300]`; stops on SIGINT/SIGTERM after de-registering.
 */
import { pathToFileURL } from "node:url";
import { SILENT_LOGGER, type Logger } from "../../src/core/log.js";
import { CONTENT_FORMAT } from "./constants.js";
import { CoapEndpoint, type CoapResponse, type IncomingRequest, type Peer } from "./endpoint.js";
import { formatLinks, type Link } from "./link-format.js";
import {
  decodeTlv,
  encodeTlv,
  readTlvBoolean,
  readTlvFloat,
  readTlvInteger,
  readTlvString,
  tlvBoolean,
  tlvFloat,
  tlvInteger,
  tlvString,
  type Tlv,
} from "./lwm2m-tlv.js";
import { RESOURCES, type ResourceInfo } from "./mapping.js";
import { decodeSenml, encodeSenml, type SenmlRecord } from "./senml.js";

export type SimValue = string | number | boolean | Uint8Array;
export type Lwm2mFailure = "none" | "silent" | "slow";

/** The test object: one opaque read-write resource. */
export const TEST_OBJECT = 10250;
const EXTRA: ReadonlyMap<number, ReadonlyMap<number, ResourceInfo>> = new Map([
  [TEST_OBJECT, new Map([[0, { name: "Blob", type: "opaque", ops: "RW" } as const]])],
]);

function infoOf(obj: number, res: number): ResourceInfo | undefined {
  return RESOURCES.get(obj)?.get(res) ?? EXTRA.get(obj)?.get(res);
}

export interface Lwm2mClientOptions {
  readonly endpoint: string;
  readonly server: Peer;
  /** Registration lifetime, s; default 300. */
  readonly lifetimeS?: number;
  readonly failure?: Lwm2mFailure;
  /** Delay of each answer with `failure: "slow"`, ms; default 300. */
  readonly slowMs?: number;
  /** Delay of every answer (a device's own latency, benches), ms; default 0. */
  readonly latencyMs?: number;
  /** Bind address; default 127.0.0.1. */
  readonly host?: string;
  readonly manufacturer?: string;
  readonly model?: string;
  readonly firmware?: string;
  /** Send a registration update at 80 % of the lifetime; default false. */
  readonly autoUpdate?: boolean;
  readonly log?: Logger;
}

interface Observer {
  readonly peer: Peer;
  readonly token: Buffer;
  readonly path: readonly number[];
  readonly accept: number | undefined;
  seq: number;
  messageIds: Set<number>;
}

export class Lwm2mClientSim {
  readonly options: Lwm2mClientOptions;
  /** Operations the gateway ran on this client. */
  readonly counters = { reads: 0, writes: 0, executes: 0, creates: 0, deletes: 0, reboots: 0 };
  readonly #values = new Map<string, SimValue>();
  readonly #instances = new Set<string>();
  readonly #observers: Observer[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #endpoint: CoapEndpoint | undefined;
  #location: readonly string[] | undefined;
  #updateTimer: NodeJS.Timeout | undefined;
  #log: Logger;

  constructor(options: Lwm2mClientOptions) {
    this.options = options;
    this.#log = options.log ?? SILENT_LOGGER;
    const lt = options.lifetimeS ?? 300;
    this.#instance([0, 0], {
      0: `coap://${options.server.address}:${options.server.port}`,
      1: false,
      2: 3,
      10: 1,
    });
    this.#instance([1, 0], { 0: 1, 1: lt, 6: false, 7: "U" });
    this.#instance([3, 0], {
      0: options.manufacturer ?? "SimCo",
      1: options.model ?? "LwM2M-Sim",
      2: `SN-${options.endpoint}`,
      3: options.firmware ?? "1.0",
      9: 100,
      10: 15,
      13: Math.floor(Date.now() / 1000),
      14: "+02:00",
      16: "U",
    });
    this.#values.set("/3/0/6/0", 1);
    this.#values.set("/3/0/6/1", 5);
    this.#values.set("/3/0/11/0", 0);
    this.#instance([5, 0], { 1: "", 3: 0, 5: 0, 6: "", 7: "" });
    this.#instance([TEST_OBJECT, 0], { 0: new Uint8Array(0) });
  }

  /** Opens the socket and registers. */
  static async start(options: Lwm2mClientOptions): Promise<Lwm2mClientSim> {
    const sim = new Lwm2mClientSim(options);
    await sim.open();
    await sim.register();
    return sim;
  }

  get endpoint(): string {
    return this.options.endpoint;
  }

  /** The client's own UDP port. */
  get port(): number {
    return this.#endpoint?.port ?? 0;
  }

  get registered(): boolean {
    return this.#location !== undefined;
  }

  async open(): Promise<void> {
    this.#endpoint ??= await CoapEndpoint.open({
      host: this.options.host ?? "127.0.0.1",
      port: 0,
      handler: (req) => this.#handle(req),
      onReset: (peer, messageId) => {
        this.#onReset(messageId);
      },
      ackTimeoutMs: 500,
      maxRetransmit: 3,
      log: this.#log,
    });
  }

  /** Register (LwM2M Core 6.2.1). @throws when the server refuses or does not answer. */
  async register(): Promise<void> {
    const ep = this.#need();
    const lt = this.options.lifetimeS ?? 300;
    const r = await ep.request(this.options.server, {
      method: "POST",
      path: ["rd"],
      query: [`ep=${this.options.endpoint}`, `lt=${lt}`, "lwm2m=1.1", "b=U"],
      contentFormat: CONTENT_FORMAT.LINK_FORMAT,
      payload: Buffer.from(this.#registrationLinks()),
    });
    if (r.code !== "2.01" || r.locationPath === undefined) throw new Error(`registration refused: ${r.code}`);
    this.#location = r.locationPath;
    this.#scheduleUpdate();
  }

  /** Registration update (Core 6.2.2). Resolves with the server's code. */
  async update(options: { readonly lifetimeS?: number } = {}): Promise<string> {
    const ep = this.#need();
    if (this.#location === undefined) throw new Error("not registered");
    const r = await ep.request(this.options.server, {
      method: "POST",
      path: this.#location,
      query: options.lifetimeS === undefined ? [] : [`lt=${options.lifetimeS}`],
    });
    this.#scheduleUpdate();
    return r.code;
  }

  /** De-register (Core 6.2.3). */
  async deregister(): Promise<string> {
    const ep = this.#need();
    if (this.#location === undefined) return "not registered";
    const location = this.#location;
    this.#location = undefined;
    clearTimeout(this.#updateTimer);
    const r = await ep.request(this.options.server, { method: "DELETE", path: location });
    return r.code;
  }

  /** A value (`/3/0/3`), as stored. */
  get(path: string): SimValue | undefined {
    return this.#values.get(path);
  }

  /** Sets a value as the device itself would, notifying observers. */
  set(path: string, value: SimValue): void {
    this.#values.set(path, value);
    this.#changed(path);
  }

  /** Closes the socket and every timer (no de-registration: a device that vanished). */
  async stop(): Promise<void> {
    clearTimeout(this.#updateTimer);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#observers.length = 0;
    const ep = this.#endpoint;
    this.#endpoint = undefined;
    this.#location = undefined;
    await ep?.close();
  }

  #need(): CoapEndpoint {
    if (this.#endpoint === undefined) throw new Error(`${this.options.endpoint}: not open`);
    return this.#endpoint;
  }

  #scheduleUpdate(): void {
    clearTimeout(this.#updateTimer);
    if (this.options.autoUpdate !== true) return;
    this.#updateTimer = setTimeout(
      () => {
        this.update().catch((e: unknown) => {
          this.#log.warn("registration update failed", { error: e instanceof Error ? e.message : String(e) });
        });
      },
      (this.options.lifetimeS ?? 300) * 800,
    );
  }

  #instance(path: readonly [number, number], resources: Readonly<Record<number, SimValue>>): void {
    this.#instances.add(`/${path[0]}/${path[1]}`);
    for (const [res, v] of Object.entries(resources)) this.#values.set(`/${path[0]}/${path[1]}/${res}`, v);
  }

  #registrationLinks(): string {
    const links: Link[] = [{ uri: "/", attributes: { rt: "oma.lwm2m" } }];
    const order = (p: string): number[] => p.slice(1).split("/").map(Number);
    const sorted = [...this.#instances].sort((a, b) => {
      const [a0 = 0, a1 = 0] = order(a);
      const [b0 = 0, b1 = 0] = order(b);
      return a0 - b0 || a1 - b1;
    });
    for (const i of sorted) if (!i.startsWith("/0/")) links.push({ uri: i, attributes: {} });
    return formatLinks(links);
  }

  // ---- the device management interface (Core 6.3) --------------------------------------------------

  async #handle(req: IncomingRequest): Promise<CoapResponse> {
    const failure = this.options.failure ?? "none";
    if (failure === "silent") return new Promise<CoapResponse>(() => undefined);
    const delayMs = (failure === "slow" ? (this.options.slowMs ?? 300) : 0) + (this.options.latencyMs ?? 0);
    if (delayMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.#timers.delete(t);
          resolve();
        }, delayMs);
        this.#timers.add(t);
      });
    }
    const path: number[] = [];
    for (const s of req.path) {
      if (!/^\d{1,5}$/.test(s)) return { code: "4.04" };
      path.push(Number(s));
    }
    if (path[0] === 0) return { code: "4.01" }; // the Security object is not for the server (Core 6.3)
    try {
      switch (req.method) {
        case "GET":
          return this.#read(req, path);
        case "PUT":
          return this.#write(req, path);
        case "POST":
          return this.#post(req, path);
        case "DELETE":
          return this.#delete(path);
      }
    } catch (e) {
      this.#log.debug(() => `bad request: ${e instanceof Error ? e.message : String(e)}`);
      return { code: "4.00" };
    }
  }

  #exists(path: readonly number[]): boolean {
    const s = `/${path.join("/")}`;
    if (path.length <= 2) return [...this.#instances].some((i) => i === s || i.startsWith(`${s}/`));
    return [...this.#values.keys()].some((k) => k === s || k.startsWith(`${s}/`));
  }

  #read(req: IncomingRequest, path: number[]): CoapResponse {
    if (path.length === 0) return { code: "4.00" };
    if (req.accept === CONTENT_FORMAT.LINK_FORMAT) return this.#discover(path);
    const [obj = 0, , res] = path;
    if (res !== undefined && this.#exists(path.slice(0, 2))) {
      const info = infoOf(obj, res);
      if (info !== undefined && (info.ops === "W" || info.ops === "E")) return { code: "4.05" };
    }
    if (!this.#exists(path)) return { code: "4.04" };
    this.counters.reads++;
    const body = this.#encode(path, req.accept);
    if (body === undefined) return { code: "4.06" };
    if (req.observe === 0) {
      const o: Observer = {
        peer: req.from,
        token: req.token,
        path,
        accept: req.accept,
        seq: 1,
        messageIds: new Set(),
      };
      const i = this.#observers.findIndex((x) => x.token.equals(req.token));
      if (i >= 0) this.#observers.splice(i, 1);
      this.#observers.push(o);
      return { code: "2.05", ...body, observe: 1 };
    }
    if (req.observe === 1) {
      const i = this.#observers.findIndex((x) => x.token.equals(req.token));
      if (i >= 0) this.#observers.splice(i, 1);
    }
    return { code: "2.05", ...body };
  }

  /** The body of a Read of `path` in `accept` (or the default), undefined when not representable. */
  #encode(
    path: readonly number[],
    accept: number | undefined,
  ): { contentFormat: number; payload: Uint8Array } | undefined {
    const [obj = 0, , res, resInst] = path;
    const prefix = `/${path.join("/")}`;
    const entries = [...this.#values.entries()].filter(([k]) => k === prefix || k.startsWith(`${prefix}/`));
    const single = res !== undefined && entries.length === 1 && entries[0]?.[0] === prefix;
    const info = res === undefined ? undefined : infoOf(obj, res);
    if (single && resInst === undefined && info?.multiple !== true) {
      const v = entries[0]?.[1];
      if (v === undefined) return undefined;
      if (accept === undefined || accept === CONTENT_FORMAT.TEXT || accept === CONTENT_FORMAT.OPAQUE) {
        if (v instanceof Uint8Array) {
          return accept === CONTENT_FORMAT.TEXT
            ? undefined
            : { contentFormat: CONTENT_FORMAT.OPAQUE, payload: v };
        }
        if (accept === CONTENT_FORMAT.OPAQUE) return undefined;
        return { contentFormat: CONTENT_FORMAT.TEXT, payload: Buffer.from(String(v)) };
      }
    }
    if (accept === CONTENT_FORMAT.SENML_JSON) {
      const records: SenmlRecord[] = entries.map(([name, value]) => ({ name, value }));
      return { contentFormat: CONTENT_FORMAT.SENML_JSON, payload: encodeSenml(records) };
    }
    if (accept !== undefined && accept !== CONTENT_FORMAT.LWM2M_TLV) return undefined;
    return { contentFormat: CONTENT_FORMAT.LWM2M_TLV, payload: encodeTlv(this.#tlv(path, entries)) };
  }

  /** TLV of the values below `path`: instances for an object, resources for an instance. */
  #tlv(path: readonly number[], entries: readonly (readonly [string, SimValue])[]): Tlv[] {
    const tree = new Map<number, Map<number, Map<number | undefined, SimValue>>>();
    for (const [k, v] of entries) {
      const [, inst = 0, res = 0, ri] = k.slice(1).split("/").map(Number);
      const i = tree.get(inst) ?? new Map<number, Map<number | undefined, SimValue>>();
      tree.set(inst, i);
      const r = i.get(res) ?? new Map<number | undefined, SimValue>();
      i.set(res, r);
      r.set(ri, v);
    }
    const obj = path[0] ?? 0;
    const resources = (inst: Map<number, Map<number | undefined, SimValue>>): Tlv[] =>
      [...inst].map(([res, values]): Tlv => {
        const multiple = infoOf(obj, res)?.multiple === true || !values.has(undefined);
        if (!multiple) return { kind: "resource", id: res, value: tlvValue(values.get(undefined) ?? "") };
        return {
          kind: "multipleResource",
          id: res,
          children: [...values].map(([ri, v]): Tlv => ({
            kind: "resourceInstance",
            id: ri ?? 0,
            value: tlvValue(v),
          })),
        };
      });
    if (path.length === 1)
      return [...tree].map(([id, inst]): Tlv => ({ kind: "objectInstance", id, children: resources(inst) }));
    const inst = tree.get(path[1] ?? 0) ?? new Map<number, Map<number | undefined, SimValue>>();
    const all = resources(inst);
    return path.length === 2 ? all : all.filter((t) => t.id === path[2]);
  }

  #discover(path: number[]): CoapResponse {
    if (!this.#exists(path)) return { code: "4.04" };
    const prefix = `/${path.join("/")}`;
    const links: Link[] = [{ uri: prefix, attributes: {} }];
    const seen = new Set<string>();
    for (const k of this.#values.keys()) {
      if (!k.startsWith(`${prefix}/`)) continue;
      const res = k.split("/").slice(0, 4).join("/");
      if (!seen.has(res) && res !== prefix) {
        seen.add(res);
        links.push({ uri: res, attributes: {} });
      }
    }
    return {
      code: "2.05",
      contentFormat: CONTENT_FORMAT.LINK_FORMAT,
      payload: Buffer.from(formatLinks(links)),
    };
  }

  #write(req: IncomingRequest, path: number[]): CoapResponse {
    if (req.payload.length === 0 && req.query.length > 0) return { code: "2.04" }; // Write-Attributes
    if (path.length < 2 || !this.#exists(path.slice(0, 2))) return { code: "4.04" };
    const [obj = 0, inst = 0, res] = path;
    const updates = this.#decode(req, obj, inst, res);
    if (updates === undefined) return { code: "4.15" };
    for (const [k] of updates) {
      const r = Number(k.split("/")[3]);
      const info = infoOf(obj, r);
      if (info === undefined && RESOURCES.has(obj)) return { code: "4.04" };
      if (info !== undefined && info.ops !== "W" && info.ops !== "RW") return { code: "4.05" };
    }
    for (const [k, v] of updates) this.#values.set(k, v);
    this.counters.writes++;
    if (obj === 5 && res === 0) this.#values.set("/5/0/3", 2); // Downloaded
    for (const [k] of updates) this.#changed(k);
    return { code: "2.04" };
  }

  /** Path -> value of a Write or Create body. */
  #decode(
    req: IncomingRequest,
    obj: number,
    inst: number,
    res: number | undefined,
  ): Map<string, SimValue> | undefined {
    const out = new Map<string, SimValue>();
    const base = `/${obj}/${inst}`;
    switch (req.contentFormat) {
      case CONTENT_FORMAT.TEXT:
      case undefined: {
        if (res === undefined) return undefined;
        const info = infoOf(obj, res);
        out.set(`${base}/${res}`, fromText(req.payload.toString("utf8"), info));
        return out;
      }
      case CONTENT_FORMAT.OPAQUE:
        if (res === undefined) return undefined;
        out.set(`${base}/${res}`, new Uint8Array(req.payload));
        return out;
      case CONTENT_FORMAT.LWM2M_TLV: {
        let entries = decodeTlv(req.payload);
        const top = entries[0];
        if (top?.kind === "objectInstance") entries = [...top.children];
        for (const e of entries) {
          const info = infoOf(obj, e.id);
          if ("value" in e) out.set(`${base}/${e.id}`, fromTlv(e.value, info));
          else
            for (const c of e.children)
              if ("value" in c) out.set(`${base}/${e.id}/${c.id}`, fromTlv(c.value, info));
        }
        return out;
      }
      case CONTENT_FORMAT.SENML_JSON:
        for (const r of decodeSenml(req.payload)) if (r.value !== undefined) out.set(r.name, r.value);
        return out;
      default:
        return undefined;
    }
  }

  #post(req: IncomingRequest, path: number[]): CoapResponse {
    const [obj = 0, inst, res] = path;
    if (path.length === 1) {
      // Create (Core 6.3.7).
      if (!RESOURCES.has(obj) && !EXTRA.has(obj)) return { code: "4.04" };
      let id = 0;
      while (this.#instances.has(`/${obj}/${id}`)) id++;
      const entries =
        req.payload.length > 0 && req.contentFormat === CONTENT_FORMAT.LWM2M_TLV
          ? decodeTlv(req.payload)
          : [];
      const top = entries[0];
      if (top?.kind === "objectInstance") id = top.id;
      if (this.#instances.has(`/${obj}/${id}`)) return { code: "4.00" };
      this.#instances.add(`/${obj}/${id}`);
      const children = top?.kind === "objectInstance" ? top.children : entries;
      for (const e of children)
        if ("value" in e) this.#values.set(`/${obj}/${id}/${e.id}`, fromTlv(e.value, infoOf(obj, e.id)));
      this.counters.creates++;
      return { code: "2.01", locationPath: [String(obj), String(id)] };
    }
    if (!this.#exists(path.slice(0, 2))) return { code: "4.04" };
    if (path.length === 2) return this.#write(req, path);
    if (res === undefined || inst === undefined) return { code: "4.00" };
    const info = infoOf(obj, res);
    if (info?.ops !== "E") return { code: "4.05" };
    this.counters.executes++;
    if (obj === 3 && res === 4) this.counters.reboots++;
    if (obj === 5 && res === 2) {
      const pkg = this.#values.get("/5/0/0");
      const version =
        pkg instanceof Uint8Array && pkg.length > 0 && pkg.length < 32
          ? Buffer.from(pkg).toString("utf8")
          : "2.0";
      this.#values.set("/5/0/3", 0);
      this.#values.set("/5/0/5", 1);
      this.set("/3/0/3", version);
    }
    return { code: "2.04" };
  }

  #delete(path: number[]): CoapResponse {
    if (path.length !== 2) return { code: "4.05" };
    const key = `/${path.join("/")}`;
    if (!this.#instances.has(key)) return { code: "4.04" };
    if (path[0] === 1 || path[0] === 3) return { code: "4.05" };
    this.#instances.delete(key);
    for (const k of [...this.#values.keys()]) if (k.startsWith(`${key}/`)) this.#values.delete(k);
    this.counters.deletes++;
    return { code: "2.02" };
  }

  #changed(path: string): void {
    const ep = this.#endpoint;
    if (ep === undefined) return;
    for (const o of this.#observers) {
      const op = `/${o.path.join("/")}`;
      if (path !== op && !path.startsWith(`${op}/`)) continue;
      const body = this.#encode(o.path, o.accept);
      if (body === undefined) continue;
      o.seq++;
      const id = ep.notify(o.peer, o.token, o.seq, { code: "2.05", ...body });
      o.messageIds.add(id);
      if (o.messageIds.size > 16) o.messageIds.delete(o.messageIds.values().next().value ?? id);
    }
  }

  #onReset(messageId: number): void {
    const i = this.#observers.findIndex((o) => o.messageIds.has(messageId));
    if (i >= 0) this.#observers.splice(i, 1);
  }
}

function tlvValue(v: SimValue): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === "boolean") return tlvBoolean(v);
  if (typeof v === "number") return Number.isInteger(v) ? tlvInteger(v) : tlvFloat(v);
  return tlvString(v);
}

function fromTlv(value: Uint8Array, info: ResourceInfo | undefined): SimValue {
  switch (info?.type) {
    case "integer":
    case "time":
      return Number(readTlvInteger(value));
    case "float":
      return readTlvFloat(value);
    case "boolean":
      return readTlvBoolean(value);
    case "opaque":
      return value;
    case "string":
    case "objlnk":
    case "none":
    case undefined:
      return readTlvString(value);
  }
}

function fromText(text: string, info: ResourceInfo | undefined): SimValue {
  switch (info?.type) {
    case "integer":
    case "time":
    case "float": {
      const n = Number(text);
      if (!Number.isFinite(n)) throw new Error(`not a number: ${text}`);
      return n;
    }
    case "boolean":
      if (text !== "0" && text !== "1" && text !== "true" && text !== "false")
        throw new Error("not a boolean");
      return text === "1" || text === "true";
    case "opaque":
      return new Uint8Array(Buffer.from(text, "base64"));
    case "string":
    case "objlnk":
    case "none":
    case undefined:
      return text;
  }
}

// ---- many endpoints ---------------------------------------------------------------------------------

export interface Lwm2mFleetOptions {
  readonly server: Peer;
  readonly count: number;
  /** Endpoint names are `<prefix><index>`; default `sim-`. */
  readonly prefix?: string;
  readonly lifetimeS?: number;
  /** Per-client overrides (failure mix). */
  readonly client?: (index: number) => Partial<Lwm2mClientOptions>;
  readonly log?: Logger;
}

/** Many simulated LwM2M clients in this process, each on its own socket. */
export class Lwm2mFleet {
  readonly clients: Lwm2mClientSim[] = [];
  readonly #o: Lwm2mFleetOptions;

  constructor(options: Lwm2mFleetOptions) {
    this.#o = options;
  }

  /** Opens and registers every client, a batch at a time. */
  async start(): Promise<void> {
    const prefix = this.#o.prefix ?? "sim-";
    const batch = 64;
    for (let i = 0; i < this.#o.count; i += batch) {
      const made = await Promise.all(
        Array.from({ length: Math.min(batch, this.#o.count - i) }, (_, k) =>
          Lwm2mClientSim.start({
            endpoint: `${prefix}${i + k}`,
            server: this.#o.server,
            ...(this.#o.lifetimeS !== undefined && { lifetimeS: this.#o.lifetimeS }),
            ...(this.#o.log !== undefined && { log: this.#o.log }),
            ...this.#o.client?.(i + k),
          }),
        ),
      );
      this.clients.push(...made);
    }
  }

  client(endpoint: string): Lwm2mClientSim | undefined {
    return this.clients.find((c) => c.endpoint === endpoint);
  }

  /** De-registers (best effort, bounded) when asked, then closes every client. */
  async stop(options: { readonly deregister?: boolean } = {}): Promise<void> {
    if (options.deregister === true) {
      await Promise.all(
        this.clients.map((c) =>
          Promise.race([
            c.deregister().catch(() => undefined),
            new Promise((r) => setTimeout(r, 1000).unref()),
          ]),
        ),
      );
    }
    await Promise.all(this.clients.map((c) => c.stop()));
    this.clients.length = 0;
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const arg = (name: string, fallback: string): string => {
    const i = argv.indexOf(name);
    return i >= 0 ? (argv[i + 1] ?? fallback) : fallback;
  };
  const url = new URL(arg("--server", "coap://127.0.0.1:5683"));
  const fleet = new Lwm2mFleet({
    server: { address: url.hostname, port: Number(url.port || "5683") },
    count: Number(arg("--count", "10")),
    prefix: arg("--prefix", "sim-"),
    lifetimeS: Number(arg("--lifetime", "300")),
    client: () => ({ autoUpdate: true }),
  });
  await fleet.start();
  process.stdout.write(`${fleet.clients.length} LwM2M clients registered with ${url.host}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await fleet.stop({ deregister: true });
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`coap sim: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
