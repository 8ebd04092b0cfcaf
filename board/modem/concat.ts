/**
 * Reassembly of concatenated SMS (TS 23.040 9.2.3.24.1 / .8). Pure: the caller passes the time in.
 *
 * A message is keyed by originator + reference width + reference + total, so two senders (or two
 * messages with a reused reference but a different part count) never mix. Parts may come in any
 * order; a part number seen before is a duplicate and ignored (the first copy wins). The number of
 * incomplete messages is bounded: a new message beyond `maxPending` evicts the oldest one. An
 * incomplete message is dropped `timeoutMs` after its first part arrived. Each part carries an
 * opaque `tag` (the modem uses the storage slot) so the caller can release what was dropped.
 */

export interface ConcatPart<Tag> {
  /** Originating address as decoded (the key includes it). */
  readonly originator: string;
  readonly reference: number;
  readonly referenceBits: 8 | 16;
  /** 1..255. */
  readonly total: number;
  /** 1..total. */
  readonly sequence: number;
  readonly data: Uint8Array;
  readonly tag: Tag;
}

export interface ReassemblerOptions {
  /** Incomplete messages kept at most; default 16. */
  readonly maxPending?: number;
  /** How long an incomplete message waits for its other parts, from its first part; default 10 min. */
  readonly timeoutMs?: number;
}

export const DEFAULT_MAX_PENDING = 16;
export const DEFAULT_REASSEMBLY_TIMEOUT_MS = 10 * 60_000;

export interface DroppedMessage<Tag> {
  readonly key: string;
  readonly reason: "timeout" | "evicted";
  readonly received: number;
  readonly total: number;
  /** Tags of the parts that had arrived, in part order. */
  readonly tags: readonly Tag[];
}

export type AddResult<Tag> =
  | {
      readonly kind: "complete";
      readonly key: string;
      /** The parts' data joined in part order. */
      readonly data: Uint8Array;
      /** Tags of every part, in part order. */
      readonly tags: readonly Tag[];
    }
  | { readonly kind: "pending"; readonly key: string; readonly received: number; readonly total: number }
  | { readonly kind: "duplicate"; readonly key: string; readonly tag: Tag }
  | { readonly kind: "invalid"; readonly reason: string; readonly tag: Tag };

export interface AddOutcome<Tag> {
  readonly result: AddResult<Tag>;
  /** Messages dropped while adding (timed out, or evicted to make room). */
  readonly dropped: readonly DroppedMessage<Tag>[];
}

export interface ReassemblerCounters {
  completed: number;
  duplicates: number;
  invalid: number;
  /** Incomplete messages dropped after `timeoutMs`. */
  expired: number;
  /** Incomplete messages dropped to stay within `maxPending`. */
  evicted: number;
}

interface Pending<Tag> {
  readonly firstSeenMs: number;
  readonly total: number;
  readonly parts: Map<number, { readonly data: Uint8Array; readonly tag: Tag }>;
}

export class Reassembler<Tag> {
  readonly #maxPending: number;
  readonly #timeoutMs: number;
  // Insertion order = age order, which eviction relies on.
  readonly #pending = new Map<string, Pending<Tag>>();
  readonly #counters: ReassemblerCounters = {
    completed: 0,
    duplicates: 0,
    invalid: 0,
    expired: 0,
    evicted: 0,
  };

  constructor(options: ReassemblerOptions = {}) {
    this.#maxPending = Math.max(1, options.maxPending ?? DEFAULT_MAX_PENDING);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_REASSEMBLY_TIMEOUT_MS;
  }

  /** The key a part files under. */
  static keyOf(
    part: Pick<ConcatPart<unknown>, "originator" | "referenceBits" | "reference" | "total">,
  ): string {
    return `${part.originator}|${part.referenceBits}:${part.reference}|${part.total}`;
  }

  /** Number of incomplete messages held. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** A snapshot of the counters. */
  get counters(): Readonly<ReassemblerCounters> {
    return { ...this.#counters };
  }

  /** True when a part with this tag is held (compared with `===`). */
  holds(tag: Tag): boolean {
    for (const p of this.#pending.values()) {
      for (const part of p.parts.values()) if (part.tag === tag) return true;
    }
    return false;
  }

  /** Adds a part at `nowMs`; first drops what has timed out. */
  add(part: ConcatPart<Tag>, nowMs: number): AddOutcome<Tag> {
    const dropped: DroppedMessage<Tag>[] = [...this.expire(nowMs)];
    if (!Number.isInteger(part.total) || part.total < 1 || part.total > 255) {
      this.#counters.invalid++;
      return { result: { kind: "invalid", reason: "total outside 1..255", tag: part.tag }, dropped };
    }
    if (!Number.isInteger(part.sequence) || part.sequence < 1 || part.sequence > part.total) {
      this.#counters.invalid++;
      return { result: { kind: "invalid", reason: "sequence outside 1..total", tag: part.tag }, dropped };
    }
    const key = Reassembler.keyOf(part);
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      if (part.total === 1) {
        this.#counters.completed++;
        return { result: { kind: "complete", key, data: part.data, tags: [part.tag] }, dropped };
      }
      while (this.#pending.size >= this.#maxPending) {
        const oldest = this.#pending.keys().next();
        if (oldest.done === true) break;
        dropped.push(this.#drop(oldest.value, "evicted"));
      }
      pending = { firstSeenMs: nowMs, total: part.total, parts: new Map() };
      this.#pending.set(key, pending);
    }
    if (pending.parts.has(part.sequence)) {
      this.#counters.duplicates++;
      return { result: { kind: "duplicate", key, tag: part.tag }, dropped };
    }
    pending.parts.set(part.sequence, { data: part.data, tag: part.tag });
    if (pending.parts.size < pending.total) {
      return {
        result: { kind: "pending", key, received: pending.parts.size, total: pending.total },
        dropped,
      };
    }
    this.#pending.delete(key);
    this.#counters.completed++;
    const ordered = [...pending.parts.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p);
    const data = new Uint8Array(ordered.reduce((n, p) => n + p.data.length, 0));
    let at = 0;
    for (const p of ordered) {
      data.set(p.data, at);
      at += p.data.length;
    }
    return { result: { kind: "complete", key, data, tags: ordered.map((p) => p.tag) }, dropped };
  }

  /** Drops the incomplete messages whose first part is `timeoutMs` or more old at `nowMs`. */
  expire(nowMs: number): DroppedMessage<Tag>[] {
    const dropped: DroppedMessage<Tag>[] = [];
    for (const [key, p] of this.#pending) {
      if (nowMs - p.firstSeenMs >= this.#timeoutMs) dropped.push(this.#drop(key, "timeout"));
    }
    return dropped;
  }

  /** When the next incomplete message times out, or `undefined` when none is held. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const p of this.#pending.values()) {
      const at = p.firstSeenMs + this.#timeoutMs;
      if (next === undefined || at < next) next = at;
    }
    return next;
  }

  /** Forgets everything held (counters stay). Returns what was held, as evictions are. */
  clear(): DroppedMessage<Tag>[] {
    return [...this.#pending.keys()].map((key) => this.#drop(key, "evicted", false));
  }

  #drop(key: string, reason: "timeout" | "evicted", count = true): DroppedMessage<Tag> {
    const p = this.#pending.get(key);
    this.#pending.delete(key);
    if (count) {
      if (reason === "timeout") this.#counters.expired++;
      else this.#counters.evicted++;
    }
    const parts = p === undefined ? [] : [...p.parts.entries()].sort((a, b) => a[0] - b[0]);
    return {
      key,
      reason,
      received: parts.length,
      total: p?.total ?? 0,
      tags: parts.map(([, part]) => part.tag),
    };
  }
}
