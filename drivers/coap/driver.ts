/**
 * The CoAP adaptation driver (design.md section 3, issue #6): the gateway is the LwM2M 1.1 server of
 * its CoAP devices and maps DM commands onto LwM2M operations.
 *
 *   device --POST /rd?ep=..&lt=..&b=U  </1/0>,</3/0>--> CoapEndpoint --> register --> 2.01 Location /rd/<id>
 *     --> Observe GET /3/0 (SenML JSON) --> ctx.onDeviceSeen({coap, ep}, {Man, Mod, DevId, FwV})
 *     (each notification re-reports DevInfo; update POST /rd/<id> renews; DELETE /rd/<id> or the
 *     lifetime running out --> ctx.onDeviceLost)
 *   core --> execute(ep, [Get ./DevInfo/FwV, Replace ./3/0/14, Exec ./3/0/4, Add ./5/1, Delete ./5/1])
 *     --> per endpoint queue (NSTART) --> Read GET /3/0/3 | Write PUT | Execute POST | Create POST /5 |
 *         Delete DELETE --> CoAP code --> DM status (mapping.ts) --> DeviceCommandResult
 *
 * Decisions:
 * - One UDP socket serves `/rd` and carries the requests to devices, so a device behind NAT is reached
 *   at the address it registered from (endpoint.ts says why not node-coap's server + agent).
 * - Atomic answers 406: LwM2M has no transactions, so all-or-nothing cannot be promised. Sequence runs
 *   its commands in order. Copy and Alert answer 406 too.
 * - A Get on a resource answers its value (text/plain as text, opaque as `bin` bytes); on an object or
 *   instance, its children's names, DM style (`0/1/2`). Replace writes text/plain, or opaque for
 *   `bin`/`b64` data. Add of `./<obj>/<inst>[/<res>]` is a Create on /<obj> with a TLV instance.
 * - A device that does not answer within the deadline ends the call 504; a cancel 514; an unknown
 *   endpoint 503. Replies already received are not kept when the device then goes silent: the core
 *   sees one device-level status (the AdaptedOutcome shape has no partial form).
 * - DTLS (port 5684, PSK/RPK/X.509) is not implemented (drivers/coap/README.md).
 */
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import type { Command, Data, Item } from "../../src/syncml/index.js";
import type {
  AdaptationDriver,
  AdaptationDriverFactory,
  AdaptedOutcome,
  DeviceAddress,
  DeviceCommandResult,
  DriverContext,
  DriverState,
} from "../driver.js";
import { CONTENT_FORMAT, DEFAULT_LIFETIME_S, LWM2M_PORT, NSTART } from "./constants.js";
import {
  CoapEndpoint,
  type CoapRequest,
  type CoapResponse,
  type IncomingRequest,
  type Observation,
  type Peer,
} from "./endpoint.js";
import { formatLinks, parseLinks, registeredObjects, type Link } from "./link-format.js";
import { decodeTlv, encodeTlv, readTlvString, type Tlv } from "./lwm2m-tlv.js";
import {
  coapCodeToDmStatus,
  devInfoOf,
  dmFormatOf,
  dmUriToPath,
  pathToString,
  resourceInfo,
  type Lwm2mPath,
} from "./mapping.js";
import { decodeSenml } from "./senml.js";

export interface CoapDriverConfig {
  /** Bind address; default 0.0.0.0. */
  readonly host?: string;
  /** UDP port; default 5683; 0 picks a free one (tests). */
  readonly port?: number;
  /** CoAP exchanges in flight per endpoint (NSTART); default 1. */
  readonly exchangesPerEndpoint?: number;
  /** RFC 7252 ACK_TIMEOUT, ms; default 2000. */
  readonly ackTimeoutMs?: number;
  readonly maxRetransmit?: number;
  /** Observe /3/0 after registration to keep DevInfo fresh; default true. */
  readonly observeDevInfo?: boolean;
  /** How long the DevInfo read after a registration may take, ms; default 10000. */
  readonly devInfoTimeoutMs?: number;
  /** Registrations the gateway holds at most; default 100000. */
  readonly maxRegistrations?: number;
}

/** Devices in a session at once: each endpoint is its own queue, so wide. */
export const COAP_CONCURRENCY = 256;

/** One registered LwM2M client. */
export interface Registration {
  readonly id: string;
  readonly endpoint: string;
  peer: Peer;
  lifetimeS: number;
  binding: string;
  version: string;
  objects: number[][];
  registeredAt: number;
  expiry: NodeJS.Timeout | undefined;
  observation: Observation | undefined;
  /** Running exchanges and the ones waiting for a slot (NSTART). */
  active: number;
  readonly waiting: (() => void)[];
  /** Aborted at de-registration, expiry or stop: what runs for this registration ends. */
  readonly ended: AbortController;
}

const DEFAULT_DEVINFO_TIMEOUT_MS = 10_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

class DeviceSilent extends Error {}

export class CoapDriver implements AdaptationDriver {
  readonly kind = "coap" as const;
  readonly mode = "adaptation" as const;
  readonly concurrency = COAP_CONCURRENCY;

  readonly #config: CoapDriverConfig;
  readonly #ctx: DriverContext;
  #state: DriverState = "stopped";
  #endpoint: CoapEndpoint | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  readonly #byEndpoint = new Map<string, Registration>();
  readonly #byId = new Map<string, Registration>();
  #nextId = 1;

  constructor(config: CoapDriverConfig, ctx: DriverContext) {
    this.#config = config;
    this.#ctx = ctx;
  }

  get state(): DriverState {
    return this.#state;
  }

  /** The bound UDP port (after start). */
  get port(): number {
    return this.#endpoint?.port ?? 0;
  }

  /** The registration of an endpoint name, if any (tests, diagnostics). */
  registration(endpoint: string): Readonly<Registration> | undefined {
    return this.#byEndpoint.get(endpoint);
  }

  /** Binds the socket. Idempotent. @throws GatewayError(Driver_StartFailed). */
  start(): Promise<void> {
    if (this.#state === "ready") return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#stopping !== undefined) await this.#stopping;
    if (this.#ctx.signal.aborted)
      throw new GatewayError("coap: start after shutdown", ErrorCode.Driver_StartFailed);
    this.#setState("starting");
    try {
      this.#endpoint = await CoapEndpoint.open({
        host: this.#config.host ?? "0.0.0.0",
        port: this.#config.port ?? LWM2M_PORT,
        handler: (req) => this.#handle(req),
        log: this.#ctx.log,
        ...(this.#config.ackTimeoutMs !== undefined && { ackTimeoutMs: this.#config.ackTimeoutMs }),
        ...(this.#config.maxRetransmit !== undefined && { maxRetransmit: this.#config.maxRetransmit }),
      });
    } catch (e) {
      this.#setState("stopped");
      throw e;
    }
    this.#ctx.signal.addEventListener("abort", this.#onShutdown, { once: true });
    this.#ctx.log.info("LwM2M server listening", { port: this.#endpoint.port });
    this.#setState("ready");
  }

  readonly #onShutdown = (): void => {
    void this.stop();
  };

  /** Ends every registration (without onDeviceLost: the gateway, not the devices, went away), closes the socket. */
  stop(): Promise<void> {
    if (this.#state === "stopped" && this.#starting === undefined) return this.#stopping ?? Promise.resolve();
    this.#stopping ??= this.#stop().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    try {
      await this.#starting;
    } catch {
      // a failed start has nothing more to release than what follows
    }
    this.#setState("stopping");
    this.#ctx.signal.removeEventListener("abort", this.#onShutdown);
    for (const reg of this.#byEndpoint.values()) this.#end(reg);
    this.#byEndpoint.clear();
    this.#byId.clear();
    const endpoint = this.#endpoint;
    this.#endpoint = undefined;
    await endpoint?.close().catch(() => undefined);
    this.#setState("stopped");
  }

  #setState(state: DriverState): void {
    if (this.#state === state) return;
    this.#state = state;
    try {
      this.#ctx.onState(state);
    } catch (e) {
      this.#ctx.log.error("onState threw", { error: e instanceof Error ? e.message : String(e) });
    }
  }

  // ---- registration interface (LwM2M 1.1 Core 6.2, Transport 6.5) --------------------------------

  #handle(req: IncomingRequest): CoapResponse {
    const [first, second, ...rest] = req.path;
    if (first === ".well-known" && second === "core" && rest.length === 0 && req.method === "GET") {
      return {
        code: "2.05",
        contentFormat: CONTENT_FORMAT.LINK_FORMAT,
        payload: Buffer.from(formatLinks([{ uri: "/rd", attributes: { rt: "core.rd" } }])),
      };
    }
    if (first !== "rd" || rest.length > 0) return { code: "4.04" };
    if (second === undefined) {
      if (req.method !== "POST") return { code: "4.05" };
      return this.#register(req);
    }
    const reg = this.#byId.get(second);
    if (reg === undefined) return { code: "4.04" };
    if (req.method === "POST") return this.#update(reg, req);
    if (req.method === "DELETE") {
      this.#deregister(reg, "de-registered");
      return { code: "2.02" };
    }
    return { code: "4.05" };
  }

  #register(req: IncomingRequest): CoapResponse {
    const q = queryMap(req.query);
    const ep = q.get("ep");
    if (ep === undefined || ep === "" || ep.length > 256 || /[\s/]/.test(ep)) return { code: "4.00" };
    const lt = q.has("lt") ? Number(q.get("lt")) : DEFAULT_LIFETIME_S;
    if (!Number.isInteger(lt) || lt <= 0) return { code: "4.00" };
    let objects: number[][];
    try {
      objects = registeredObjects(parseLinks(req.payload.toString("utf8")));
    } catch (e) {
      this.#ctx.log.warn("registration with a malformed link-format payload", {
        ep,
        length: req.payload.length,
        head: req.payload.subarray(0, 16).toString("hex"),
        error: e instanceof Error ? e.message : String(e),
      });
      return { code: "4.00" };
    }
    const old = this.#byEndpoint.get(ep);
    if (old !== undefined) {
      this.#end(old);
      this.#byId.delete(old.id);
      this.#byEndpoint.delete(ep);
    } else if (this.#byEndpoint.size >= (this.#config.maxRegistrations ?? 100_000)) {
      return { code: "5.03" };
    }
    const id = (this.#nextId++).toString(36);
    const reg: Registration = {
      id,
      endpoint: ep,
      peer: req.from,
      lifetimeS: lt,
      binding: q.get("b") ?? "U",
      version: q.get("lwm2m") ?? "1.0",
      objects,
      registeredAt: Date.now(),
      expiry: undefined,
      observation: undefined,
      active: 0,
      waiting: [],
      ended: new AbortController(),
    };
    this.#byEndpoint.set(ep, reg);
    this.#byId.set(id, reg);
    this.#arm(reg);
    this.#ctx.log.debug(
      () => `registered ${ep} as /rd/${id} from ${req.from.address}:${req.from.port}, lifetime ${lt} s`,
    );
    setImmediate(() => {
      void this.#afterRegistration(reg);
    });
    return { code: "2.01", locationPath: ["rd", id] };
  }

  #update(reg: Registration, req: IncomingRequest): CoapResponse {
    const q = queryMap(req.query);
    if (q.has("lt")) {
      const lt = Number(q.get("lt"));
      if (!Number.isInteger(lt) || lt <= 0) return { code: "4.00" };
      reg.lifetimeS = lt;
    }
    const b = q.get("b");
    if (b !== undefined) reg.binding = b;
    if (req.payload.length > 0) {
      try {
        reg.objects = registeredObjects(parseLinks(req.payload.toString("utf8")));
      } catch {
        return { code: "4.00" };
      }
    }
    reg.peer = req.from;
    this.#arm(reg);
    return { code: "2.04" };
  }

  #deregister(reg: Registration, reason: string): void {
    if (this.#byEndpoint.get(reg.endpoint) !== reg) return;
    this.#end(reg);
    this.#byEndpoint.delete(reg.endpoint);
    this.#byId.delete(reg.id);
    this.#ctx.log.debug(() => `${reg.endpoint}: ${reason}`);
    try {
      this.#ctx.onDeviceLost(
        { transport: "coap", address: reg.endpoint },
        new GatewayError(`LwM2M client ${reg.endpoint} ${reason}`, ErrorCode.Driver_LinkLost, {
          context: { reason },
        }),
      );
    } catch (e) {
      this.#ctx.log.error("onDeviceLost threw", { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** (Re)starts the lifetime timer. */
  #arm(reg: Registration): void {
    clearTimeout(reg.expiry);
    reg.expiry = setTimeout(
      () => {
        this.#deregister(reg, "lifetime expired");
      },
      Math.min(MAX_TIMER_MS, reg.lifetimeS * 1000),
    );
  }

  #end(reg: Registration): void {
    clearTimeout(reg.expiry);
    reg.expiry = undefined;
    reg.observation?.cancel();
    reg.observation = undefined;
    reg.ended.abort(new GatewayError(`${reg.endpoint} is no longer registered`, ErrorCode.Driver_Stopped));
    for (const w of reg.waiting.splice(0)) w();
  }

  /** Reads (and observes) /3/0, then reports the device with its DevInfo. */
  async #afterRegistration(reg: Registration): Promise<void> {
    const endpoint = this.#endpoint;
    if (endpoint === undefined || reg.ended.signal.aborted) return;
    const report = (info?: Record<string, string>): void => {
      if (this.#byEndpoint.get(reg.endpoint) !== reg) return;
      try {
        this.#ctx.onDeviceSeen({ transport: "coap", address: reg.endpoint }, info);
      } catch (e) {
        this.#ctx.log.error("onDeviceSeen threw", { error: e instanceof Error ? e.message : String(e) });
      }
    };
    const signal = AbortSignal.any([
      reg.ended.signal,
      AbortSignal.timeout(this.#config.devInfoTimeoutMs ?? DEFAULT_DEVINFO_TIMEOUT_MS),
    ]);
    const req = { path: ["3", "0"], accept: CONTENT_FORMAT.SENML_JSON };
    try {
      let response: CoapResponse;
      if (this.#config.observeDevInfo ?? true) {
        const observation = await this.#slot(reg, signal, () =>
          endpoint.observe(
            reg.peer,
            req,
            (n) => {
              const info = this.#devInfo(n);
              if (info !== undefined) report(info);
            },
            signal,
          ),
        );
        if (isAborted(reg.ended.signal)) observation.cancel();
        else reg.observation = observation;
        response = observation.response;
      } else {
        response = await this.#slot(reg, signal, () =>
          endpoint.request(reg.peer, { ...req, method: "GET" }, { signal }),
        );
      }
      report(this.#devInfo(response));
    } catch (e) {
      this.#ctx.log.debug(
        () => `${reg.endpoint}: no DevInfo after registration: ${e instanceof Error ? e.message : String(e)}`,
      );
      report();
    }
  }

  #devInfo(response: CoapResponse): Record<string, string> | undefined {
    if (!response.code.startsWith("2.")) return undefined;
    try {
      return devInfoOf(instanceValues([3, 0], response));
    } catch (e) {
      this.#ctx.log.warn("a /3/0 read that does not decode", {
        error: e instanceof Error ? e.message : String(e),
      });
      return undefined;
    }
  }

  /** Runs `fn` when the endpoint has a free exchange slot (NSTART). */
  async #slot<T>(reg: Registration, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const limit = this.#config.exchangesPerEndpoint ?? NSTART;
    while (reg.active >= limit) {
      if (signal.aborted) throw signal.reason;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          signal.removeEventListener("abort", wake);
          const i = reg.waiting.indexOf(wake);
          if (i >= 0) reg.waiting.splice(i, 1);
          resolve();
        };
        reg.waiting.push(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
    if (signal.aborted) throw signal.reason;
    reg.active++;
    try {
      return await fn();
    } finally {
      reg.active--;
      reg.waiting.shift()?.();
    }
  }

  // ---- execute ------------------------------------------------------------------------------------

  async execute(
    device: DeviceAddress,
    commands: readonly Command[],
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal },
  ): Promise<AdaptedOutcome> {
    const reg = this.#byEndpoint.get(device.address);
    const endpoint = this.#endpoint;
    if (this.#state !== "ready" || endpoint === undefined) {
      return { kind: "failed", status: 503, reason: "the coap driver is not running" };
    }
    if (reg === undefined)
      return { kind: "failed", status: 503, reason: `${device.address} is not registered` };
    if (options.signal?.aborted === true) return { kind: "failed", status: 514, reason: "cancelled" };
    const deadline = new AbortController();
    const timer = setTimeout(
      () => {
        deadline.abort(new DeviceSilent(`no answer from ${device.address} within ${options.timeoutMs} ms`));
      },
      Math.max(0, options.timeoutMs - 10),
    );
    const signals = [deadline.signal, reg.ended.signal];
    if (options.signal !== undefined) signals.push(options.signal);
    const signal = AbortSignal.any(signals);
    try {
      const results: DeviceCommandResult[] = [];
      for (const c of commands) results.push(await this.#command(endpoint, reg, c, signal));
      return { kind: "replied", results };
    } catch (e) {
      if (isAborted(options.signal)) return { kind: "failed", status: 514, reason: "cancelled" };
      if (reg.ended.signal.aborted)
        return { kind: "failed", status: 503, reason: `${device.address} is no longer registered` };
      if (e instanceof DeviceSilent || deadline.signal.aborted)
        return { kind: "failed", status: 504, reason: e instanceof Error ? e.message : "timeout" };
      if (e instanceof GatewayError && e.code === ErrorCode.Driver_Unreachable)
        return { kind: "failed", status: 504, reason: e.message };
      if (e instanceof GatewayError && e.code === ErrorCode.Driver_Stopped)
        return { kind: "failed", status: 503, reason: e.message };
      return { kind: "failed", status: 502, reason: e instanceof Error ? e.message : String(e) };
    } finally {
      clearTimeout(timer);
    }
  }

  async #command(
    endpoint: CoapEndpoint,
    reg: Registration,
    c: Command,
    signal: AbortSignal,
  ): Promise<DeviceCommandResult> {
    switch (c.kind) {
      case "Sequence": {
        const inner: DeviceCommandResult[] = [];
        for (const sub of c.commands) inner.push(await this.#command(endpoint, reg, sub, signal));
        return { status: 200, items: [], inner };
      }
      case "Atomic":
        // LwM2M has no transaction: all-or-nothing cannot be promised, so the optional feature is refused.
        return { status: 406, items: [], inner: [] };
      case "Get":
      case "Replace":
      case "Add":
      case "Delete":
      case "Exec": {
        let status = 200;
        const items: Item[] = [];
        for (const item of c.items) {
          const r = await this.#item(endpoint, reg, c.kind, item, signal);
          if (r.item !== undefined) items.push(r.item);
          if (r.status !== 200 && status === 200) status = r.status;
        }
        return { status, items, inner: [] };
      }
      case "Copy":
      case "Alert":
        return { status: 406, items: [], inner: [] };
      case "Status":
      case "Results":
        return { status: 400, items: [], inner: [] };
    }
  }

  async #item(
    endpoint: CoapEndpoint,
    reg: Registration,
    kind: "Get" | "Replace" | "Add" | "Delete" | "Exec",
    item: Item,
    signal: AbortSignal,
  ): Promise<{ status: number; item?: Item }> {
    const uri = item.target?.locUri;
    const path = uri === undefined ? undefined : dmUriToPath(uri);
    if (uri === undefined || path === undefined || path.length === 0) return { status: 404 };
    const req = toCoapRequest(kind, path, item);
    if (typeof req === "number") return { status: req };
    const response = await this.#slot(reg, signal, () => endpoint.request(reg.peer, req, { signal }));
    const status = coapCodeToDmStatus(response.code);
    if (kind !== "Get" || status !== 200) return { status };
    try {
      return { status, item: resultItem(uri, path, response) };
    } catch (e) {
      this.#ctx.log.warn("a Read answer that does not decode", {
        ep: reg.endpoint,
        path: pathToString(path),
        error: e instanceof Error ? e.message : String(e),
      });
      return { status: 500 };
    }
  }

  /** Discover (LwM2M Core 6.3.5): the links of an object, instance or resource; undefined when refused. */
  async discover(
    device: DeviceAddress,
    path: Lwm2mPath,
    options: { readonly timeoutMs: number },
  ): Promise<Link[] | undefined> {
    const reg = this.#byEndpoint.get(device.address);
    const endpoint = this.#endpoint;
    if (reg === undefined || endpoint === undefined) return undefined;
    const signal = AbortSignal.any([reg.ended.signal, AbortSignal.timeout(options.timeoutMs)]);
    const r = await this.#slot(reg, signal, () =>
      endpoint.request(
        reg.peer,
        { method: "GET", path: path.map(String), accept: CONTENT_FORMAT.LINK_FORMAT },
        { signal },
      ),
    );
    if (r.code !== "2.05") return undefined;
    return parseLinks(Buffer.from(r.payload ?? []).toString("utf8"));
  }
}

/** Makes the driver (registry.ts). */
export const createCoapDriver: AdaptationDriverFactory<CoapDriverConfig> = (config, ctx) =>
  new CoapDriver(config, ctx);

// ---- DM <-> CoAP ----------------------------------------------------------------------------------

function toCoapRequest(
  kind: "Get" | "Replace" | "Add" | "Delete" | "Exec",
  path: Lwm2mPath,
  item: Item,
): CoapRequest | number {
  const p = path.map(String);
  switch (kind) {
    case "Get":
      return { method: "GET", path: p };
    case "Replace": {
      if (path.length < 3) return 405; // writing whole instances from DM data is not mapped
      const body = dataBytes(item);
      const binary = isBinary(item);
      return {
        method: "PUT",
        path: p,
        contentFormat: binary ? CONTENT_FORMAT.OPAQUE : CONTENT_FORMAT.TEXT,
        payload: body,
      };
    }
    case "Exec": {
      if (path.length !== 3) return 405;
      const body = dataBytes(item);
      return body.length > 0
        ? { method: "POST", path: p, contentFormat: CONTENT_FORMAT.TEXT, payload: body }
        : { method: "POST", path: p };
    }
    case "Delete":
      if (path.length !== 2) return 405; // LwM2M deletes object instances only
      return { method: "DELETE", path: p };
    case "Add": {
      const [obj, inst, res] = path;
      if (obj === undefined || inst === undefined || path.length > 3) return 405;
      const resources: Tlv[] =
        res === undefined ? [] : [{ kind: "resource", id: res, value: dataBytes(item) }];
      return {
        method: "POST",
        path: [String(obj)],
        contentFormat: CONTENT_FORMAT.LWM2M_TLV,
        payload: encodeTlv([{ kind: "objectInstance", id: inst, children: resources }]),
      };
    }
  }
}

function isBinary(item: Item): boolean {
  const f = item.meta?.format;
  return item.data?.kind === "opaque" || f === "bin" || f === "b64";
}

function dataBytes(item: Item): Uint8Array {
  const d = item.data;
  if (d === undefined) return new Uint8Array(0);
  if (d.kind === "opaque") return d.bytes;
  if (d.kind === "text")
    return item.meta?.format === "b64"
      ? new Uint8Array(Buffer.from(d.text, "base64"))
      : new TextEncoder().encode(d.text);
  return new Uint8Array(0);
}

/** The Results item of a Get from the device's Read answer. */
function resultItem(uri: string, path: Lwm2mPath, response: CoapResponse): Item {
  const body = Buffer.from(response.payload ?? []);
  const source = { locUri: uri };
  if (path.length >= 3) {
    const info = resourceInfo(path);
    const cf = response.contentFormat;
    if (cf === CONTENT_FORMAT.OPAQUE) {
      return { source, meta: { format: "bin" }, data: { kind: "opaque", bytes: new Uint8Array(body) } };
    }
    if (cf === CONTENT_FORMAT.LWM2M_TLV || cf === CONTENT_FORMAT.SENML_JSON) {
      const v = instanceValues(path.slice(0, 2), response).get(pathToString(path));
      return { source, meta: { format: dmFormatOf(info?.type) }, data: text(v ?? "") };
    }
    return { source, meta: { format: dmFormatOf(info?.type) }, data: text(body.toString("utf8")) };
  }
  // An object or an instance: its children, DM style.
  const names = new Set<string>();
  const values = instanceValues(path, response);
  for (const k of values.keys()) {
    const child = k.split("/")[path.length + 1];
    if (child !== undefined) names.add(child);
  }
  return { source, meta: { format: "node" }, data: text([...names].join("/")) };
}

function text(t: string): Data {
  return { kind: "text", text: t };
}

/**
 * Path -> value text of a TLV or SenML answer to a Read of `base` (an object or an instance).
 * @throws GatewayError(Codec_*) for a malformed body.
 */
export function instanceValues(base: Lwm2mPath, response: CoapResponse): Map<string, string> {
  const body = response.payload ?? new Uint8Array(0);
  const out = new Map<string, string>();
  if (response.contentFormat === CONTENT_FORMAT.SENML_JSON) {
    for (const r of decodeSenml(body)) {
      const v = r.value;
      out.set(
        r.name.replace(/\/$/, ""),
        v instanceof Uint8Array ? Buffer.from(v).toString("base64") : String(v ?? ""),
      );
    }
    return out;
  }
  if (response.contentFormat === CONTENT_FORMAT.LWM2M_TLV) {
    const walk = (entries: readonly Tlv[], prefix: readonly number[]): void => {
      for (const e of entries) {
        const here = [...prefix, e.id];
        if ("children" in e) walk(e.children, here);
        else out.set(pathToString(here), tlvText(here, e.value));
      }
    };
    const entries = decodeTlv(body);
    // A Read of an instance answers its resources at the top level; of an object, instances.
    walk(
      entries,
      base.length === 2 && entries.every((e) => e.kind !== "objectInstance") ? base : base.slice(0, 1),
    );
    return out;
  }
  return out;
}

function tlvText(path: readonly number[], value: Uint8Array): string {
  const info = resourceInfo(path.slice(0, 3));
  switch (info?.type) {
    case "integer":
    case "time":
      if ([1, 2, 4, 8].includes(value.length)) {
        let x = 0n;
        for (const b of value) x = (x << 8n) | BigInt(b);
        return String(BigInt.asIntN(value.length * 8, x));
      }
      return "";
    case "boolean":
      return value[0] === 1 ? "true" : "false";
    case "opaque":
      return Buffer.from(value).toString("base64");
    case "float":
    case "objlnk":
    case "none":
    case "string":
    case undefined:
      return readTlvString(value);
  }
}

/** Read through a call so that narrowing from an earlier check does not stick (the signal may abort meanwhile). */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function queryMap(query: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const q of query) {
    const i = q.indexOf("=");
    if (i < 0) m.set(q, "");
    else m.set(q.slice(0, i), q.slice(i + 1));
  }
  return m;
}
