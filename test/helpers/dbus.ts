/**
 * A private system-like D-Bus for BLE tests: the shipped code in src/sim/dbus-daemon.ts, which
 * `dmgw demo` uses too. A missing dbus-daemon fails the test with the install hint, never skips it.
 */
export {
  DBUS_DAEMON_MISSING,
  startDbusDaemon,
  useSystemBus,
  type DbusDaemon,
  type DbusDaemonOptions,
} from "../../src/sim/dbus-daemon.js";
