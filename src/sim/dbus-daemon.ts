/**
 * A private system-like D-Bus, for `dmgw demo` and the BLE tests (platform.md 6): `dbus-daemon --nofork` with a generated
 * config (`<type>system</type>`, a unix socket in a fresh temp dir, EXTERNAL auth, a permissive
 * policy so a test process may own `org.bluez`), started and killed by PID. node-ble only talks to
 * the system bus, and dbus-next's `systemBus()` reads `DBUS_SYSTEM_BUS_ADDRESS`: `useSystemBus()`
 * points it at this daemon and gives the old value back. A missing dbus-daemon is an error with
 * the install hint (tests fail with it, never skip); the demo checks `dbusDaemonPath()` first.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stopChild } from "./process.js";

export const DBUS_DAEMON_MISSING =
  "dbus-daemon is not installed: run `apt-get install dbus-daemon` (Debian 12; the `dbus` package on older releases) - the BLE tests need a private D-Bus daemon";

export interface DbusDaemon {
  /** `unix:path=<dir>/system_bus_socket`. */
  readonly address: string;
  readonly socketPath: string;
  readonly pid: number;
  /** Kills the daemon (SIGTERM, SIGKILL after 2 s) and waits; keeps the directory when `keepDir`. */
  stop(options?: { readonly keepDir?: boolean }): Promise<void>;
}

/** dbus-daemon's path, or undefined when it is not installed. */
export function dbusDaemonPath(): string | undefined {
  return findDaemon();
}

function findDaemon(): string | undefined {
  for (const candidate of ["/usr/bin/dbus-daemon", "/bin/dbus-daemon", "/usr/local/bin/dbus-daemon"]) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next one
    }
  }
  return undefined;
}

export interface DbusDaemonOptions {
  /** A fresh temporary directory by default; reuse one to restart on the same socket. */
  readonly dir?: string;
  /**
   * Run the daemon in a process group of its own (the demo): a terminal's Ctrl-C then reaches only
   * the caller, which stops it after its clients (a bus that dies under them makes dbus-next
   * throw). Default false: tests want it to die with an interrupted run.
   */
  readonly ownProcessGroup?: boolean;
}

/** Starts a daemon in `dir` (a fresh temp dir by default; reuse one to restart on the same socket). */
export async function startDbusDaemon(options: DbusDaemonOptions = {}): Promise<DbusDaemon> {
  const binary = findDaemon();
  if (binary === undefined) throw new Error(DBUS_DAEMON_MISSING);
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "dmgw-dbus-"));
  const socketPath = join(dir, "system_bus_socket");
  rmSync(socketPath, { force: true });
  const config = join(dir, "bus.conf");
  writeFileSync(
    config,
    [
      '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"',
      ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">',
      "<busconfig>",
      "  <type>system</type>",
      `  <listen>unix:path=${socketPath}</listen>`,
      "  <auth>EXTERNAL</auth>",
      '  <policy context="default">',
      '    <allow user="*"/>',
      '    <allow own="*"/>',
      '    <allow send_destination="*"/>',
      '    <allow receive_sender="*"/>',
      "  </policy>",
      '  <limit name="max_replies_per_connection">50000</limit>',
      '  <limit name="max_connections_per_user">4096</limit>',
      "</busconfig>",
      "",
    ].join("\n"),
  );
  const child = spawn(binary, [`--config-file=${config}`, "--nofork", "--print-address=1"], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.ownProcessGroup === true,
  });
  let output = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s: string) => {
    output = (output + s).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once("close", () => {
      resolve();
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`dbus-daemon printed no address within 5 s: ${output}`));
      }, 5000);
      child.once("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(e.code === "ENOENT" ? new Error(DBUS_DAEMON_MISSING, { cause: e }) : e);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`dbus-daemon exited (${signal ?? String(code)}): ${output}`));
      });
      child.stdout.setEncoding("utf8");
      child.stdout.once("data", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  } catch (e) {
    await stopChild(child, exited);
    if (options.dir === undefined) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  child.stdout.resume();
  const pid = child.pid;
  if (pid === undefined) throw new Error("dbus-daemon started without a PID");
  let stopping: Promise<void> | undefined;
  return {
    address: `unix:path=${socketPath}`,
    socketPath,
    pid,
    stop: (stopOptions) => {
      stopping ??= stopChild(child, exited).then(() => {
        if (stopOptions?.keepDir !== true) rmSync(dir, { recursive: true, force: true });
      });
      return stopping;
    },
  };
}

/** Points `DBUS_SYSTEM_BUS_ADDRESS` at `address`; the returned function restores the old value. */
export function useSystemBus(address: string): () => void {
  const before = process.env["DBUS_SYSTEM_BUS_ADDRESS"];
  process.env["DBUS_SYSTEM_BUS_ADDRESS"] = address;
  return () => {
    if (before === undefined) delete process.env["DBUS_SYSTEM_BUS_ADDRESS"];
    else process.env["DBUS_SYSTEM_BUS_ADDRESS"] = before;
  };
}
