/**
 * A short, fixed-seed run of the codec fuzzer (test/fuzz/codec-fuzz.ts) inside `npm test`: every
 * seed as it is, then 3,000 mutations. `npm run fuzz` runs the long, randomly seeded version.
 */
import assert from "node:assert/strict";
import { describeFailure, formatSummary, runFuzz } from "../fuzz/codec-fuzz.js";

describe("SyncML codec fuzzing (fixed seed)", () => {
  it("decodes 3,000 mutated inputs to a message or a Codec_* error, in bounded time and memory", function () {
    this.timeout(60_000);
    const summary = runFuzz({ count: 3000, seed: 20_240_601 });
    assert.equal(
      summary.failures.length,
      0,
      `${formatSummary(summary)}\n${summary.failures.map(describeFailure).join("\n")}`,
    );
    assert.equal(summary.inputs, 3000 + summary.seeds);
    assert.ok(summary.ok > 0, "no input decoded: the seeds or the mutations are broken");
    assert.ok(summary.errors.size >= 8, `only ${summary.errors.size} error codes seen`);
  });
});
