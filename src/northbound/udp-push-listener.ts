/**
 * Receives DM Notifications (Pkg#0 in a WSP push) over UDP, WDP port 2948 (protocol.md 5.3), and
 * hands the verified ones to the caller. The protocol is `NotificationGate` (pure); this file only
 * moves bytes.
 *
 * ```
 *   UDP datagram -> size cap -> gate.accept(bytes, now()) -> trigger -> onTrigger(trigger, remote)
 *                                                         -> dropped -> onDrop(drop, remote)
 * ```
 *
 * Decisions:
 * - Bad input is counted (and passed to `onDrop` for the caller's warn log), never thrown.
 * - A datagram over `maxDatagramBytes` is dropped before the gate sees it (`oversize`): a Pkg#0 is
 *   24 bytes plus a server id of at most 255 plus a short vendor body, and the WSP headers are small.
 * - Callbacks are isolated: a throwing (or rejecting) `onTrigger`/`onDrop` is caught, counted in
 *   `callbackErrors` and reported to `onCallbackError`; the listener keeps serving.
 * - A socket error after `start()` is counted and reported the same way; it does not close the socket.
 * - Single use: `start()` after `stop()` is refused; `stop()` is idempotent and closes the socket.
 */
import dgram from "node:dgram";
import type { NotificationDrop, NotificationGate, NotificationTrigger } from "./notification.js";
import { WAP_PUSH_PORT } from "../syncml/wsp-push.js";

/** Where a datagram came from. */
export interface PushSource {
  readonly address: string;
  readonly port: number;
}

/** A drop by the listener itself (`oversize`) or by the gate. */
export type ListenerDrop =
  NotificationDrop | { readonly kind: "dropped"; readonly reason: "oversize"; readonly detail: string };

export interface UdpPushListenerOptions {
  readonly gate: NotificationGate;
  /** Called once per accepted notification; may be async (a rejection is caught and counted). */
  readonly onTrigger: (trigger: NotificationTrigger, source: PushSource) => void | Promise<void>;
  /** Called for each dropped datagram, for the caller's (warn) log. */
  readonly onDrop?: (drop: ListenerDrop, source: PushSource) => void;
  /** Called when a callback throws or the socket reports an error after start. */
  readonly onCallbackError?: (error: unknown) => void;
  /** Bind address. Default 0.0.0.0 (`::` style addresses bind udp6). */
  readonly host?: string;
  /** Bind port. Default 2948 (`WAP_PUSH_PORT`); 0 picks a free port (read it back from `start()`). */
  readonly port?: number;
  /** Largest datagram judged, in bytes; larger ones are dropped as `oversize`. Default 1024. */
  readonly maxDatagramBytes?: number;
  /** Clock for the replay window, ms. Default `Date.now`. */
  readonly now?: () => number;
}

export interface UdpPushListenerStats {
  readonly received: number;
  readonly oversize: number;
  readonly triggers: number;
  readonly dropped: number;
  readonly callbackErrors: number;
  readonly socketErrors: number;
}

export const DEFAULT_MAX_DATAGRAM_BYTES = 1024;

export class UdpPushListener {
  readonly #opts: UdpPushListenerOptions;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #socket: dgram.Socket | undefined;
  #starting: Promise<{ port: number }> | undefined;
  #stopping: Promise<void> | undefined;
  #received = 0;
  #oversize = 0;
  #triggers = 0;
  #dropped = 0;
  #callbackErrors = 0;
  #socketErrors = 0;

  constructor(options: UdpPushListenerOptions) {
    this.#opts = options;
    this.#maxBytes = options.maxDatagramBytes ?? DEFAULT_MAX_DATAGRAM_BYTES;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Binds and resolves with the bound port. Calling it again returns the same promise.
   * @throws the bind error (EADDRINUSE, EACCES...), or an Error when called after `stop()`.
   */
  start(): Promise<{ port: number }> {
    if (this.#stopping !== undefined) return Promise.reject(new Error("the UDP push listener was stopped"));
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<{ port: number }> {
    const host = this.#opts.host ?? "0.0.0.0";
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    this.#socket = socket;
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(this.#opts.port ?? WAP_PUSH_PORT, host, () => {
          socket.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      this.#socket = undefined;
      socket.close();
      throw e;
    }
    socket.on("error", (e) => {
      this.#socketErrors++;
      this.#report(e);
    });
    socket.on("message", (msg, rinfo) => {
      this.#handle(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), {
        address: rinfo.address,
        port: rinfo.port,
      });
    });
    return { port: socket.address().port };
  }

  /** Closes the socket; leaves no handle. Idempotent, never throws. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (this.#starting !== undefined) {
      try {
        await this.#starting;
      } catch {
        // A failed start already closed its socket; nothing to stop.
      }
    }
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket === undefined) return;
    await new Promise<void>((resolve) => {
      socket.close(() => {
        resolve();
      });
    });
  }

  /** Counters since construction (the gate keeps its own per-reason counters). */
  stats(): UdpPushListenerStats {
    return {
      received: this.#received,
      oversize: this.#oversize,
      triggers: this.#triggers,
      dropped: this.#dropped,
      callbackErrors: this.#callbackErrors,
      socketErrors: this.#socketErrors,
    };
  }

  #handle(bytes: Uint8Array, source: PushSource): void {
    this.#received++;
    if (bytes.length > this.#maxBytes) {
      this.#oversize++;
      this.#dropped++;
      this.#callDrop(
        {
          kind: "dropped",
          reason: "oversize",
          detail: `datagram of ${bytes.length} bytes is over ${this.#maxBytes}`,
        },
        source,
      );
      return;
    }
    const verdict = this.#opts.gate.accept(bytes, this.#now());
    if (verdict.kind === "dropped") {
      this.#dropped++;
      this.#callDrop(verdict, source);
      return;
    }
    this.#triggers++;
    try {
      const result = this.#opts.onTrigger(verdict, source);
      if (result instanceof Promise) {
        result.catch((e: unknown) => {
          this.#callbackFailed(e);
        });
      }
    } catch (e) {
      this.#callbackFailed(e);
    }
  }

  #callDrop(drop: ListenerDrop, source: PushSource): void {
    try {
      this.#opts.onDrop?.(drop, source);
    } catch (e) {
      this.#callbackFailed(e);
    }
  }

  #callbackFailed(e: unknown): void {
    this.#callbackErrors++;
    this.#report(e);
  }

  #report(e: unknown): void {
    try {
      this.#opts.onCallbackError?.(e);
    } catch {
      // The error reporter itself failed: the error is already counted; nothing more we can do.
    }
  }
}
