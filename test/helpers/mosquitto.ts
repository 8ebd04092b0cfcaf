/**
 * A real MQTT broker (Debian's mosquitto) for integration tests: the shipped code in
 * src/sim/mosquitto.ts, which `dmgw demo` uses too. A missing mosquitto fails the test with the
 * install hint, never skips it.
 */
export {
  MOSQUITTO_MISSING,
  findMosquitto,
  freePort,
  startMosquitto,
  type Mosquitto,
  type MosquittoOptions,
} from "../../src/sim/mosquitto.js";
