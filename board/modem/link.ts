/**
 * Byte links under the modem: the serial port (serialport 13) and an in-memory pair for tests and an
 * in-process simulator. A link is single-use (style.md 2.2, 2.13.1): once it has closed or failed it
 * stays dead, and reconnecting means calling the factory again, which creates a new `SerialPort`;
 * nothing here reopens a port.
 *
 * The shape matches the `ByteLink` sketch of style.md 2.2 so that it can move to `drivers/driver.ts`
 * (or be replaced by it) without touching the modem.
 */
import { stat } from "node:fs/promises";
import { SerialPort } from "serialport";
import { ModemErrorCode, modemError } from "./errors.js";

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

/** A factory that opens a new `SerialPort` on every call. */
export function serialLinkFactory(options: SerialLinkOptions): ByteLinkFactory {
  return () => openSerialLink(options);
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
          modemError(`cannot open ${options.path}`, ModemErrorCode.Link_OpenFailed, {
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
        modemError(`${options.path} ${reason}`, ModemErrorCode.Link_Closed, {
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
        if (ended) throw modemError("memory link closed", ModemErrorCode.Link_Closed);
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
      end(cause ?? modemError("memory link severed", ModemErrorCode.Link_Closed));
    },
  };
}
