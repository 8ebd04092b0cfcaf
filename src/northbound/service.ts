/**
 * The northbound service: decides when the gateway talks to each of its DM servers, and runs one
 * management session at a time per server (protocol.md 3.1, 5.1).
 *
 *   Pkg#0 (UDP 2948 / SMS) --> acceptPush --> NotificationGate --> notified() ---------+
 *   outbox.enqueue(...) -----> alertsQueued() ------------------------------------------+--> per server:
 *   check-in timer (per account) ------------------------------------------------------+    idle | running | backoff
 *                                                                                           |
 *                          runManagementSession (client-session.ts over a MessageTransport) <+
 *
 * Decisions:
 * - One session at a time per server. A trigger that comes while one runs is kept (at most one:
 *   a Pkg#0 replaces a waiting client trigger, since its session sends the alerts too) and runs
 *   when the session ends.
 * - After a failed session (transport failure, refused credentials, protocol error) the server is
 *   retried with a client-initiated session after an exponential backoff with jitter; alerts and
 *   check-ins wait for that retry instead of hammering a server that is down. A Pkg#0 is the server
 *   saying it is back: it runs at once and cancels the wait.
 * - A session that ended well but left alerts unacknowledged (the server answered them with an
 *   error status) counts as a failure for the backoff, so a server that refuses an alert is not
 *   sent it in a tight loop; the outbox keeps it (outbox.ts) until its bounds drop it.
 * - A Pkg#0 whose digest matched only a fallback nonce starts a session whose credentials are built
 *   on those bytes (protocol.md 5.1); both sides then re-issue nonces through Chal.
 * - ui-mode "user-interaction" asks for a user: `userInteractionNotifications` says whether a
 *   headless box runs such a session anyway (default) or drops the notification. The initiator bit
 *   is logged; both kinds open a server-initiated session (Alert 1200), which is what the server
 *   that sent the Pkg#0 waits for.
 * - Nothing here throws out of a timer: a store failure while persisting a session is logged as an
 *   error, counted, and treated as a failed session.
 */
import { backoffDelay, type BackoffOptions } from "../core/backoff.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import type { HeadlessPolicy } from "../dm/user-interaction.js";
import type { Encoding } from "../syncml/index.js";
import type { DmTree } from "../tree/tree.js";
import type { MessageTransport } from "./http-transport.js";
import type { NotificationGate, NotificationTrigger } from "./notification.js";
import type { AlertOutbox } from "./outbox.js";
import {
  runManagementSession,
  type SessionAccount,
  type SessionSummary,
  type SessionTrigger,
} from "./session-runner.js";

/** One DM server the gateway is managed by (a DMAcc account) and how to reach it. */
export interface NorthboundServer {
  readonly account: SessionAccount;
  /** WBXML by default (protocol.md 6.5); XML where the server wants it. */
  readonly encoding: Encoding;
  /** HTTP(S) with this account's TLS material. */
  readonly transport: MessageTransport;
  /** A client-initiated session every this many ms; 0 for none. */
  readonly checkInIntervalMs: number;
}

/** Why a session was asked for (logs, stats). */
export type SessionCause = "notification" | "alerts" | "check-in" | "retry" | "manual";

/** What `notified` did with a verified notification. */
export type NotificationOutcome = "started" | "queued" | "refused" | "unknown-server" | "stopped";

export interface NorthboundServiceOptions {
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
  /** `./DevInfo/DevId`. */
  readonly devId: string;
  readonly servers: readonly NorthboundServer[];
  /** Our MaxMsgSize, bytes. */
  readonly maxMsgSize: number;
  /** Deadline of each HTTP exchange, ms. */
  readonly timeoutMs: number;
  /** Most messages we send in one session. */
  readonly maxMessages: number;
  /** Retry policy after a failed session; defaults: 10 s doubling to 30 min, ±30 %. */
  readonly backoff?: BackoffOptions;
  /** Answers to the server's user-interaction alerts (1100-1104). */
  readonly userInteraction?: HeadlessPolicy;
  /** A Pkg#0 with ui-mode "user-interaction": run its session ("accept", default) or drop it. */
  readonly userInteractionNotifications?: "accept" | "refuse";
  /** Checks each pushed Pkg#0 (`acceptPush`); without it `acceptPush` drops everything. */
  readonly gate?: NotificationGate;
  /** "dmgw:northbound". */
  readonly log?: Logger;
  /** Randomness for nonces and session ids. */
  randomBytes(size: number): Uint8Array;
  /** [0, 1) for the backoff jitter; default Math.random. */
  readonly random?: () => number;
  /** Clock for the replay window of the gate, ms; default Date.now. */
  readonly now?: () => number;
  /** Called after each session (metrics, tests); a throw is logged and ignored. */
  readonly onSession?: (serverId: string, summary: SessionSummary, cause: SessionCause) => void;
}

export const DEFAULT_SESSION_BACKOFF: Required<BackoffOptions> = {
  initialMs: 10_000,
  maxMs: 30 * 60_000,
  factor: 2,
  jitter: 0.3,
};

export interface ServerStats {
  readonly serverId: string;
  readonly state: "idle" | "running" | "backoff";
  readonly sessions: number;
  readonly failures: number;
  /** Sessions the server ended with a message that does not decode. */
  readonly codecErrors: number;
  /** Failed sessions since the last good one. */
  readonly consecutiveFailures: number;
  /** Delay of the retry armed now, ms (backoff only). */
  readonly retryInMs?: number;
}

export interface NorthboundStats {
  readonly servers: readonly ServerStats[];
  readonly notifications: { readonly accepted: number; readonly dropped: number; readonly refused: number };
}

interface Pending {
  readonly trigger: SessionTrigger;
  readonly cause: SessionCause;
}

interface ServerState {
  readonly server: NorthboundServer;
  running: Promise<void> | undefined;
  controller: AbortController | undefined;
  pending: Pending | undefined;
  consecutiveFailures: number;
  sessions: number;
  failures: number;
  codecErrors: number;
  retryTimer: NodeJS.Timeout | undefined;
  retryDelayMs: number | undefined;
  checkInTimer: NodeJS.Timeout | undefined;
}

export class NorthboundService {
  readonly #o: NorthboundServiceOptions;
  readonly #log: Logger;
  readonly #servers = new Map<string, ServerState>();
  #started = false;
  #stopped = false;
  #accepted = 0;
  #dropped = 0;
  #refused = 0;

  constructor(options: NorthboundServiceOptions) {
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
    for (const server of options.servers) {
      this.#servers.set(server.account.serverId, {
        server,
        running: undefined,
        controller: undefined,
        pending: undefined,
        consecutiveFailures: 0,
        sessions: 0,
        failures: 0,
        codecErrors: 0,
        retryTimer: undefined,
        retryDelayMs: undefined,
        checkInTimer: undefined,
      });
    }
  }

  /**
   * Arms the check-in timers and opens a session with every server that has alerts waiting (left
   * by the last run of the process). Idempotent.
   */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    for (const state of this.#servers.values()) {
      const every = state.server.checkInIntervalMs;
      if (every > 0) {
        state.checkInTimer = setInterval(() => {
          this.#request(state, { trigger: { kind: "client" }, cause: "check-in" });
        }, every);
      }
    }
    const waiting = this.#o.outbox.serverIds();
    for (const serverId of waiting) this.alertsQueued(serverId);
  }

  /** Judges a pushed WSP datagram (UDP or SMS) and, when it is a verified Pkg#0, acts on it. */
  acceptPush(datagram: Uint8Array, origin: string): NotificationOutcome | "dropped" {
    const gate = this.#o.gate;
    if (gate === undefined) {
      this.#dropped++;
      this.#log.warn("push dropped: no notification gate configured", { origin, bytes: datagram.length });
      return "dropped";
    }
    const verdict = gate.accept(datagram, (this.#o.now ?? Date.now)());
    if (verdict.kind === "dropped") {
      this.notificationDropped(verdict.reason, verdict.detail, origin, datagram);
      return "dropped";
    }
    return this.notified(verdict, origin);
  }

  /** Logs and counts a notification a source or the gate refused (warn: input from outside). */
  notificationDropped(reason: string, detail: string, origin: string, datagram?: Uint8Array): void {
    this.#dropped++;
    this.#log.warn(`notification dropped (${reason}): ${detail}`, {
      reason,
      origin,
      ...(datagram !== undefined && { bytes: datagram.length, head: datagram.subarray(0, 16) }),
    });
  }

  /** Acts on a verified notification: a server-initiated session with its SessionID. */
  notified(trigger: NotificationTrigger, origin = "push"): NotificationOutcome {
    if (this.#stopped) return "stopped";
    const state = this.#servers.get(trigger.serverId);
    const fields = {
      serverId: trigger.serverId,
      sessionId: trigger.sessionId,
      uiMode: trigger.uiMode,
      initiator: trigger.initiator,
      origin,
    };
    if (state === undefined) {
      this.#dropped++;
      this.#log.warn("notification for a server this gateway has no northbound connection to", fields);
      return "unknown-server";
    }
    if (trigger.uiMode === "user-interaction" && this.#o.userInteractionNotifications === "refuse") {
      this.#refused++;
      this.#log.info("notification refused: it asks for user interaction and none is configured", fields);
      return "refused";
    }
    if (!trigger.versionSupported) {
      this.#log.warn(`notification version ${trigger.version / 10} is not 1.1 or 1.2; acting on it`, fields);
    }
    const fallback = trigger.nonceUsed !== "stored";
    if (fallback) {
      this.#log.warn("the server keyed its notification with the fallback nonce; nonces will be re-issued", {
        ...fields,
        fallback: trigger.nonceUsed,
      });
    }
    this.#accepted++;
    this.#log.info("notification accepted", fields);
    const sessionTrigger: SessionTrigger = {
      kind: "server",
      sessionId: trigger.sessionId,
      ...(fallback && { fallbackNonce: Uint8Array.from(trigger.nonceBytes) }),
    };
    return this.#request(state, { trigger: sessionTrigger, cause: "notification" });
  }

  /** New alerts are in the outbox for `serverId`: a client-initiated session delivers them. */
  alertsQueued(serverId: string): void {
    const state = this.#servers.get(serverId);
    if (state === undefined) {
      this.#log.warn("alerts queued for a server this gateway has no northbound connection to", { serverId });
      return;
    }
    this.#request(state, { trigger: { kind: "client" }, cause: "alerts" });
  }

  /** A client-initiated session now (operator's request), unless one runs or a backoff waits. */
  checkIn(serverId: string): NotificationOutcome {
    const state = this.#servers.get(serverId);
    if (state === undefined) return "unknown-server";
    return this.#request(state, { trigger: { kind: "client" }, cause: "manual" });
  }

  /** Resolves when no session runs and none is about to (backoff timers are not waited for). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#servers.values()].flatMap((s) =>
        s.running === undefined ? [] : [s.running],
      );
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /** Stops timers, aborts sessions in flight (Alert 1223 between messages), waits for them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const state of this.#servers.values()) {
      clearInterval(state.checkInTimer);
      clearTimeout(state.retryTimer);
      state.checkInTimer = undefined;
      state.retryTimer = undefined;
      state.pending = undefined;
      state.controller?.abort();
    }
    await this.idle();
  }

  stats(): NorthboundStats {
    return {
      servers: [...this.#servers.values()].map((s) => ({
        serverId: s.server.account.serverId,
        state: s.running !== undefined ? "running" : s.retryTimer !== undefined ? "backoff" : "idle",
        sessions: s.sessions,
        failures: s.failures,
        codecErrors: s.codecErrors,
        consecutiveFailures: s.consecutiveFailures,
        ...(s.retryTimer !== undefined && s.retryDelayMs !== undefined && { retryInMs: s.retryDelayMs }),
      })),
      notifications: { accepted: this.#accepted, dropped: this.#dropped, refused: this.#refused },
    };
  }

  #request(state: ServerState, next: Pending): NotificationOutcome {
    if (this.#stopped) return "stopped";
    if (state.running !== undefined) {
      // One session at a time: keep the trigger; a Pkg#0 wins over a client trigger.
      if (state.pending === undefined || next.trigger.kind === "server") state.pending = next;
      return "queued";
    }
    if (state.retryTimer !== undefined && next.cause !== "notification" && next.cause !== "retry") {
      // The server failed us lately: the armed retry delivers what this trigger would.
      return "queued";
    }
    clearTimeout(state.retryTimer);
    state.retryTimer = undefined;
    this.#run(state, next);
    return "started";
  }

  #run(state: ServerState, job: Pending): void {
    const o = this.#o;
    const server = state.server;
    const serverId = server.account.serverId;
    const controller = new AbortController();
    state.controller = controller;
    const log = this.#log.child("session");
    state.running = (async () => {
      let summary: SessionSummary | undefined;
      let settledAlerts = true;
      try {
        const before = new Set(o.outbox.pending(serverId).map((a) => a.id));
        summary = await runManagementSession({
          tree: o.tree,
          outbox: o.outbox,
          transport: server.transport,
          account: server.account,
          devId: o.devId,
          trigger: job.trigger,
          encoding: server.encoding,
          maxMsgSize: o.maxMsgSize,
          timeoutMs: o.timeoutMs,
          maxMessages: o.maxMessages,
          randomBytes: (n) => o.randomBytes(n),
          signal: controller.signal,
          ...(o.userInteraction !== undefined && { userInteraction: o.userInteraction }),
          log,
        });
        // Alerts the outbox's bounds dropped meanwhile are settled too: only those still there count.
        const still = new Set(o.outbox.pending(serverId).map((a) => a.id));
        settledAlerts = [...before].every((id) => !still.has(id));
      } catch (e) {
        // The store failed while persisting: the session's effects are not recorded.
        log.error("the session's outcome could not be stored", {
          serverId,
          error: e instanceof Error ? e.message : String(e),
        });
      }
      state.sessions++;
      if (summary?.undecodable === true) state.codecErrors++;
      const ok = summary?.ok === true && settledAlerts;
      const fields = {
        serverId,
        cause: job.cause,
        ...(summary !== undefined && {
          sessionId: summary.sessionId,
          messages: summary.messages,
          alertsAcknowledged: summary.alertsAcknowledged.length,
          bytesSent: summary.bytesSent,
          bytesReceived: summary.bytesReceived,
        }),
      };
      if (summary?.ok === true) log.info("session ended", fields);
      else if (summary !== undefined) {
        log.warn(`session failed: ${summary.reason ?? "unknown"}`, {
          ...fields,
          ...(summary.transportFailure !== undefined && { transportFailure: summary.transportFailure }),
        });
      }
      if (summary?.ok === true && !settledAlerts) {
        log.warn("the server left alerts unacknowledged; they stay in the outbox", { serverId });
      }
      if (summary !== undefined && o.onSession !== undefined) {
        try {
          o.onSession(serverId, summary, job.cause);
        } catch (e) {
          log.error("an onSession listener threw", { error: e instanceof Error ? e.message : String(e) });
        }
      }
      if (ok) {
        state.consecutiveFailures = 0;
      } else {
        state.failures++;
        state.consecutiveFailures++;
      }
    })().finally(() => {
      state.running = undefined;
      state.controller = undefined;
      if (this.#stopped) return;
      if (state.consecutiveFailures > 0) this.#armRetry(state);
      const pending = state.pending;
      state.pending = undefined;
      if (pending !== undefined) this.#request(state, pending);
    });
  }

  #armRetry(state: ServerState): void {
    const delay = backoffDelay(
      state.consecutiveFailures - 1,
      this.#o.backoff ?? {},
      DEFAULT_SESSION_BACKOFF,
      this.#o.random,
    );
    clearTimeout(state.retryTimer);
    state.retryDelayMs = delay;
    this.#log.debug(() => `retrying ${state.server.account.serverId} in ${delay} ms`);
    state.retryTimer = setTimeout(() => {
      state.retryTimer = undefined;
      state.retryDelayMs = undefined;
      this.#request(state, { trigger: { kind: "client" }, cause: "retry" });
    }, delay);
  }
}
