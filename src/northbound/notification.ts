/**
 * The gate a DM Notification (Pkg#0) passes before the gateway opens a server-initiated session:
 * unwrap the WSP push, parse the Pkg#0, find the DMAcc account of its server id, check the digest
 * (stored nonce, then the fallback nonces), refuse replays. Pure: bytes and the time in, a verdict
 * out; the UDP listener (or the SMS reader) does the I/O and the caller runs the session.
 *
 * ```
 *   datagram -> decodeWspPush -> isDmNotificationPush -> parsePackage0 -> account by server id
 *            -> verifyPackage0 (stored | zero-bytes | zero-ascii) -> version policy -> replay window
 *            -> { kind: "trigger" } | { kind: "dropped", reason }
 * ```
 *
 * Decisions:
 * - `accept` takes a WSP push only (UDP port 2948 carries nothing else, protocol.md 5.3); a
 *   transport that already unwrapped the push (SMS after its own WSP decode) calls `acceptPackage0`.
 * - The replay check comes after the digest check, so a forged datagram can neither start a session
 *   nor poison the window (and block the real notification that follows it).
 * - A (serverId, sessionId) accepted less than `replayWindowMs` ago is dropped as `replay`
 *   (protocol.md 5.1: "start only one session"). The window holds at most `maxReplayEntries`; past
 *   that the oldest entry is evicted (counted in `stats().evicted`), so memory stays bounded at the
 *   cost of forgetting the oldest ids under a flood of valid notifications.
 * - A version other than 11 or 12 is accepted by default and flagged in the trigger
 *   (`versionSupported: false`, for the caller to log), as `package0.ts` and protocol.md 5.2 say;
 *   `dropUnsupportedVersions: true` drops it as `unsupported-version` instead. Checked after the
 *   digest, so only a genuine notification is reported as such.
 * - An account matches when its ServerID equals the Pkg#0 server id, else when one of its names
 *   (the SRVCRED AAuthName) does; the digest is tried with every name of that account.
 * - Drop details never carry the password or a nonce; they may carry the server id (not a secret).
 */
import type { TreeNode } from "../tree/tree.js";
import {
  parsePackage0,
  sessionIdText,
  verifyPackage0,
  type Initiator,
  type Package0NonceKind,
  type UiMode,
} from "../dm/package0.js";
import { decodeWspPush, isDmNotificationPush } from "../syncml/wsp-push.js";

/** What the gate needs of one DMAcc account (its SRVCRED credentials). */
export interface NotificationAccount {
  /** The account's ServerID. */
  readonly serverId: string;
  /** Names to try in the digest, in order: the ServerID and the SRVCRED AAuthName. */
  readonly names: readonly string[];
  /** SRVCRED AAuthSecret. */
  readonly password: string;
  /** SRVCRED AAuthData (raw bytes); undefined when none is stored (only the fallbacks are tried). */
  readonly nonce: Uint8Array | undefined;
}

export type NotificationDropReason =
  "not-dm-push" | "malformed" | "unknown-server" | "bad-digest" | "replay" | "unsupported-version";

export const NOTIFICATION_DROP_REASONS: readonly NotificationDropReason[] = [
  "not-dm-push",
  "malformed",
  "unknown-server",
  "bad-digest",
  "replay",
  "unsupported-version",
];

/** A verified notification: the caller opens a server-initiated session with it. */
export interface NotificationTrigger {
  readonly kind: "trigger";
  /** The ServerID of the matching DMAcc account. */
  readonly serverId: string;
  /** The Pkg#1 SessionID (upper-case hex, `sessionIdText`). */
  readonly sessionId: string;
  readonly uiMode: UiMode;
  readonly initiator: Initiator;
  /** Notification version times ten (11 = "1.1"). */
  readonly version: number;
  /** False for a version other than 11 or 12 (only when `dropUnsupportedVersions` is off): log it. */
  readonly versionSupported: boolean;
  /**
   * Which nonce made the digest match. Not `stored`: the server used the fallback nonce, so the
   * session must build its credentials on `nonceBytes` and both sides re-issue nonces (protocol.md 5.1).
   */
  readonly nonceUsed: Package0NonceKind;
  /** The nonce bytes that matched. Secret: never log them. */
  readonly nonceBytes: Uint8Array;
  /** The optional vendor-specific trigger body (may be empty). */
  readonly vendorSpecific: Uint8Array;
}

export interface NotificationDrop {
  readonly kind: "dropped";
  readonly reason: NotificationDropReason;
  /** Human text for the log: no secrets. */
  readonly detail: string;
  /** The server id the Pkg#0 named, when it parsed. */
  readonly serverId?: string;
}

export type NotificationVerdict = NotificationTrigger | NotificationDrop;

export interface NotificationGateOptions {
  /** Lists the DMAcc accounts; called once per notification, so changes to the tree take effect. */
  readonly accounts: () => readonly NotificationAccount[];
  /** How long an accepted (serverId, sessionId) blocks a repeat, in ms. Default 10 minutes. */
  readonly replayWindowMs?: number;
  /** Most (serverId, sessionId) pairs remembered. Default 1024. */
  readonly maxReplayEntries?: number;
  /** Drop versions other than 11 and 12 instead of flagging them. Default false. */
  readonly dropUnsupportedVersions?: boolean;
}

export interface NotificationGateStats {
  readonly triggers: number;
  readonly dropped: Readonly<Record<NotificationDropReason, number>>;
  /** Pairs in the replay window now. */
  readonly replayEntries: number;
  /** Pairs evicted early because the window was full. */
  readonly evicted: number;
}

export const DEFAULT_REPLAY_WINDOW_MS = 10 * 60 * 1000;
export const DEFAULT_MAX_REPLAY_ENTRIES = 1024;

export class NotificationGate {
  readonly #accounts: () => readonly NotificationAccount[];
  readonly #windowMs: number;
  readonly #maxEntries: number;
  readonly #dropUnsupported: boolean;
  /** Key -> time accepted (ms). Insertion order is acceptance order: the oldest comes first. */
  readonly #seen = new Map<string, number>();
  readonly #dropped: Record<NotificationDropReason, number> = {
    "not-dm-push": 0,
    malformed: 0,
    "unknown-server": 0,
    "bad-digest": 0,
    replay: 0,
    "unsupported-version": 0,
  };
  #triggers = 0;
  #evicted = 0;

  /** @throws RangeError for a window that is not a finite number >= 0 or a bound that is not an integer >= 1. */
  constructor(options: NotificationGateOptions) {
    const windowMs = options.replayWindowMs ?? DEFAULT_REPLAY_WINDOW_MS;
    const maxEntries = options.maxReplayEntries ?? DEFAULT_MAX_REPLAY_ENTRIES;
    if (!Number.isFinite(windowMs) || windowMs < 0) {
      throw new RangeError(`replayWindowMs ${String(windowMs)} must be a finite number >= 0`);
    }
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`maxReplayEntries ${String(maxEntries)} must be an integer >= 1`);
    }
    this.#accounts = options.accounts;
    this.#windowMs = windowMs;
    this.#maxEntries = maxEntries;
    this.#dropUnsupported = options.dropUnsupportedVersions ?? false;
  }

  /** Judges a WSP push datagram (the payload of a UDP datagram to port 2948). */
  accept(bytes: Uint8Array, nowMs: number): NotificationVerdict {
    const push = decodeWspPush(bytes);
    if (!push.ok) {
      return this.#drop("not-dm-push", `not a WSP push (${push.error.code}, ${bytes.length} bytes)`);
    }
    if (!isDmNotificationPush(push.value)) {
      return this.#drop(
        "not-dm-push",
        `WSP push for ${String(push.value.appId)} of type ${push.value.contentType}, not a DM notification`,
      );
    }
    return this.acceptPackage0(push.value.body, nowMs);
  }

  /** Judges a bare Pkg#0 (for a transport that already took it out of its WSP push). */
  acceptPackage0(bytes: Uint8Array, nowMs: number): NotificationVerdict {
    const parsed = parsePackage0(bytes);
    if (!parsed.ok) {
      return this.#drop("malformed", `Pkg#0 does not parse (${parsed.error.code}, ${bytes.length} bytes)`);
    }
    const n = parsed.notification;
    const account = findAccount(this.#accounts(), n.serverId);
    if (account === undefined) {
      return this.#drop(
        "unknown-server",
        `no DMAcc account for server id ${JSON.stringify(n.serverId)}`,
        n.serverId,
      );
    }
    const verified = verifyPackage0(parsed, {
      names: [account.serverId, ...account.names],
      password: account.password,
      nonce: account.nonce,
    });
    if (!verified.ok) {
      return this.#drop(
        "bad-digest",
        `Pkg#0 digest does not match the stored or fallback nonces of server ${account.serverId}`,
        account.serverId,
      );
    }
    if (!parsed.versionSupported && this.#dropUnsupported) {
      return this.#drop(
        "unsupported-version",
        `Pkg#0 version ${n.version} is not 11 or 12 (server ${account.serverId})`,
        account.serverId,
      );
    }
    const sessionId = sessionIdText(n.sessionId);
    const key = `${account.serverId}\u0000${sessionId}`;
    this.#expire(nowMs);
    const seenAt = this.#seen.get(key);
    if (seenAt !== undefined && nowMs - seenAt < this.#windowMs) {
      return this.#drop(
        "replay",
        `session ${sessionId} of server ${account.serverId} was notified ${nowMs - seenAt} ms ago`,
        account.serverId,
      );
    }
    this.#remember(key, nowMs);
    this.#triggers++;
    return {
      kind: "trigger",
      serverId: account.serverId,
      sessionId,
      uiMode: n.uiMode,
      initiator: n.initiator,
      version: n.version,
      versionSupported: parsed.versionSupported,
      nonceUsed: verified.nonce,
      nonceBytes: verified.nonceBytes,
      vendorSpecific: n.vendorSpecific,
    };
  }

  /** Counters since construction. */
  stats(): NotificationGateStats {
    return {
      triggers: this.#triggers,
      dropped: { ...this.#dropped },
      replayEntries: this.#seen.size,
      evicted: this.#evicted,
    };
  }

  #drop(reason: NotificationDropReason, detail: string, serverId?: string): NotificationDrop {
    this.#dropped[reason]++;
    return serverId === undefined
      ? { kind: "dropped", reason, detail }
      : { kind: "dropped", reason, detail, serverId };
  }

  /** Forgets pairs older than the window, oldest first (stops at the first one still inside). */
  #expire(nowMs: number): void {
    for (const [key, at] of this.#seen) {
      if (nowMs - at < this.#windowMs) break;
      this.#seen.delete(key);
    }
  }

  #remember(key: string, nowMs: number): void {
    this.#seen.delete(key);
    this.#seen.set(key, nowMs);
    while (this.#seen.size > this.#maxEntries) {
      const oldest = this.#seen.keys().next();
      if (oldest.done === true) break;
      this.#seen.delete(oldest.value);
      this.#evicted++;
    }
  }
}

function findAccount(
  accounts: readonly NotificationAccount[],
  serverId: string,
): NotificationAccount | undefined {
  return accounts.find((a) => a.serverId === serverId) ?? accounts.find((a) => a.names.includes(serverId));
}

/** The part of `DmTree` `notificationAccountsFromTree` reads (gateway-side, secrets included). */
export interface DmAccReader {
  read(path: string): TreeNode | undefined;
  childNames(path: string): string[] | undefined;
}

/**
 * The DMAcc accounts as the gate wants them: for each `./DMAcc/<x>` with a ServerID, its AppAuth
 * entry whose AAuthLevel is SRVCRED (AAuthName, AAuthSecret, AAuthData). An account without SRVCRED
 * is left out (no Pkg#0 of its server can verify); an empty AAuthData means no stored nonce.
 */
export function notificationAccountsFromTree(tree: DmAccReader, root = "./DMAcc"): NotificationAccount[] {
  const out: NotificationAccount[] = [];
  for (const x of tree.childNames(root) ?? []) {
    const base = `${root}/${x}`;
    const serverId = text(tree.read(`${base}/ServerID`));
    if (serverId === undefined) continue;
    for (const a of tree.childNames(`${base}/AppAuth`) ?? []) {
      const auth = `${base}/AppAuth/${a}`;
      if (text(tree.read(`${auth}/AAuthLevel`)) !== "SRVCRED") continue;
      const name = text(tree.read(`${auth}/AAuthName`));
      const data = tree.read(`${auth}/AAuthData`)?.value;
      const nonce = typeof data === "string" ? new TextEncoder().encode(data) : data;
      out.push({
        serverId,
        names: name === undefined || name === serverId ? [serverId] : [serverId, name],
        password: text(tree.read(`${auth}/AAuthSecret`)) ?? "",
        nonce: nonce === undefined || nonce.length === 0 ? undefined : Uint8Array.from(nonce),
      });
      break;
    }
  }
  return out;
}

function text(node: TreeNode | undefined): string | undefined {
  const v = node?.value;
  if (v === undefined) return undefined;
  return typeof v === "string" ? v : new TextDecoder().decode(v);
}
