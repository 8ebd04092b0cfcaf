/**
 * Exponential backoff with jitter (style.md 2.2: a part that retries owns its policy): the delay
 * before retry `attempt` (0 for the first) is `initialMs * factor^attempt`, capped at `maxMs`, then
 * spread by ±`jitter` so a thousand gateways that lost the same server do not come back in step.
 */
export interface BackoffOptions {
  /** First delay, ms. */
  readonly initialMs?: number;
  /** Cap, ms. */
  readonly maxMs?: number;
  /** Growth per failed attempt. */
  readonly factor?: number;
  /** Relative jitter, 0..1 (a delay of d waits d * (1 ± jitter)). */
  readonly jitter?: number;
}

/** The delay before retry number `attempt` (0-based), ms; `random` returns [0, 1). */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  defaults: Required<BackoffOptions>,
  random: () => number = Math.random,
): number {
  const initialMs = options.initialMs ?? defaults.initialMs;
  const maxMs = options.maxMs ?? defaults.maxMs;
  const factor = options.factor ?? defaults.factor;
  const jitter = options.jitter ?? defaults.jitter;
  // Past ~1000 attempts factor^attempt is Infinity; min() still caps it at maxMs.
  const base = Math.min(maxMs, initialMs * factor ** attempt);
  return Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))));
}
