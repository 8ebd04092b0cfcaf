/**
 * The local control socket (design.md section 6): a unix domain socket in the runtime directory
 * through which the `dmgw` CLI asks a running service (control-api.ts has the methods).
 *
 *   client --{"id","method","params"}\n--> line (<= MAX_LINE_BYTES) --> method
 *          <--{"id","ok":true,"result"}\n  | {"id","ok":false,"error":{"code","message"}}\n
 *   stream  <--{"id","event"}\n ... then the final {"id","ok",...}\n; the client closing ends it
 *
 * Decisions:
 * - Owner-only: the socket is bound under a umask of 077 (so no one else can connect between bind
 *   and chmod) and chmod'ed 0600 after; whoever can connect is the service's own user (or root).
 * - A socket file left by a crash is removed; one a live service answers on is not (Control_InUse),
 *   so a second `dmgw run` cannot steal the first one's socket.
 * - A request line is bounded (MAX_LINE_BYTES): a longer one gets Control_TooLarge and the
 *   connection is closed, without buffering the rest. Bad JSON, an unknown method or bad params get
 *   an error answer and the connection keeps serving.
 * - A method that throws (the store failed) answers with the error's code when it is a
 *   GatewayError, never its stack; the service keeps running.
 */
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import net from "node:net";
import { ErrorCode, GatewayError, isGatewayError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { controlApi, type MethodOutcome, type Params } from "./control-api.js";
import type { GatewayParts } from "./parts.js";

/** The longest request line accepted, bytes (a tree URI or a job's commands fit many times over). */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Connections at once: the CLI opens one per command; more means something loops. */
export const MAX_CONNECTIONS = 32;

export interface ControlServer {
  close(): Promise<void>;
}

/**
 * Listens on the unix socket `o.path` and serves the control methods until `close()`.
 *
 * @throws GatewayError(Control_InUse) when a live service answers on `o.path`;
 *   GatewayError(Control_ListenFailed) when the socket cannot be created.
 */
export async function startControlServer(o: {
  path: string;
  parts: GatewayParts;
  log: Logger;
}): Promise<ControlServer> {
  await clearStaleSocket(o.path);
  const methods = controlApi(o.parts);
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: false }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    serveConnection(socket, methods, o.log);
  });
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      reject(
        new GatewayError(
          `cannot create the control socket ${o.path}: ${e.code ?? e.message}`,
          ErrorCode.Control_ListenFailed,
          { cause: e, context: { path: o.path } },
        ),
      );
    };
    server.once("error", onError);
    // The bind happens inside listen(): under umask 077 the socket is born 0600-or-less.
    const previous = process.umask(0o077);
    try {
      server.listen(o.path, () => {
        server.off("error", onError);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  try {
    chmodSync(o.path, 0o600);
  } catch (e) {
    await new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
    throw new GatewayError(`cannot restrict the control socket ${o.path}`, ErrorCode.Control_ListenFailed, {
      cause: e,
      context: { path: o.path },
    });
  }
  o.log.info("control socket listening", { path: o.path });
  let closing: Promise<void> | undefined;
  return {
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        for (const s of sockets) s.destroy();
      }).then(() => {
        // net.Server unlinks its socket on close; this covers a path it could not.
        removeQuietly(o.path);
      })),
  };
}

/**
 * Removes a socket file nobody answers on (left by a crash). A live one is refused, and so is a
 * path that is not a socket (someone else's file is not ours to delete).
 */
async function clearStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new GatewayError(`cannot inspect ${path}`, ErrorCode.Control_ListenFailed, {
      cause: e,
      context: { path },
    });
  }
  if (!isSocket) {
    throw new GatewayError(`${path} exists and is not a socket`, ErrorCode.Control_ListenFailed, {
      context: { path },
    });
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => {
      resolve(false);
    });
  });
  if (live) {
    throw new GatewayError(`another dmgw service answers on ${path}`, ErrorCode.Control_InUse, {
      context: { path },
    });
  }
  removeQuietly(path);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone (net.Server removed it): nothing to clean.
  }
}

/** One client: lines in, answers out; streams end when the client goes. */
function serveConnection(socket: net.Socket, methods: ReturnType<typeof controlApi>, log: Logger): void {
  const streams = new Set<AbortController>();
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let closed = false;
  socket.once("close", () => {
    closed = true;
    for (const c of streams) c.abort();
  });
  socket.on("error", () => {
    // A client that vanished mid-answer (EPIPE, ECONNRESET): 'close' follows and cleans up.
  });
  const send = (message: unknown): void => {
    if (closed || socket.destroyed) return;
    socket.write(`${JSON.stringify(message)}\n`);
  };
  socket.on("data", (chunk: Buffer) => {
    if (closed) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const line = Buffer.concat([...pending, chunk.subarray(start, nl)]);
      pending = [];
      pendingBytes = 0;
      start = nl + 1;
      if (line.length > MAX_LINE_BYTES) {
        tooLarge(line.length);
        return;
      }
      handleLine(line.toString("utf8"));
    }
    const rest = chunk.subarray(start);
    pendingBytes += rest.length;
    if (pendingBytes > MAX_LINE_BYTES) {
      tooLarge(pendingBytes);
      return;
    }
    if (rest.length > 0) pending.push(rest);
  });

  function tooLarge(bytes: number): void {
    pending = [];
    pendingBytes = 0;
    log.warn("control request over the size limit; connection closed", { bytes, limit: MAX_LINE_BYTES });
    send({
      id: null,
      ok: false,
      error: { code: ErrorCode.Control_TooLarge, message: `a request is at most ${MAX_LINE_BYTES} bytes` },
    });
    closed = true;
    // Stop reading what the client keeps sending, flush the answer, then drop the connection: a
    // client still writing would otherwise keep a half-closed socket open forever. (On a unix
    // socket the client can still read the answer queued before the close.)
    socket.pause();
    socket.setTimeout(1000, () => socket.destroy());
    socket.end(() => socket.destroy());
  }

  function handleLine(text: string): void {
    if (text.trim() === "") return;
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch {
      log.warn("control request is not JSON", { bytes: text.length });
      send(failure(null, ErrorCode.Control_BadRequest, "a request is one JSON object per line"));
      return;
    }
    if (typeof request !== "object" || request === null || Array.isArray(request)) {
      send(failure(null, ErrorCode.Control_BadRequest, "a request is a JSON object"));
      return;
    }
    const r = request as Record<string, unknown>;
    const id = typeof r["id"] === "string" || typeof r["id"] === "number" ? r["id"] : null;
    const method = r["method"];
    const params = r["params"] ?? {};
    if (id === null || typeof method !== "string") {
      send(failure(id, ErrorCode.Control_BadRequest, "a request has an id (string or number) and a method"));
      return;
    }
    if (typeof params !== "object" || Array.isArray(params)) {
      send(failure(id, ErrorCode.Control_BadRequest, "params is an object"));
      return;
    }
    const m = methods.get(method);
    if (m === undefined) {
      send(
        failure(id, ErrorCode.Control_UnknownMethod, `unknown method ${JSON.stringify(method.slice(0, 64))}`),
      );
      return;
    }
    if (m.kind === "call") {
      send(answer(id, () => m.call(params as Params), log, method));
      return;
    }
    const controller = new AbortController();
    streams.add(controller);
    m.run(
      params as Params,
      (event) => {
        send({ id, event });
      },
      controller.signal,
    )
      .then(
        (outcome) => {
          send(toMessage(id, outcome));
        },
        (e: unknown) => {
          send(thrown(id, e, log, method));
        },
      )
      .finally(() => streams.delete(controller));
  }
}

function answer(id: string | number, fn: () => MethodOutcome, log: Logger, method: string): unknown {
  try {
    return toMessage(id, fn());
  } catch (e) {
    return thrown(id, e, log, method);
  }
}

function toMessage(id: string | number, outcome: MethodOutcome): unknown {
  return outcome.ok ? { id, ok: true, result: outcome.result } : { id, ok: false, error: outcome.error };
}

/** A method's own failure (the store, a bug): logged; the client gets the code, not the stack. */
function thrown(id: string | number, e: unknown, log: Logger, method: string): unknown {
  log.error("a control method failed", { method, error: e instanceof Error ? e.message : String(e) });
  if (isGatewayError(e)) return failure(id, e.code, e.message);
  return failure(id, ErrorCode.Control_Refused, `the method ${method} failed inside the gateway`);
}

function failure(id: string | number | null, code: ErrorCode, message: string): unknown {
  return { id, ok: false, error: { code, message } };
}
