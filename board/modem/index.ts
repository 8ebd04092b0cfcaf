/**
 * board/modem: the cellular modem as a WAP Push (OMA DM notification) source. See `modem.ts` for the
 * pipeline; `sms-pdu.ts`, `concat.ts` and `at.ts` are pure, `modem.ts` does I/O over the byte links of `src/core/byte-link.ts`, and
 * `sim.ts` is the simulator for tests and the demo.
 */
export * from "./at.js";
export * from "./concat.js";
export { ModemErrorCode, modemError } from "./errors.js";
export * from "../../src/core/byte-link.js";
export * from "./modem.js";
export * from "./sms-pdu.js";
export { ModemSimulator, attachSimulator, wapPushPdus } from "./sim.js";
export type {
  AttachedSimulator,
  ModemSimulatorOptions,
  SimBehavior,
  SimReply,
  StoredSms,
  WapPushPduOptions,
} from "./sim.js";
