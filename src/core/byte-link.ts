/**
 * Byte links: a serial port (serialport 13), a TCP connection to a serial server (`tcp://host:port`,
 * a "serial device server" or `socat TCP-LISTEN`), and an in-memory pair for tests and in-process
 * simulators. Used by the modem (board/modem) and the serial driver (drivers/serial). A link is
 * single-use (style.md 2.2, 2.13.1): once it has closed or failed it stays dead, and reconnecting
 * means calling the factory again, which creates a new `SerialPort` or socket; nothing here reopens
 * a port.
 *
 * Errors: `Link_OpenFailed` (the port or connection could not be opened; context `path`) and
 * `Link_Closed` (the link failed or vanished in use).
 */
import { stat } from "node:fs/promises";
import { Socket } from "node:net";
import { SerialPort } from "serialport";
import { ErrorCode, GatewayError, type GatewayErrorOptions } from "./errors.js";

function linkError(
  message: string,
  code: ErrorCode.Link_OpenFailed | ErrorCode.Link_Closed,
  options: GatewayErrorOptions = {},
): GatewayError {
  return new GatewayError(message, code, options);
}

export interface ByteLink {
  /** Bytes from the peer. Ends (done) when the link is closed, errors when it fails. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
  /** Closes the link and releases its file descriptor; idempotent, never rejects. */
  close(): Promise<void>;
}

export type ByteLinkFactory = () => Promise<ByteLink>;

export interface SerialLinkOptions {
  /** A stable path: `/dev/serial/by-id/...` or a udev symlink (style.md 2.6), or a pty link in tests. */
  readonly path: string;
  /** Default 115200. A pty ignores it. */
  readonly baudRate?: number;
  /**
   * How often to check that the device node still exists and is the one opened; default 1000 ms,
   * 0 turns the check off. See `openSerialLink` for why it is needed.
   */
  readonly presenceCheckMs?: number;
}

/**
 * A factory that opens a new link on every call: a `SerialPort` on `path`, or a TCP connection when
 * `path` is `tcp://host:port` (a serial server; `baudRate` and `presenceCheckMs` do not apply).
 */
export function serialLinkFactory(options: SerialLinkOptions): ByteLinkFactory {
  const tcp = parseTcpAddress(options.path);
  if (tcp !== undefined) return () => openTcpLink(tcp);
  return () => openSerialLink(options);
}

/** `tcp://host:port` (host a name, IPv4 or `[IPv6]`) as its parts; undefined for anything else. */
export function parseTcpAddress(path: string): TcpLinkOptions | undefined {
  if (!path.startsWith("tcp://")) return undefined;
  let url: URL;
  try {
    url = new URL(path);
  } catch {
    return undefined;
  }
  const port = Number(url.port);
  if (url.hostname === "" || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  if (url.pathname !== "" && url.pathname !== "/") return undefined;
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port };
}

export interface TcpLinkOptions {
  readonly host: string;
  readonly port: number;
  /** Default 5000 ms. */
  readonly connectTimeoutMs?: number;
}

/**
 * Connects to a serial server as a `ByteLink`. Rejects with `Link_OpenFailed` (context: `path`,
 * `tcp://host:port`). The peer closing the connection ends `readable`; a socket error fails it.
 */
export async function openTcpLink(options: TcpLinkOptions): Promise<ByteLink> {
  const path = `tcp://${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`;
  const socket = new Socket();
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      fail(new Error(`connect timed out after ${options.connectTimeoutMs ?? 5000} ms`));
    }, options.connectTimeoutMs ?? 5000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.off("connect", ok);
      socket.destroy();
      reject(
        linkError(`cannot connect to ${path}`, ErrorCode.Link_OpenFailed, {
          cause: err,
          context: { path },
        }),
      );
    };
    const ok = (): void => {
      clearTimeout(timer);
      socket.off("error", fail);
      resolve();
    };
    socket.once("error", fail);
    socket.once("connect", ok);
    socket.connect({ host: options.host, port: options.port });
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      if (socket.destroyed) {
        resolve();
        return;
      }
      socket.once("close", () => {
        resolve();
      });
      socket.destroy();
    });
    return closing;
  };

  let ended = false;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      const finish = (err?: Error): void => {
        if (ended) return;
        ended = true;
        if (err === undefined) controller.close();
        else controller.error(err);
      };
      socket.on("data", (chunk: Buffer) => {
        if (!ended) controller.enqueue(Uint8Array.from(chunk));
      });
      socket.on("end", () => {
        finish();
        void close(); // half-open is of no use to a serial line
      });
      socket.on("error", (err: Error) => {
        finish(linkError(`${path} failed`, ErrorCode.Link_Closed, { cause: err, context: { path } }));
      });
      socket.on("close", () => {
        finish();
      });
    },
    cancel() {
      ended = true;
      return close();
    },
  });

  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise<void>((resolve, reject) => {
        if (socket.destroyed) {
          reject(linkError(`${path} is closed`, ErrorCode.Link_Closed, { context: { path } }));
          return;
        }
        socket.write(chunk, (err?: Error | null) => {
          if (err === null || err === undefined) resolve();
          else reject(err);
        });
      });
    },
    close() {
      return close();
    },
    abort() {
      return close();
    },
  });

  return { readable, writable, close };
}

/**
 * Opens a serial port as a `ByteLink`. Rejects with `Link_OpenFailed` (context: `path`).
 *
 * A `data` listener is attached at once: without one, serialport does not notice that the other end
 * vanished (platform.md 3), and the link must report that as a failure of `readable`.
 *
 * A hung-up tty (USB device unplugged, socat gone) often reads as end-of-file (0 bytes) rather than
 * an error, and `@serialport/bindings-cpp` 13.0.0 then retries the read at once, forever, without
 * any event (serialport/bindings-cpp#162; the fix, PR #164, was not merged). So the link also
 * watches its device node: when the path no longer resolves (udev removes the by-id link, socat its
 * pty link) or resolves to another device, `readable` fails with `Link_Closed` and the port is
 * closed, which ends that loop.
 */
export async function openSerialLink(options: SerialLinkOptions): Promise<ByteLink> {
  const port = new SerialPort({ path: options.path, baudRate: options.baudRate ?? 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => {
    port.open((err) => {
      if (err === null) resolve();
      else
        reject(
          linkError(`cannot open ${options.path}`, ErrorCode.Link_OpenFailed, {
            cause: err,
            context: { path: options.path },
          }),
        );
    });
  });

  let device: number | undefined;
  try {
    device = (await stat(options.path)).rdev;
  } catch {
    device = undefined; // not stat-able (odd path): the presence check then only looks for ENOENT
  }

  let watchdog: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    clearInterval(watchdog);
    watchdog = undefined;
    closing ??= new Promise<void>((resolve) => {
      if (!port.isOpen) {
        resolve();
        return;
      }
      // The callback's error (already closed by a disconnect) changes nothing for the caller.
      port.close(() => {
        resolve();
      });
    });
    return closing;
  };

  let ended = false; // the readable is closed, errored or cancelled: the controller takes nothing more
  let fail: (err: Error) => void = () => undefined;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      const finish = (err?: Error): void => {
        if (ended) return;
        ended = true;
        clearInterval(watchdog);
        watchdog = undefined;
        if (err === undefined) controller.close();
        else controller.error(err);
      };
      fail = finish;
      port.on("data", (chunk: Buffer) => {
        if (!ended) controller.enqueue(Uint8Array.from(chunk));
      });
      port.on("close", (err: Error | null | undefined) => {
        finish(err ?? undefined);
      });
      port.on("error", (err: Error) => {
        finish(err);
      });
    },
    cancel() {
      ended = true;
      return close();
    },
  });

  const checkMs = options.presenceCheckMs ?? 1000;
  if (checkMs > 0) {
    let checking = false;
    const vanished = (reason: string, cause?: unknown): void => {
      fail(
        linkError(`${options.path} ${reason}`, ErrorCode.Link_Closed, {
          cause,
          context: { path: options.path },
        }),
      );
      void close();
    };
    watchdog = setInterval(() => {
      if (checking || ended) return;
      checking = true;
      stat(options.path).then(
        (st) => {
          checking = false;
          if (device !== undefined && st.rdev !== device) vanished("now names another device");
        },
        (e: unknown) => {
          checking = false;
          if ((e as NodeJS.ErrnoException).code === "ENOENT") vanished("is gone", e);
        },
      );
    }, checkMs);
    watchdog.unref(); // the open port keeps the process alive, not its watchdog
  }

  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise<void>((resolve, reject) => {
        port.write(Buffer.from(chunk), (err: Error | null | undefined) => {
          if (err === null || err === undefined) resolve();
          else reject(err);
        });
      });
    },
    close() {
      return close();
    },
    abort() {
      return close();
    },
  });

  return { readable, writable, close };
}

/** Two in-memory links wired back to back; `sever()` fails both as a vanished device would. */
export interface MemoryLinkPair {
  readonly a: ByteLink;
  readonly b: ByteLink;
  /** Fails both readables with `cause` (default: a `Link_Closed` error). */
  sever(cause?: Error): void;
}

export function memoryLinkPair(): MemoryLinkPair {
  let ctlA: ReadableStreamDefaultController<Uint8Array> | undefined;
  let ctlB: ReadableStreamDefaultController<Uint8Array> | undefined;
  let ended = false;
  const readA = new ReadableStream<Uint8Array>({
    start(c) {
      ctlA = c;
    },
    cancel() {
      end();
    },
  });
  const readB = new ReadableStream<Uint8Array>({
    start(c) {
      ctlB = c;
    },
    cancel() {
      end();
    },
  });
  const end = (cause?: Error): void => {
    if (ended) return;
    ended = true;
    for (const c of [ctlA, ctlB]) {
      try {
        if (cause === undefined) c?.close();
        else c?.error(cause);
      } catch {
        // That side was cancelled by its reader and is closed already.
      }
    }
  };
  const writerTo = (peer: () => ReadableStreamDefaultController<Uint8Array> | undefined) =>
    new WritableStream<Uint8Array>({
      write(chunk) {
        if (ended) throw linkError("memory link closed", ErrorCode.Link_Closed);
        peer()?.enqueue(chunk.slice());
      },
    });
  const link = (readable: ReadableStream<Uint8Array>, writable: WritableStream<Uint8Array>): ByteLink => ({
    readable,
    writable,
    close: () => {
      end();
      return Promise.resolve();
    },
  });
  return {
    a: link(
      readA,
      writerTo(() => ctlB),
    ),
    b: link(
      readB,
      writerTo(() => ctlA),
    ),
    sever: (cause) => {
      end(cause ?? linkError("memory link severed", ErrorCode.Link_Closed));
    },
  };
}
