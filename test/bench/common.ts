/**
 * What every bench shares: the module contract `run.ts` dispatches to, the JS timing loop, and the
 * table printer.
 */

export interface BenchContext {
  /** `--json` was given: the runner prints the report as the last line of stdout. */
  readonly json: boolean;
  /** The arguments after the bench name, without `--json`. */
  readonly args: readonly string[];
  /** Prints one human-readable line on stdout. */
  readonly log: (line: string) => void;
  /** Prints one warning line on stdout (a warning is not a failure). */
  readonly warn: (line: string) => void;
}

/** A bench's result; `run.ts` prints it as one JSON line with `--json`. */
export interface BenchReport {
  readonly bench: string;
}

/** A bench module, `<name>.bench.ts`. */
export interface BenchModule {
  readonly run: (ctx: BenchContext) => BenchReport | Promise<BenchReport>;
}

/** A failure the user can fix (a missing compiler or library): printed as its message, no stack. */
export class BenchError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BenchError";
  }
}

export interface TimingOptions {
  /** Operations run before timing starts (default and minimum 200). */
  readonly warmupIterations?: number;
  /** Warm up for at least this long as well (default 250 ms), so the JIT has settled. */
  readonly warmupMs?: number;
  /** Wall time each batch aims for (default 40 ms); sets the operations per batch. */
  readonly batchMs?: number;
  /** Batches per `round()` (default 5). */
  readonly batchesPerRound?: number;
}

export interface Timing {
  /** Median over all batches of each batch's microseconds per operation. */
  readonly medianUs: number;
  readonly minUs: number;
  readonly batches: number;
  readonly opsPerBatch: number;
}

/** Something timed in rounds, so that several of them can share the same stretch of time. */
export interface RoundTimer {
  round(): void;
}

// Results land here so that no operation's work can be optimised away.
let sink: unknown;

/** The last result a timed operation returned. */
export function lastResult(): unknown {
  return sink;
}

/**
 * Times a JS operation with process.hrtime.bigint(). The first round warms up (at least 200
 * operations and 250 ms) and sizes the batches from a calibration batch; every round then times
 * `batchesPerRound` batches. The result is the median per-operation time over all batches.
 */
export class JsTimer implements RoundTimer {
  readonly #fn: () => unknown;
  readonly #options: TimingOptions;
  #opsPerBatch = 0;
  readonly #perOpUs: number[] = [];

  constructor(fn: () => unknown, options: TimingOptions = {}) {
    this.#fn = fn;
    this.#options = options;
  }

  round(): void {
    if (this.#opsPerBatch === 0) this.#warmUp();
    const batches = this.#options.batchesPerRound ?? 5;
    for (let b = 0; b < batches; b++) {
      this.#perOpUs.push(timeBatch(this.#fn, this.#opsPerBatch) / this.#opsPerBatch / 1e3);
    }
  }

  result(): Timing {
    return {
      medianUs: median(this.#perOpUs),
      minUs: Math.min(...this.#perOpUs),
      batches: this.#perOpUs.length,
      opsPerBatch: this.#opsPerBatch,
    };
  }

  #warmUp(): void {
    const warmupIterations = Math.max(200, this.#options.warmupIterations ?? 200);
    const warmupNs = BigInt(Math.round((this.#options.warmupMs ?? 250) * 1e6));
    const start = process.hrtime.bigint();
    let done = 0;
    while (done < warmupIterations || process.hrtime.bigint() - start < warmupNs) {
      sink = this.#fn();
      done++;
    }
    const calibrationOps = Math.max(10, Math.round(done / 10));
    const perOpNs = timeBatch(this.#fn, calibrationOps) / calibrationOps;
    this.#opsPerBatch = Math.max(1, Math.round(((this.#options.batchMs ?? 40) * 1e6) / Math.max(perOpNs, 1)));
  }
}

/**
 * Runs the timers' rounds interleaved (A B, B A, A B, ...), so that a slow stretch of the machine
 * (a busy neighbour on a shared host) weighs on all of them alike instead of on whichever ran then.
 */
export function interleave(timers: readonly RoundTimer[], rounds: number): void {
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? timers : [...timers].reverse();
    for (const t of order) t.round();
  }
}

/** Nanoseconds for `ops` calls of `fn`. */
function timeBatch(fn: () => unknown, ops: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) sink = fn();
  return Number(process.hrtime.bigint() - t0);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const hi = sorted[mid];
  if (hi === undefined) throw new RangeError("median of no values");
  if (sorted.length % 2 === 1) return hi;
  return ((sorted[mid - 1] ?? hi) + hi) / 2;
}

export function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Formats rows as aligned columns; `right[i]` right-aligns column i (numbers). */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  right: readonly boolean[],
): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    widths
      .map((w, i) => {
        const cell = cells[i] ?? "";
        return right[i] === true ? cell.padStart(w) : cell.padEnd(w);
      })
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)];
}
