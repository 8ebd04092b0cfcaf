/**
 * The handle check of the driver contracts: sockets, timers and ttys a stopped driver and its closed
 * harness must not leave behind (style.md 2.9: a leaked handle is what makes mocha hang).
 */
import assert from "node:assert/strict";
import { waitFor } from "./wait.js";

const HANDLE_KINDS = new Set(["TCPSocketWrap", "TCPServerWrap", "UDPWRAP", "Timeout", "PipeWrap", "TTYWrap"]);

/** The process's active handles of those kinds, counted by kind. */
export function activeHandles(): Map<string, number> {
  const out = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) {
    if (HANDLE_KINDS.has(kind)) out.set(kind, (out.get(kind) ?? 0) + 1);
  }
  return out;
}

/**
 * The baseline inside a test: `before` (taken in beforeEach, before the harness) with timers counted
 * now, since mocha arms its test timer once the test function first yields.
 */
export async function handleBaseline(before: ReadonlyMap<string, number>): Promise<Map<string, number>> {
  await new Promise((r) => setImmediate(r));
  return new Map([...before, ["Timeout", activeHandles().get("Timeout") ?? 0]]);
}

/** Waits (closing sockets completes on later turns of the event loop) until no kind exceeds `baseline`. */
export async function assertNoHandlesLeft(baseline: ReadonlyMap<string, number>): Promise<void> {
  await waitFor(
    "the handles to go",
    () => [...activeHandles()].every(([kind, n]) => n <= (baseline.get(kind) ?? 0)),
    3_000,
  ).catch(() => {
    assert.fail(
      `handles left: ${JSON.stringify([...activeHandles()])}, before: ${JSON.stringify([...baseline])}`,
    );
  });
}
