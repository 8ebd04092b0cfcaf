/**
 * A CoAP endpoint (RFC 7252 messages, RFC 7959 block-wise, RFC 7641 observe, RFC 9175 Request-Tag) on
 * one UDP socket, serving requests and making them from the same socket: the LwM2M server must reach a
 * client from the address the client registered with (NAT bindings), and a client simulator is one
 * socket per endpoint. Datagram framing is coap-packet's (node-coap's codec); the message layer is ours:
 *
 *   socket --datagram--> parse --+-- empty ACK/RST --> the pending exchange (stop retransmitting / fail)
 *                                +-- request  --> dedup (address:port:msgId) --> Block1 reassembly
 *                                |                 (address:port + path + Request-Tag) --> handler
 *                                |                 --> Block2 slicing --> piggybacked response
 *                                +-- response --> the exchange of its token | an observation (notify)
 *   request() --> Block1 upload (one Request-Tag, one token) --> CON with retransmission --> Block2
 *                 download --> CoapResponse
 *
 * Why not node-coap's Server + Agent: its server reassembles Block1 keyed on the token, which fails
 * against libcoap clients (a new token per block, tied by Request-Tag: platform.md 4), and server and
 * agent would need two sockets or reaching into private fields to share one. Timers: one per
 * exchange in flight, none otherwise (caches expire lazily), so `close()` leaves nothing behind.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { randomBytes } from "node:crypto";
import { generate, parse, type ParsedPacket } from "coap-packet";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import { SILENT_LOGGER, type Logger } from "../../src/core/log.js";
import {
  ACK_RANDOM_FACTOR,
  ACK_TIMEOUT_MS,
  BLOCK_SIZE,
  EXCHANGE_LIFETIME_MS,
  MAX_BLOCK1_BODY,
  MAX_DATAGRAM,
  MAX_RETRANSMIT,
  OPTION_REQUEST_TAG,
} from "./constants.js";

export interface Peer {
  readonly address: string;
  readonly port: number;
}

export type Method = "GET" | "POST" | "PUT" | "DELETE";

export interface CoapRequest {
  readonly method: Method;
  readonly path: readonly string[];
  readonly query?: readonly string[];
  readonly contentFormat?: number;
  readonly accept?: number;
  /** 0: register an observation, 1: deregister (RFC 7641). */
  readonly observe?: number;
  readonly payload?: Uint8Array;
}

export interface IncomingRequest extends CoapRequest {
  readonly from: Peer;
  readonly token: Buffer;
  readonly query: readonly string[];
  readonly payload: Buffer;
}

export interface CoapResponse {
  /** `2.05`, `4.04`... */
  readonly code: string;
  readonly contentFormat?: number;
  readonly payload?: Uint8Array;
  readonly locationPath?: readonly string[];
  readonly observe?: number;
}

export type RequestHandler = (request: IncomingRequest) => CoapResponse | Promise<CoapResponse>;

export interface EndpointOptions {
  /** Bind address; default 0.0.0.0. */
  readonly host?: string;
  /** UDP port; 0 (default) picks a free one. */
  readonly port?: number;
  readonly handler?: RequestHandler;
  /** A peer reset (RST) one of our non-confirmable messages (a notification the peer no longer wants). */
  readonly onReset?: (peer: Peer, messageId: number) => void;
  readonly log?: Logger;
  /** RFC 7252 ACK_TIMEOUT, ms (default 2000) and MAX_RETRANSMIT (default 4). */
  readonly ackTimeoutMs?: number;
  readonly maxRetransmit?: number;
  /** Block size for uploads and downloads, 16..1024 (default 1024). */
  readonly blockSize?: number;
  /** How long an exchange waits for a separate response after an empty ACK, ms (default 30000). */
  readonly separateResponseMs?: number;
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
  /** For an observe request: each notification after the first response. */
  readonly onNotify?: (response: CoapResponse) => void;
}

/** An established observation; `cancel()` forgets the token (the next notification is reset). */
export interface Observation {
  readonly response: CoapResponse;
  cancel(): void;
}

interface Exchange {
  readonly peer: Peer;
  readonly messageId: number;
  readonly tokenKey: string;
  timer: NodeJS.Timeout | undefined;
  settle(result: ParsedPacket | Error): void;
}

interface Block1State {
  parts: Buffer[];
  length: number;
  at: number;
}

const DEDUP_MAX = 20_000;
const BLOCK_CACHE_MS = 60_000;
const DEFAULT_SEPARATE_MS = 30_000;

export class CoapEndpoint {
  readonly #socket: Socket;
  readonly #o: EndpointOptions;
  readonly #log: Logger;
  #messageId = randomBytes(2).readUInt16BE(0);
  #token = randomBytes(4).readUInt32BE(0);
  readonly #byToken = new Map<string, Exchange>();
  readonly #byMessageId = new Map<number, Exchange>();
  readonly #observations = new Map<string, { peer: Peer; onNotify: (r: CoapResponse) => void }>();
  /** address:port:msgId -> the response sent (undefined while the handler runs), with its time. */
  readonly #dedup = new Map<string, { at: number; reply: Buffer | undefined }>();
  readonly #block1 = new Map<string, Block1State>();
  readonly #block2 = new Map<string, { at: number; response: CoapResponse }>();
  #closed = false;

  private constructor(socket: Socket, options: EndpointOptions) {
    this.#socket = socket;
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
  }

  /** Binds a UDP socket. @throws GatewayError(Driver_StartFailed) when the bind fails. */
  static async open(options: EndpointOptions = {}): Promise<CoapEndpoint> {
    const host = options.host ?? "0.0.0.0";
    const socket = createSocket({ type: host.includes(":") ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        socket.close();
        reject(
          new GatewayError(
            `coap: cannot bind ${host}:${options.port ?? 0}: ${e.message}`,
            ErrorCode.Driver_StartFailed,
            {
              cause: e,
            },
          ),
        );
      };
      socket.once("error", onError);
      socket.bind(options.port ?? 0, host, () => {
        socket.off("error", onError);
        resolve();
      });
    });
    const endpoint = new CoapEndpoint(socket, options);
    socket.on("message", (msg, rinfo) => {
      endpoint.#onDatagram(msg, rinfo);
    });
    socket.on("error", (e) => {
      endpoint.#log.warn("coap socket error", { error: e.message });
    });
    return endpoint;
  }

  get port(): number {
    return this.#socket.address().port;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops every exchange (they reject Driver_Stopped) and closes the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const stopped = new GatewayError("coap endpoint closed", ErrorCode.Driver_Stopped);
    for (const x of [...this.#byToken.values()]) x.settle(stopped);
    this.#observations.clear();
    this.#block1.clear();
    this.#block2.clear();
    this.#dedup.clear();
    await new Promise<void>((resolve) => {
      this.#socket.close(() => {
        resolve();
      });
    });
  }

  /**
   * Sends a request and resolves with the whole response (Block1 upload and Block2 download done
   * here). @throws GatewayError(Driver_Unreachable) when retransmissions ran out or the peer reset;
   * the signal's reason when aborted; GatewayError(Driver_Stopped) when the endpoint closed.
   */
  async request(peer: Peer, req: CoapRequest, options: RequestOptions = {}): Promise<CoapResponse> {
    return (await this.#request(peer, req, options)).response;
  }

  async #request(
    peer: Peer,
    req: CoapRequest,
    options: RequestOptions,
  ): Promise<{ response: CoapResponse; token: Buffer }> {
    const token = this.#nextToken();
    const size = this.#o.blockSize ?? BLOCK_SIZE;
    const szx = Math.log2(size) - 4;
    const base = requestOptions(req);
    const payload = Buffer.from(req.payload ?? new Uint8Array(0));
    let res: ParsedPacket;
    if (payload.length > size) {
      const tag = randomBytes(4);
      let num = 0;
      for (;;) {
        const chunk = payload.subarray(num * size, (num + 1) * size);
        const more = (num + 1) * size < payload.length;
        res = await this.#exchange(
          peer,
          req.method,
          token,
          [
            ...base,
            { name: "Block1", value: uint(blockValue(num, more, szx)) },
            { name: OPTION_REQUEST_TAG, value: tag },
            ...(num === 0 ? [{ name: "Size1", value: uint(payload.length) }] : []),
          ],
          chunk,
          options.signal,
        );
        if (!more || res.code !== "2.31") break;
        // The server may ask for smaller blocks (RFC 7959 2.5); we keep ours for simplicity unless it does.
        const b1 = optionBlock(res, "Block1");
        if (b1 !== undefined && b1.szx < szx) {
          throw new GatewayError(
            "coap: the peer asked for smaller Block1 blocks",
            ErrorCode.Driver_Unreachable,
          );
        }
        num++;
      }
    } else {
      res = await this.#exchange(peer, req.method, token, base, payload, options.signal);
    }
    // Block2 download.
    let body = res.payload;
    let b2 = optionBlock(res, "Block2");
    if (b2 !== undefined && b2.more) {
      const parts = [res.payload];
      const noObserve = base.filter((o) => o.name !== "Observe");
      while (b2?.more === true) {
        const next = b2.num + 1;
        const r = await this.#exchange(
          peer,
          req.method,
          this.#nextToken(),
          [...noObserve, { name: "Block2", value: uint(blockValue(next, false, b2.szx)) }],
          Buffer.alloc(0),
          options.signal,
        );
        if (!r.code.startsWith("2.")) {
          res = r;
          break;
        }
        parts.push(r.payload);
        b2 = optionBlock(r, "Block2");
        if (parts.length > MAX_BLOCK1_BODY / 16)
          throw new GatewayError("coap: Block2 body too large", ErrorCode.Driver_Unreachable);
      }
      body = Buffer.concat(parts);
    }
    const response = toResponse(res, body);
    if (req.observe === 0 && options.onNotify !== undefined && response.observe !== undefined) {
      this.#observations.set(token.toString("hex"), { peer, onNotify: options.onNotify });
    }
    return { response, token };
  }

  /** An Observe request: resolves once the first response came; notifications go to `onNotify`. */
  async observe(
    peer: Peer,
    req: Omit<CoapRequest, "observe" | "method">,
    onNotify: (r: CoapResponse) => void,
    signal?: AbortSignal,
  ): Promise<Observation> {
    const { response, token } = await this.#request(
      peer,
      { ...req, method: "GET", observe: 0 },
      signal === undefined ? { onNotify } : { onNotify, signal },
    );
    const key = token.toString("hex");
    return {
      response,
      cancel: () => {
        this.#observations.delete(key);
      },
    };
  }

  /** Sends a notification of an observation (NON). Returns its message id (for `onReset`). */
  notify(peer: Peer, token: Buffer, sequence: number, response: CoapResponse): number {
    const messageId = this.#nextMessageId();
    const options = responseOptions(response);
    options.push({ name: "Observe", value: uint(sequence & 0xffffff) });
    this.#send(
      peer,
      generate(
        {
          code: response.code,
          confirmable: false,
          messageId,
          token,
          options,
          payload: Buffer.from(response.payload ?? []),
        },
        MAX_DATAGRAM + 64,
      ),
    );
    return messageId;
  }

  // ---- outgoing exchanges -------------------------------------------------------------------------

  #nextToken(): Buffer {
    this.#token = (this.#token + 1) >>> 0;
    return tokenBuffer(this.#token);
  }

  #nextMessageId(): number {
    this.#messageId = (this.#messageId + 1) & 0xffff;
    return this.#messageId;
  }

  #exchange(
    peer: Peer,
    code: string,
    token: Buffer,
    options: CoapOption[],
    payload: Buffer,
    signal: AbortSignal | undefined,
  ): Promise<ParsedPacket> {
    if (this.#closed)
      return Promise.reject(new GatewayError("coap endpoint closed", ErrorCode.Driver_Stopped));
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    const messageId = this.#nextMessageId();
    const tokenKey = token.toString("hex");
    const buf = generate({ code, confirmable: true, messageId, token, options, payload }, MAX_DATAGRAM + 64);
    return new Promise<ParsedPacket>((resolve, reject) => {
      const ackTimeout = this.#o.ackTimeoutMs ?? ACK_TIMEOUT_MS;
      const maxRetransmit = this.#o.maxRetransmit ?? MAX_RETRANSMIT;
      let wait = ackTimeout * (1 + Math.random() * (ACK_RANDOM_FACTOR - 1));
      let tries = 0;
      const onAbort = (): void => {
        x.settle(abortReason(signal));
      };
      const x: Exchange = {
        peer,
        messageId,
        tokenKey,
        timer: undefined,
        settle: (result) => {
          clearTimeout(x.timer);
          x.timer = undefined;
          if (this.#byToken.get(tokenKey) === x) this.#byToken.delete(tokenKey);
          if (this.#byMessageId.get(messageId) === x) this.#byMessageId.delete(messageId);
          signal?.removeEventListener("abort", onAbort);
          if (result instanceof Error) reject(result);
          else resolve(result);
        },
      };
      const retransmit = (): void => {
        if (tries >= maxRetransmit) {
          x.settle(
            new GatewayError(
              `coap: no answer from ${peer.address}:${peer.port} after ${tries + 1} transmissions`,
              ErrorCode.Driver_Unreachable,
              { context: { peer: `${peer.address}:${peer.port}` } },
            ),
          );
          return;
        }
        tries++;
        this.#send(peer, buf);
        wait *= 2;
        x.timer = setTimeout(retransmit, wait);
      };
      this.#byToken.set(tokenKey, x);
      this.#byMessageId.set(messageId, x);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#send(peer, buf);
      x.timer = setTimeout(retransmit, wait);
    });
  }

  #send(peer: Peer, buf: Buffer): void {
    if (this.#closed) return;
    this.#socket.send(buf, peer.port, peer.address, (e) => {
      if (e !== null && !this.#closed)
        this.#log.debug(() => `coap send to ${peer.address}:${peer.port} failed: ${e.message}`);
    });
  }

  // ---- incoming -----------------------------------------------------------------------------------

  #onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed) return;
    const peer: Peer = { address: rinfo.address, port: rinfo.port };
    let packet: ParsedPacket;
    try {
      packet = parse(msg);
    } catch (e) {
      this.#log.warn("coap: malformed datagram discarded", {
        from: `${peer.address}:${peer.port}`,
        length: msg.length,
        head: msg.subarray(0, 16).toString("hex"),
        error: e instanceof Error ? e.message : String(e),
      });
      return;
    }
    this.#log.trace(() => `« ${peer.address}:${peer.port} ${msg.toString("hex")}`);
    if (packet.code === "0.00") {
      this.#onEmpty(packet, peer);
    } else if (packet.code.startsWith("0.")) {
      this.#onRequest(packet, peer);
    } else {
      this.#onResponse(packet, peer);
    }
  }

  #onEmpty(packet: ParsedPacket, peer: Peer): void {
    const x = this.#byMessageId.get(packet.messageId);
    if (packet.ack) {
      if (x !== undefined && samePeer(x.peer, peer)) {
        // Separate response to come (RFC 7252 5.2.2): stop retransmitting, wait a bounded time.
        clearTimeout(x.timer);
        this.#byMessageId.delete(packet.messageId);
        x.timer = setTimeout(() => {
          x.settle(new GatewayError("coap: the separate response never came", ErrorCode.Driver_Unreachable));
        }, this.#o.separateResponseMs ?? DEFAULT_SEPARATE_MS);
      }
    } else if (packet.reset) {
      if (x !== undefined && samePeer(x.peer, peer)) {
        x.settle(
          new GatewayError(
            `coap: ${peer.address}:${peer.port} reset the request`,
            ErrorCode.Driver_Unreachable,
          ),
        );
      } else {
        this.#o.onReset?.(peer, packet.messageId);
      }
    } else if (packet.confirmable) {
      // CoAP ping (RFC 7252 4.3).
      this.#send(
        peer,
        generate({
          code: "0.00",
          reset: true,
          confirmable: false,
          messageId: packet.messageId,
          token: Buffer.alloc(0),
        }),
      );
    }
  }

  #onResponse(packet: ParsedPacket, peer: Peer): void {
    const key = packet.token.toString("hex");
    const x = this.#byToken.get(key);
    if (packet.confirmable) {
      this.#send(
        peer,
        generate({
          code: "0.00",
          ack: true,
          confirmable: false,
          messageId: packet.messageId,
          token: Buffer.alloc(0),
        }),
      );
    }
    if (x !== undefined && samePeer(x.peer, peer)) {
      x.settle(packet);
      return;
    }
    const obs = this.#observations.get(key);
    if (obs !== undefined && samePeer(obs.peer, peer)) {
      try {
        obs.onNotify(toResponse(packet, packet.payload));
      } catch (e) {
        this.#log.error("coap: a notification listener threw", {
          error: e instanceof Error ? e.message : String(e),
        });
      }
      return;
    }
    if (!packet.ack) {
      // Unknown token: reset, which also ends an observation we no longer hold (RFC 7641 3.6).
      this.#send(
        peer,
        generate({
          code: "0.00",
          reset: true,
          confirmable: false,
          messageId: packet.messageId,
          token: Buffer.alloc(0),
        }),
      );
    }
  }

  #onRequest(packet: ParsedPacket, peer: Peer): void {
    const now = Date.now();
    const dedupKey = `${peer.address}:${peer.port}:${packet.messageId}`;
    const seen = this.#dedup.get(dedupKey);
    if (seen !== undefined && now - seen.at < EXCHANGE_LIFETIME_MS) {
      if (seen.reply !== undefined && packet.confirmable) this.#send(peer, seen.reply);
      return;
    }
    const entry: { at: number; reply: Buffer | undefined } = { at: now, reply: undefined };
    this.#dedup.delete(dedupKey);
    this.#dedup.set(dedupKey, entry);
    expire(this.#dedup, now, EXCHANGE_LIFETIME_MS, DEDUP_MAX);
    void this.#serve(packet, peer).then(
      (response) => {
        this.#reply(packet, peer, response, entry);
      },
      (e: unknown) => {
        this.#log.error("coap: a request handler threw", {
          error: e instanceof Error ? e.message : String(e),
        });
        this.#reply(packet, peer, { code: "5.00" }, entry);
      },
    );
  }

  #reply(
    packet: ParsedPacket,
    peer: Peer,
    response: CoapResponse & { extra?: CoapOption[] },
    entry: { reply: Buffer | undefined },
  ): void {
    if (this.#closed) return;
    const options = [...responseOptions(response), ...(response.extra ?? [])];
    let buf: Buffer;
    try {
      buf = generate(
        {
          code: response.code,
          confirmable: false,
          ack: packet.confirmable,
          messageId: packet.confirmable ? packet.messageId : this.#nextMessageId(),
          token: packet.token,
          options,
          payload: Buffer.from(response.payload ?? []),
        },
        MAX_DATAGRAM + 64,
      );
    } catch (e) {
      this.#log.error("coap: response does not encode", {
        error: e instanceof Error ? e.message : String(e),
      });
      buf = generate({
        code: "5.00",
        ack: packet.confirmable,
        confirmable: false,
        messageId: packet.messageId,
        token: packet.token,
      });
    }
    entry.reply = buf;
    this.#send(peer, buf);
  }

  async #serve(packet: ParsedPacket, peer: Peer): Promise<CoapResponse & { extra?: CoapOption[] }> {
    const handler = this.#o.handler;
    if (handler === undefined) return { code: "4.04" };
    const req = toRequest(packet, peer);
    if (req === undefined) return { code: "4.05" };
    const pathKey = `${peer.address}:${peer.port}|${req.method}|${req.path.join("/")}|${req.query.join("&")}`;
    const now = Date.now();
    // Block1: reassemble keyed on the peer, the path and the Request-Tag, never the token (platform.md 4).
    const b1 = optionBlock(packet, "Block1");
    if (b1 !== undefined) {
      const tag = packet.options.find((o) => o.name === OPTION_REQUEST_TAG)?.value.toString("hex") ?? "";
      const key = `${pathKey}|${tag}`;
      const size = 2 ** (b1.szx + 4);
      let state = this.#block1.get(key);
      if (b1.num === 0) {
        state = { parts: [], length: 0, at: now };
        this.#block1.delete(key);
        this.#block1.set(key, state);
        expire(this.#block1, now, BLOCK_CACHE_MS, 1000);
      }
      if (state === undefined || state.length !== b1.num * size) {
        return { code: "4.08", extra: [] };
      }
      if (state.length + packet.payload.length > MAX_BLOCK1_BODY) {
        this.#block1.delete(key);
        return { code: "4.13", extra: [{ name: "Size1", value: uint(MAX_BLOCK1_BODY) }] };
      }
      state.parts.push(packet.payload);
      state.length += packet.payload.length;
      state.at = now;
      const echo = { name: "Block1", value: uint(blockValue(b1.num, b1.more, b1.szx)) };
      if (b1.more) return { code: "2.31", extra: [echo] };
      this.#block1.delete(key);
      const response = await handler({ ...req, payload: Buffer.concat(state.parts) });
      return this.#sliced(response, packet, pathKey, now, [echo]);
    }
    const b2 = optionBlock(packet, "Block2");
    if (b2 !== undefined && b2.num > 0) {
      const cached = this.#block2.get(pathKey);
      const response = cached?.response ?? (await handler(req));
      return this.#sliced(response, packet, pathKey, now, []);
    }
    return this.#sliced(await handler(req), packet, pathKey, now, []);
  }

  /** Cuts a large response into the requested Block2 (RFC 7959 2.4). */
  #sliced(
    response: CoapResponse,
    packet: ParsedPacket,
    pathKey: string,
    now: number,
    extra: CoapOption[],
  ): CoapResponse & { extra: CoapOption[] } {
    const body = response.payload ?? new Uint8Array(0);
    const asked = optionBlock(packet, "Block2");
    const ourSzx = Math.log2(this.#o.blockSize ?? BLOCK_SIZE) - 4;
    const szx = Math.min(asked?.szx ?? ourSzx, ourSzx);
    const size = 2 ** (szx + 4);
    if (body.length <= size && (asked === undefined || asked.num === 0)) return { ...response, extra };
    const num = asked?.num ?? 0;
    const chunk = body.subarray(num * size, (num + 1) * size);
    if (num * size >= body.length && num > 0) return { code: "4.02", extra };
    const more = (num + 1) * size < body.length;
    if (more) {
      this.#block2.delete(pathKey);
      this.#block2.set(pathKey, { at: now, response });
      expire(this.#block2, now, BLOCK_CACHE_MS, 1000);
    } else {
      this.#block2.delete(pathKey);
    }
    return {
      ...response,
      payload: chunk,
      extra: [
        ...extra,
        { name: "Block2", value: uint(blockValue(num, more, szx)) },
        ...(num === 0 ? [{ name: "Size2", value: uint(body.length) }] : []),
      ],
    };
  }
}

// ---- options --------------------------------------------------------------------------------------

interface CoapOption {
  name: string | number;
  value: Buffer;
}

/** A CoAP uint option value: the shortest big-endian bytes, none for 0 (RFC 7252 3.2). */
export function uint(n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  const bytes: number[] = [];
  let x = n;
  while (x > 0) {
    bytes.unshift(x & 0xff);
    x = Math.floor(x / 256);
  }
  return Buffer.from(bytes);
}

export function readUint(b: Buffer): number {
  let x = 0;
  for (const byte of b) x = x * 256 + byte;
  return x;
}

function blockValue(num: number, more: boolean, szx: number): number {
  return num * 16 + (more ? 8 : 0) + szx;
}

function optionBlock(
  packet: ParsedPacket,
  name: "Block1" | "Block2",
): { num: number; more: boolean; szx: number } | undefined {
  const o = packet.options.find((x) => x.name === name);
  if (o === undefined) return undefined;
  const v = readUint(o.value);
  const szx = v & 7;
  if (szx === 7) return undefined;
  return { num: Math.floor(v / 16), more: (v & 8) !== 0, szx };
}

function requestOptions(req: CoapRequest): CoapOption[] {
  const options: CoapOption[] = [];
  for (const p of req.path) options.push({ name: "Uri-Path", value: Buffer.from(p) });
  for (const q of req.query ?? []) options.push({ name: "Uri-Query", value: Buffer.from(q) });
  if (req.contentFormat !== undefined)
    options.push({ name: "Content-Format", value: uint(req.contentFormat) });
  if (req.accept !== undefined) options.push({ name: "Accept", value: uint(req.accept) });
  if (req.observe !== undefined) options.push({ name: "Observe", value: uint(req.observe) });
  return options;
}

function responseOptions(res: CoapResponse): CoapOption[] {
  const options: CoapOption[] = [];
  for (const p of res.locationPath ?? []) options.push({ name: "Location-Path", value: Buffer.from(p) });
  if (res.contentFormat !== undefined)
    options.push({ name: "Content-Format", value: uint(res.contentFormat) });
  if (res.observe !== undefined) options.push({ name: "Observe", value: uint(res.observe) });
  return options;
}

const METHODS: Readonly<Record<string, Method>> = {
  "0.01": "GET",
  "0.02": "POST",
  "0.03": "PUT",
  "0.04": "DELETE",
};

function toRequest(packet: ParsedPacket, from: Peer): IncomingRequest | undefined {
  const method = METHODS[packet.code];
  if (method === undefined) return undefined;
  const path: string[] = [];
  const query: string[] = [];
  let contentFormat: number | undefined;
  let accept: number | undefined;
  let observe: number | undefined;
  for (const o of packet.options) {
    if (o.name === "Uri-Path") path.push(o.value.toString("utf8"));
    else if (o.name === "Uri-Query") query.push(o.value.toString("utf8"));
    else if (o.name === "Content-Format") contentFormat = readUint(o.value);
    else if (o.name === "Accept") accept = readUint(o.value);
    else if (o.name === "Observe") observe = readUint(o.value);
  }
  return {
    method,
    path,
    query,
    from,
    token: packet.token,
    payload: packet.payload,
    ...(contentFormat !== undefined && { contentFormat }),
    ...(accept !== undefined && { accept }),
    ...(observe !== undefined && { observe }),
  };
}

function toResponse(packet: ParsedPacket, body: Buffer): CoapResponse {
  const locationPath: string[] = [];
  let contentFormat: number | undefined;
  let observe: number | undefined;
  for (const o of packet.options) {
    if (o.name === "Location-Path") locationPath.push(o.value.toString("utf8"));
    else if (o.name === "Content-Format") contentFormat = readUint(o.value);
    else if (o.name === "Observe") observe = readUint(o.value);
  }
  return {
    code: packet.code,
    payload: body,
    ...(locationPath.length > 0 && { locationPath }),
    ...(contentFormat !== undefined && { contentFormat }),
    ...(observe !== undefined && { observe }),
  };
}

function tokenBuffer(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

function samePeer(a: Peer, b: Peer): boolean {
  return a.port === b.port && normalise(a.address) === normalise(b.address);
}

function normalise(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

function abortReason(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new GatewayError("coap request aborted", ErrorCode.Driver_Stopped);
}

/** Drops entries older than `maxAgeMs` and beyond `maxSize` from the head of an insertion-ordered map. */
function expire<V extends { at: number }>(
  map: Map<string, V>,
  now: number,
  maxAgeMs: number,
  maxSize: number,
): void {
  for (const [k, v] of map) {
    if (map.size <= maxSize && now - v.at < maxAgeMs) break;
    map.delete(k);
  }
}
