/**
 * A virtual serial cable (socat pty pair) for integration tests: the shipped code in src/sim/pty.ts,
 * which `dmgw demo` uses too. A missing socat fails the test with the install hint, never skips it.
 */
export { SOCAT_MISSING, startPtyPair, type PtyPair, type PtyPairOptions } from "../../src/sim/pty.js";
export { processAlive } from "../../src/sim/process.js";
