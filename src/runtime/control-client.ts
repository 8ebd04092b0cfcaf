/**
 * The CLI's side of the control socket (control-server.ts): connect, ask, read the answer or a
 * stream of events. A missing or dead socket is Control_Unavailable, which the CLI turns into "no
 * service runs" (or, for `dmgw tree`, into its offline mode on the database file).
 */
import net from "node:net";
import { join } from "node:path";
import { CONTROL_SOCKET_FILE, envDirectories } from "../config/paths.js";
import { ErrorCode, GatewayError } from "../core/errors.js";

/** The environment variables that locate the control socket (config/paths.ts reads them). */
export interface ControlEnv {
  readonly RUNTIME_DIRECTORY?: string | undefined;
  readonly DMGW_DATA?: string | undefined;
}

/**
 * Where the service listens and the CLI connects when neither is told: `dmgw.sock` in the runtime
 * directory as the service resolves it (config/paths.ts, so both sides agree by construction):
 * `$DMGW_DATA/runtime` (the development override), else `$RUNTIME_DIRECTORY` (its first path, as
 * systemd sets it), else `/run/dmgw` (the unit's RuntimeDirectory=dmgw, for a CLI outside the unit).
 * A site config's `control.socket` or `paths.runtime` moves it: the CLI then needs `--socket`.
 */
export function defaultControlSocketPath(env: ControlEnv = process.env): string {
  return join(
    envDirectories({ DMGW_DATA: env.DMGW_DATA, RUNTIME_DIRECTORY: env.RUNTIME_DIRECTORY }).runtime,
    CONTROL_SOCKET_FILE,
  );
}

export interface ControlConnection {
  /** One request, its result. @throws GatewayError with the service's code when it refused. */
  request(method: string, params?: Readonly<Record<string, unknown>>): Promise<unknown>;
  /** A streaming request: `onEvent` for each event, then the final result. */
  stream(
    method: string,
    params: Readonly<Record<string, unknown>>,
    onEvent: (event: unknown) => void,
  ): Promise<unknown>;
  close(): void;
}

interface Waiter {
  readonly resolve: (result: unknown) => void;
  readonly reject: (e: GatewayError) => void;
  readonly onEvent: ((event: unknown) => void) | undefined;
}

const KNOWN_CODES: ReadonlyMap<string, ErrorCode> = new Map(Object.values(ErrorCode).map((c) => [c, c]));

/**
 * Connects to the service at `path`.
 *
 * @throws GatewayError(Control_Unavailable) when nothing answers there (no file, a stale socket, or
 *   no permission to connect).
 */
export async function connectControl(
  path: string,
  options: { timeoutMs?: number } = {},
): Promise<ControlConnection> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection({ path });
    const timer = setTimeout(() => {
      s.destroy();
      reject(unavailable(path, "ETIMEDOUT"));
    }, options.timeoutMs ?? 5_000);
    s.once("connect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      resolve(s);
    });
    const onError = (e: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      reject(unavailable(path, e.code ?? e.message, e));
    };
    s.once("error", onError);
  });
  const waiters = new Map<string, Waiter>();
  let nextId = 1;
  let buffered = "";
  let failure: GatewayError | undefined;
  const failAll = (e: GatewayError): void => {
    failure ??= e;
    for (const w of waiters.values()) w.reject(failure);
    waiters.clear();
  };
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
  });
  socket.on("error", (e: NodeJS.ErrnoException) => {
    failAll(
      new GatewayError(
        `the control connection failed: ${e.code ?? e.message}`,
        ErrorCode.Control_Unavailable,
        { cause: e },
      ),
    );
  });
  socket.on("close", () => {
    failAll(new GatewayError("the service closed the control connection", ErrorCode.Control_Unavailable));
  });

  function onLine(line: string): void {
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== "object" || parsed === null) throw new TypeError("not an object");
      message = parsed as Record<string, unknown>;
    } catch (e) {
      failAll(new GatewayError("the service's answer is not JSON", ErrorCode.Control_Protocol, { cause: e }));
      socket.destroy();
      return;
    }
    const id = message["id"];
    const waiter = typeof id === "string" ? waiters.get(id) : undefined;
    if (waiter === undefined) {
      // An answer to no request of ours: the server's reply to a line it could not read.
      const error = errorOf(message);
      if (error !== undefined) failAll(error);
      return;
    }
    if ("event" in message) {
      waiter.onEvent?.(message["event"]);
      return;
    }
    waiters.delete(id as string);
    const error = errorOf(message);
    if (error !== undefined) waiter.reject(error);
    else waiter.resolve(message["result"]);
  }

  const send = (
    method: string,
    params: Readonly<Record<string, unknown>>,
    onEvent: ((event: unknown) => void) | undefined,
  ): Promise<unknown> => {
    if (failure !== undefined) return Promise.reject(failure);
    const id = String(nextId++);
    return new Promise<unknown>((resolve, reject) => {
      waiters.set(id, { resolve, reject, onEvent });
      socket.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  };
  return {
    request: (method, params = {}) => send(method, params, undefined),
    stream: (method, params, onEvent) => send(method, params, onEvent),
    close: () => {
      socket.end();
      socket.destroy();
    },
  };
}

/** The GatewayError of an `{ok: false, error}` answer; undefined for a success. */
function errorOf(message: Record<string, unknown>): GatewayError | undefined {
  if (message["ok"] === true) return undefined;
  const error = message["error"];
  const e = typeof error === "object" && error !== null ? (error as Record<string, unknown>) : {};
  const code =
    (typeof e["code"] === "string" ? KNOWN_CODES.get(e["code"]) : undefined) ?? ErrorCode.Control_Protocol;
  const text = typeof e["message"] === "string" ? e["message"] : "the service refused the request";
  // The service's message already ends with its code when it came from a GatewayError.
  return new GatewayError(text.replace(/ \[[A-Za-z_]+\]$/, ""), code);
}

function unavailable(path: string, why: string, cause?: unknown): GatewayError {
  const hint =
    why === "EACCES" ? "permission denied (run as the service's user or root)" : "no dmgw service runs";
  return new GatewayError(`${hint}: cannot connect to ${path} (${why})`, ErrorCode.Control_Unavailable, {
    ...(cause !== undefined && { cause }),
    context: { path, reason: why },
  });
}
