/** Stopping a test peer by its PID: the shipped code in src/sim/process.ts (the demo uses it too). */
export { processAlive, stopChild } from "../../src/sim/process.js";
