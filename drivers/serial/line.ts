/**
 * OBEX over one byte link (I/O; the framing is in obex.ts): both roles on one serial line, as the
 * OMA DM OBEX binding needs them. The gateway is the OBEX server of the device's session (Connect,
 * Put of a DM message, Get of the answer) and the OBEX client of the notification (Connect, Put of
 * Package #0, Disconnect); the device simulator is the mirror image. Requests and responses use
 * disjoint codes, so one framer feeds both: requests go to the `ObexServer`, responses to the one
 * request in flight of the `ObexClient`.
 *
 *   ByteLink.readable -> ObexFramer -> request?  -> onRequest (ObexServer.handle, one at a time)
 *                                   -> response? -> the waiting ObexLine.request()
 *   ObexLine.send / request -> ByteLink.writable
 *
 * A partial packet that is not completed within `idleResetMs` is dropped (garbage that looked like
 * the start of a packet must not hold the line). What the peer did wrong is logged and answered,
 * never thrown; our own I/O failing (the link closing) ends the line through `onClosed`.
 */
import type { ByteLink } from "../../src/core/byte-link.js";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import { SILENT_LOGGER, type Logger } from "../../src/core/log.js";
import {
  BodyAssembler,
  HeaderId,
  MIN_MAX_PACKET_LENGTH,
  OBEX_VERSION,
  Opcode,
  ResponseCode,
  SYNCML_DM_TARGET,
  bytesHeader,
  bytesOf,
  encodePacket,
  headersFromHttp,
  httpHeader,
  isRequestCode,
  splitBody,
  tryDecodePacket,
  typeHeader,
  u32Header,
  u32Of,
  type AssembledObject,
  type ObexHeader,
  type ObexFramer,
  type ObexPacket,
} from "./obex.js";

export interface ObexLineOptions {
  /** What we accept (and announce in Connect); the framer's bound. */
  readonly maxPacketLength: number;
  /** A request from the peer, decoded. Called in arrival order; may return a promise (awaited). */
  readonly onRequest: (packet: ObexPacket) => void | Promise<void>;
  /** The link ended or failed (not called after `close()`). */
  readonly onClosed: (cause: GatewayError) => void;
  /** Drop a partial packet after this much silence; default 2000 ms. */
  readonly idleResetMs?: number;
  readonly log?: Logger;
}

interface Waiter {
  readonly connectResponse: boolean;
  readonly resolve: (p: ObexPacket) => void;
  readonly reject: (e: GatewayError) => void;
  readonly timer: NodeJS.Timeout;
}

export class ObexLine {
  readonly #link: ByteLink;
  readonly #o: ObexLineOptions;
  readonly #framer: ObexFramer;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #waiter: Waiter | undefined;
  #requestChain: Promise<unknown> = Promise.resolve();
  #handling: Promise<void> = Promise.resolve();
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(link: ByteLink, framer: ObexFramer, options: ObexLineOptions) {
    this.#link = link;
    this.#o = options;
    this.#framer = framer;
    this.#writer = link.writable.getWriter();
    this.#reader = link.readable.getReader();
    void this.#readLoop();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get #log(): Logger {
    return this.#o.log ?? SILENT_LOGGER;
  }

  /** Writes one packet. Rejects with Link_Closed when the line is closed or the write fails. */
  async send(packet: ObexPacket, maxPacketLength: number): Promise<void> {
    const bytes = encodePacket(packet, maxPacketLength);
    if (this.#closed) throw new GatewayError("OBEX line closed", ErrorCode.Link_Closed);
    this.#log.trace(() => `» ${hex(bytes)}`);
    try {
      await this.#writer.write(bytes);
    } catch (e) {
      const err = new GatewayError("write to the OBEX line failed", ErrorCode.Link_Closed, { cause: e });
      this.#lost(err);
      throw err;
    }
  }

  /**
   * Sends a request and resolves with the peer's response; requests queue (one in flight).
   * Rejects with Driver_Unreachable when no response comes within `timeoutMs` or the line closes.
   */
  request(
    packet: ObexPacket,
    opts: {
      readonly timeoutMs: number;
      readonly maxPacketLength: number;
      readonly connectResponse?: boolean;
    },
  ): Promise<ObexPacket> {
    const run = async (): Promise<ObexPacket> => {
      if (this.#closed) throw unreachable("OBEX line closed");
      const answer = new Promise<ObexPacket>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#waiter = undefined;
          const dropped = this.#framer.reset();
          if (dropped !== undefined)
            this.#log.debug(() => `OBEX: dropped ${dropped.bytes.length} partial bytes`);
          reject(
            unreachable(`no OBEX response within ${opts.timeoutMs} ms`, {
              code: `0x${packet.code.toString(16)}`,
              timeoutMs: opts.timeoutMs,
            }),
          );
        }, opts.timeoutMs);
        this.#waiter = { connectResponse: opts.connectResponse === true, resolve, reject, timer };
      });
      // The caller handles `answer`; until it is returned, a close during `send` must not make it
      // an unhandled rejection (that crashed a process stopping the driver mid-notify).
      answer.catch(() => undefined);
      try {
        await this.send(packet, opts.maxPacketLength);
      } catch (e) {
        this.#failWaiter(unreachable("OBEX request not sent", undefined, e));
      }
      return answer;
    };
    const result = this.#requestChain.then(run, run);
    this.#requestChain = result.catch(() => undefined);
    return result;
  }

  /** Closes the link and fails the request in flight; idempotent, never rejects. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
      this.#failWaiter(new GatewayError("OBEX line closed", ErrorCode.Driver_Stopped));
      await this.#reader.cancel().catch(() => undefined);
      await this.#link.close().catch(() => undefined);
      await this.#handling.catch(() => undefined);
    })();
    return this.#closing;
  }

  #failWaiter(e: GatewayError): void {
    const w = this.#waiter;
    if (w === undefined) return;
    this.#waiter = undefined;
    clearTimeout(w.timer);
    w.reject(e);
  }

  #lost(cause: GatewayError): void {
    if (this.#closed) return;
    this.#failWaiter(unreachable("OBEX line lost", undefined, cause));
    void this.close();
    this.#o.onClosed(cause);
  }

  async #readLoop(): Promise<void> {
    let cause: unknown;
    try {
      for (;;) {
        const r = await this.#reader.read();
        if (r.done || this.#closed) break;
        this.#log.trace(() => `« ${hex(r.value)}`);
        this.#take(r.value);
      }
    } catch (e) {
      cause = e;
    }
    this.#lost(new GatewayError("OBEX link closed", ErrorCode.Link_Closed, { cause }));
  }

  #take(chunk: Uint8Array): void {
    const out = this.#framer.push(chunk);
    for (const d of out.discarded) {
      this.#log.warn(
        `OBEX: discarded ${d.bytes.length} bytes (${d.reason}): ${hex(d.bytes.subarray(0, 16))}`,
      );
    }
    for (const bytes of out.packets) this.#dispatch(bytes);
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#framer.pending > 0) {
      this.#idleTimer = setTimeout(() => {
        this.#idleTimer = undefined;
        const d = this.#framer.reset();
        if (d !== undefined) this.#log.warn(`OBEX: dropped a partial packet of ${d.bytes.length} bytes`);
      }, this.#o.idleResetMs ?? 2000);
    }
  }

  #dispatch(bytes: Uint8Array): void {
    const code = bytes[0] ?? 0;
    if (isRequestCode(code)) {
      const decoded = tryDecodePacket(bytes);
      if (!decoded.ok) {
        this.#log.warn(`OBEX: malformed request: ${decoded.error.message}`);
        this.#handling = this.#handling.then(() =>
          this.send({ code: ResponseCode.BadRequest, headers: [] }, MIN_MAX_PACKET_LENGTH).catch(
            () => undefined,
          ),
        );
        return;
      }
      const packet = decoded.packet;
      this.#handling = this.#handling
        .then(() => this.#o.onRequest(packet))
        .catch((e: unknown) => {
          this.#log.error(`OBEX: request handler failed: ${e instanceof Error ? e.message : String(e)}`);
        });
      return;
    }
    const w = this.#waiter;
    if (w === undefined) {
      this.#log.warn(`OBEX: response 0x${code.toString(16)} with no request in flight; ignored`);
      return;
    }
    const decoded = tryDecodePacket(bytes, { connectResponse: w.connectResponse });
    this.#waiter = undefined;
    clearTimeout(w.timer);
    if (decoded.ok) w.resolve(decoded.packet);
    else w.reject(unreachable(`malformed OBEX response: ${decoded.error.message}`, undefined, decoded.error));
  }
}

function unreachable(
  message: string,
  context?: Readonly<Record<string, unknown>>,
  cause?: unknown,
): GatewayError {
  return new GatewayError(message, ErrorCode.Driver_Unreachable, {
    ...(context !== undefined && { context }),
    ...(cause !== undefined && { cause }),
  });
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

// ---- server role ---------------------------------------------------------------------------------

/** What a Get is answered with: an error code, or a (possibly empty) object. */
export interface GetAnswer {
  readonly code: number;
  readonly type?: string;
  readonly body?: Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ObexServerOptions {
  readonly line: () => ObexLine | undefined;
  readonly maxPacketLength: number;
  /** Largest object a Put may carry. */
  readonly maxObjectLength: number;
  /** A whole Put object arrived; resolves with the response code (Success, or an error). */
  readonly onPut: (
    object: AssembledObject,
    headers: Readonly<Record<string, string>>,
  ) => Promise<number> | number;
  /** A Get (its final request packet) arrived; resolves with the answer. */
  readonly onGet: () => Promise<GetAnswer> | GetAnswer;
  readonly onConnect?: () => void;
  readonly onDisconnect?: () => void;
  readonly log?: Logger;
}

/**
 * The OBEX server of the SYNCML-DM service on one line: Connect with the SYNCML-DM target (a fresh
 * Connection ID, Who = SYNCML-DM, our max packet length), Put (Body... End-of-Body, reassembled),
 * Get (the answer split into Continue ... Success within the peer's max packet length), Abort and
 * Disconnect. A Put or Get outside a connection is Forbidden; a wrong Connection ID is Service
 * Unavailable; another opcode is Not Implemented.
 */
export class ObexServer {
  readonly #o: ObexServerOptions;
  readonly #put: BodyAssembler;
  #connectionId: number | undefined;
  #nextConnectionId = 1;
  #peerMax = MIN_MAX_PACKET_LENGTH;
  #getQueue: ObexPacket[] = [];

  constructor(options: ObexServerOptions) {
    this.#o = options;
    this.#put = new BodyAssembler(options.maxObjectLength);
  }

  get connected(): boolean {
    return this.#connectionId !== undefined;
  }

  /** Forgets the connection (the line went away). */
  reset(): void {
    this.#connectionId = undefined;
    this.#peerMax = MIN_MAX_PACKET_LENGTH;
    this.#put.clear();
    this.#getQueue = [];
  }

  async handle(p: ObexPacket): Promise<void> {
    const respond = (code: number, headers: ObexHeader[] = []): Promise<void> =>
      this.#send({ code, headers });
    switch (p.code) {
      case Opcode.Connect: {
        const target = bytesOf(p, HeaderId.Target);
        const ours = { version: OBEX_VERSION, flags: 0, maxPacketLength: this.#o.maxPacketLength };
        if (target === undefined || !sameBytes(target, SYNCML_DM_TARGET)) {
          await this.#send({ code: ResponseCode.ServiceUnavailable, connect: ours, headers: [] }, true);
          return;
        }
        this.reset();
        this.#peerMax = Math.max(MIN_MAX_PACKET_LENGTH, p.connect?.maxPacketLength ?? MIN_MAX_PACKET_LENGTH);
        this.#connectionId = this.#nextConnectionId++;
        this.#o.onConnect?.();
        await this.#send(
          {
            code: ResponseCode.Success,
            connect: ours,
            headers: [
              u32Header(HeaderId.ConnectionId, this.#connectionId),
              bytesHeader(HeaderId.Who, SYNCML_DM_TARGET),
            ],
          },
          true,
        );
        return;
      }
      case Opcode.Disconnect:
        this.reset();
        await respond(ResponseCode.Success);
        this.#o.onDisconnect?.();
        return;
      case Opcode.Abort:
        this.#put.clear();
        this.#getQueue = [];
        await respond(ResponseCode.Success);
        return;
      case Opcode.Put:
      case Opcode.PutFinal:
      case Opcode.Get:
      case Opcode.GetFinal:
        break;
      default:
        await respond(ResponseCode.NotImplemented);
        return;
    }
    if (this.#connectionId === undefined) {
      await respond(ResponseCode.Forbidden);
      return;
    }
    const cid = u32Of(p, HeaderId.ConnectionId);
    if (cid !== undefined && cid !== this.#connectionId) {
      await respond(ResponseCode.ServiceUnavailable);
      return;
    }
    if (p.code === Opcode.Put || p.code === Opcode.PutFinal) {
      this.#getQueue = [];
      const final = p.code === Opcode.PutFinal;
      const packet =
        final && bytesOf(p, HeaderId.EndOfBody) === undefined
          ? { ...p, headers: [...p.headers, bytesHeader(HeaderId.EndOfBody, new Uint8Array(0))] }
          : p;
      const step = this.#put.add(packet);
      if (step.kind === "more") {
        await respond(final ? ResponseCode.BadRequest : ResponseCode.Continue);
        return;
      }
      if (step.kind === "error") {
        this.#o.log?.warn(`OBEX Put refused: ${step.error.message}`);
        await respond(
          step.error.code === ErrorCode.Codec_TooLarge
            ? ResponseCode.RequestEntityTooLarge
            : ResponseCode.BadRequest,
        );
        return;
      }
      const code = await this.#o.onPut(step.object, headersFromHttp(step.object.headers));
      await respond(code);
      return;
    }
    // Get: a continuation of an answer being sent, or (final) a new request.
    const next = this.#getQueue.shift();
    if (next !== undefined) {
      await this.#send(next);
      return;
    }
    if (p.code === Opcode.Get) {
      await respond(ResponseCode.Continue); // the request headers go on; we need none of them
      return;
    }
    const answer = await this.#o.onGet();
    if (answer.code !== ResponseCode.Success || answer.body === undefined) {
      await respond(answer.code);
      return;
    }
    const http = httpHeader(answer.headers ?? {});
    const packets = splitBody({
      headers: [
        ...(answer.type === undefined ? [] : [typeHeader(answer.type)]),
        u32Header(HeaderId.Length, answer.body.length),
        ...(http === undefined ? [] : [http]),
      ],
      body: answer.body,
      maxPacketLength: this.#peerMax,
      moreCode: ResponseCode.Continue,
      lastCode: ResponseCode.Success,
    });
    const [first, ...rest] = packets;
    this.#getQueue = rest;
    if (first !== undefined) await this.#send(first);
  }

  async #send(p: ObexPacket, connect = false): Promise<void> {
    const line = this.#o.line();
    if (line === undefined) return;
    await line.send(p, connect ? MIN_MAX_PACKET_LENGTH : this.#peerMax).catch((e: unknown) => {
      this.#o.log?.debug(() => `OBEX response not sent: ${e instanceof Error ? e.message : String(e)}`);
    });
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---- client role ---------------------------------------------------------------------------------

/** An OBEX response that was not the one expected. */
export function obexRefused(what: string, code: number): GatewayError {
  return new GatewayError(`OBEX ${what} answered 0x${code.toString(16)}`, ErrorCode.Driver_Unreachable, {
    context: { obexCode: code },
  });
}

/**
 * The OBEX client of the SYNCML-DM service on one line: Connect, Put, Get, Disconnect. Each method
 * rejects with Driver_Unreachable (no response in time, the line closed, an error response: context
 * `obexCode`).
 */
export class ObexClient {
  readonly #line: ObexLine;
  readonly #maxPacketLength: number;
  readonly #timeoutMs: number;
  #connectionId: number | undefined;
  #peerMax = MIN_MAX_PACKET_LENGTH;
  #connected = false;

  constructor(line: ObexLine, options: { readonly maxPacketLength: number; readonly timeoutMs: number }) {
    this.#line = line;
    this.#maxPacketLength = options.maxPacketLength;
    this.#timeoutMs = options.timeoutMs;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** The peer's max packet length (after connect). */
  get peerMaxPacketLength(): number {
    return this.#peerMax;
  }

  async connect(): Promise<void> {
    const r = await this.#line.request(
      {
        code: Opcode.Connect,
        connect: { version: OBEX_VERSION, flags: 0, maxPacketLength: this.#maxPacketLength },
        headers: [bytesHeader(HeaderId.Target, SYNCML_DM_TARGET)],
      },
      { timeoutMs: this.#timeoutMs, maxPacketLength: MIN_MAX_PACKET_LENGTH, connectResponse: true },
    );
    if (r.code !== ResponseCode.Success) throw obexRefused("Connect", r.code);
    this.#peerMax = Math.max(MIN_MAX_PACKET_LENGTH, r.connect?.maxPacketLength ?? MIN_MAX_PACKET_LENGTH);
    this.#connectionId = u32Of(r, HeaderId.ConnectionId);
    this.#connected = true;
  }

  /** Puts one object (Type, Length, HTTP headers, Body ... End-of-Body). */
  async put(type: string, body: Uint8Array, headers: Readonly<Record<string, string>> = {}): Promise<void> {
    const http = httpHeader(headers);
    const packets = splitBody({
      headers: [
        ...this.#cid(),
        typeHeader(type),
        u32Header(HeaderId.Length, body.length),
        ...(http === undefined ? [] : [http]),
      ],
      body,
      maxPacketLength: this.#peerMax,
      moreCode: Opcode.Put,
      lastCode: Opcode.PutFinal,
    });
    for (const [i, p] of packets.entries()) {
      const last = i === packets.length - 1;
      const r = await this.#line.request(p, { timeoutMs: this.#timeoutMs, maxPacketLength: this.#peerMax });
      if (r.code !== (last ? ResponseCode.Success : ResponseCode.Continue)) throw obexRefused("Put", r.code);
    }
  }

  /** Gets the answer object; an error response is a value (`code`). */
  async get(maxObjectLength: number): Promise<{ readonly code: number; readonly object?: AssembledObject }> {
    const assembler = new BodyAssembler(maxObjectLength);
    let first = true;
    for (;;) {
      const r = await this.#line.request(
        { code: Opcode.GetFinal, headers: first ? this.#cid() : [] },
        { timeoutMs: this.#timeoutMs, maxPacketLength: this.#peerMax },
      );
      first = false;
      if (r.code !== ResponseCode.Continue && r.code !== ResponseCode.Success) return { code: r.code };
      const step = assembler.add(
        r.code === ResponseCode.Success && bytesOf(r, HeaderId.EndOfBody) === undefined
          ? { ...r, headers: [...r.headers, bytesHeader(HeaderId.EndOfBody, new Uint8Array(0))] }
          : r,
      );
      if (step.kind === "error")
        throw new GatewayError(step.error.message, ErrorCode.Driver_Unreachable, { cause: step.error });
      if (step.kind === "done") return { code: r.code, object: step.object };
      if (r.code === ResponseCode.Success) return { code: r.code };
    }
  }

  async disconnect(): Promise<void> {
    this.#connected = false;
    const r = await this.#line.request(
      { code: Opcode.Disconnect, headers: this.#cid() },
      { timeoutMs: this.#timeoutMs, maxPacketLength: this.#peerMax },
    );
    this.#connectionId = undefined;
    if (r.code !== ResponseCode.Success) throw obexRefused("Disconnect", r.code);
  }

  #cid(): ObexHeader[] {
    return this.#connectionId === undefined ? [] : [u32Header(HeaderId.ConnectionId, this.#connectionId)];
  }
}
