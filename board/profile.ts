/**
 * Board profiles (style.md 2.6): what a board offers the gateway, as data in `board/profiles/*.json`
 * (serial ports by `/dev/serial/by-id/...`, the modem port, the BLE adapter, GPIO lines by chip label
 * and line). The configuration names a profile, or `auto` detects it from the device tree.
 *
 *   board: "auto" ──► /proc/device-tree/model ──► first profile whose `model` prefix matches
 *                       └─ no such file (x86: no device tree) ──► generic-x86-64
 *   board: "<name>" ─► profiles/<name>.json ──► parseBoardProfile (every problem at once)
 *
 * Profiles are read synchronously: once, at start, before anything listens.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, GatewayError } from "../src/core/errors.js";

/** A GPIO line, named the way libgpiod names it: the chip's label (not its number) and the offset. */
export interface GpioLine {
  /** The gpiochip label (`pinctrl-bcm2711`), stable across kernels unlike `gpiochipN`. */
  readonly chip: string;
  /** Line offset on that chip, 0..1023. */
  readonly line: number;
  /** The line is asserted low (a reset pin). Default false. */
  readonly activeLow: boolean;
}

export interface BoardSerialPort {
  /** What the port is for (`rs485`), for logs and the configuration's references. */
  readonly name: string;
  /** `/dev/serial/by-id/...`, a udev symlink, or `tcp://host:port` (a serial server, the sim board). */
  readonly path: string;
  readonly baudRate?: number;
}

export interface BoardProfile {
  /** The file name without `.json`. */
  readonly name: string;
  readonly description: string;
  /** Prefixes of `/proc/device-tree/model` that mean this board (empty: never auto-detected). */
  readonly model: readonly string[];
  readonly serialPorts: readonly BoardSerialPort[];
  /** The cellular modem's AT port (SMS notifications); absent on a board without one. */
  readonly modem?: { readonly path: string; readonly baudRate?: number };
  /** The BlueZ adapter (`hci0`); absent on a board without BLE. */
  readonly ble?: { readonly adapter: string };
  readonly gpio: {
    readonly modemPower?: GpioLine;
    readonly modemReset?: GpioLine;
    readonly statusLed?: GpioLine;
  };
}

/** The profiles shipped with dmgw. */
export const BOARD_PROFILE_NAMES = ["raspberry-pi-4", "raspberry-pi-5", "generic-x86-64", "sim"] as const;

/** What `auto` picks when there is no device tree (an x86 PC has none). */
export const FALLBACK_BOARD = "generic-x86-64";

/** Where the kernel publishes the device tree's model string (NUL-terminated). */
export const DEVICE_TREE_MODEL = "/proc/device-tree/model";

export interface BoardOptions {
  /** The profile directory; default the shipped `board/profiles`. */
  readonly dir?: string;
  /** The model file `auto` reads; default `/proc/device-tree/model` (tests point it at a fake). */
  readonly modelPath?: string;
}

const GPIO_NAMES = ["modemPower", "modemReset", "statusLed"] as const;
const NAME = /^[a-z0-9][a-z0-9-]*$/;
/** Kernel names that change with plug order (style.md 2.6: never ttyUSB0). */
const UNSTABLE_TTY = /^\/dev\/tty(USB|ACM)\d+$/;

/**
 * The shipped profile directory. Source (board/profile.ts) and build output (dist/board/profile.js)
 * sit at different depths; the JSON stays in `board/profiles` of the package either way.
 */
export function defaultProfileDir(): string {
  const candidates = [
    new URL("./profiles/", import.meta.url),
    new URL("../../board/profiles/", import.meta.url),
  ];
  for (const url of candidates) {
    const dir = fileURLToPath(url);
    if (existsSync(join(dir, "sim.json"))) return dir;
  }
  return fileURLToPath(candidates[0] ?? new URL("./profiles/", import.meta.url));
}

/** The names of the profiles in `dir`, sorted. */
export function boardProfileNames(dir = defaultProfileDir()): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => f.slice(0, -".json".length))
      .sort();
  } catch {
    // An unreadable directory holds no profiles; loadBoardProfile then says which one is missing.
    return [];
  }
}

/**
 * Checks profile data; `name` is what the file is called.
 * @throws GatewayError(Config_BoardProfile) listing every problem (`context.problems`).
 */
export function parseBoardProfile(data: unknown, name: string): BoardProfile {
  const problems: string[] = [];
  const bad = (path: string, message: string): void => {
    problems.push(`${path}: ${message}`);
  };
  if (!isRecord(data)) {
    throw profileError(name, ["(root): must be an object"]);
  }
  for (const key of Object.keys(data)) {
    if (!["name", "description", "model", "serialPorts", "modem", "ble", "gpio"].includes(key))
      bad(key, "unknown key");
  }
  if (data["name"] !== name) bad("name", `must be "${name}" (the file name)`);
  if (!NAME.test(name)) bad("name", "must be lower-case letters, digits and dashes");
  const description = data["description"];
  if (typeof description !== "string" || description === "") bad("description", "must be a non-empty string");
  const model = data["model"];
  if (!Array.isArray(model) || !model.every((m) => typeof m === "string" && m !== ""))
    bad("model", "must be a list of non-empty strings");
  const serialPorts: BoardSerialPort[] = [];
  const ports = data["serialPorts"];
  if (!Array.isArray(ports)) bad("serialPorts", "must be a list");
  else {
    ports.forEach((p: unknown, i) => {
      const at = `serialPorts[${i}]`;
      if (!isRecord(p)) {
        bad(at, "must be an object");
        return;
      }
      const portName = p["name"];
      if (typeof portName !== "string" || !NAME.test(portName))
        bad(`${at}.name`, "must be a lower-case name");
      const path = checkPath(p["path"], `${at}.path`, bad);
      const baudRate = checkBaud(p["baudRate"], `${at}.baudRate`, bad);
      if (typeof portName === "string" && path !== undefined)
        serialPorts.push({ name: portName, path, ...(baudRate !== undefined && { baudRate }) });
    });
  }
  let modem: BoardProfile["modem"];
  const m = data["modem"];
  if (m !== undefined && m !== null) {
    if (!isRecord(m)) bad("modem", "must be an object or null");
    else {
      const path = checkPath(m["path"], "modem.path", bad);
      const baudRate = checkBaud(m["baudRate"], "modem.baudRate", bad);
      if (path !== undefined) modem = { path, ...(baudRate !== undefined && { baudRate }) };
    }
  }
  let ble: BoardProfile["ble"];
  const b = data["ble"];
  if (b !== undefined && b !== null) {
    const adapter = isRecord(b) ? b["adapter"] : undefined;
    if (typeof adapter !== "string" || !/^hci\d+$/.test(adapter)) bad("ble.adapter", "must be hciN");
    else ble = { adapter };
  }
  const gpio: Partial<Record<(typeof GPIO_NAMES)[number], GpioLine>> = {};
  const g = data["gpio"];
  if (!isRecord(g)) bad("gpio", "must be an object (empty when the board has no GPIO)");
  else {
    for (const key of Object.keys(g)) {
      if (!(GPIO_NAMES as readonly string[]).includes(key)) bad(`gpio.${key}`, "unknown GPIO role");
    }
    for (const role of GPIO_NAMES) {
      const line = g[role];
      if (line === undefined) continue;
      const at = `gpio.${role}`;
      if (!isRecord(line)) {
        bad(at, "must be { chip, line }");
        continue;
      }
      const chip = line["chip"];
      const offset = line["line"];
      const activeLow = line["activeLow"] ?? false;
      if (typeof chip !== "string" || chip === "" || chip.startsWith("/dev/"))
        bad(`${at}.chip`, "must be the chip's label (not a /dev path)");
      if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0 || offset > 1023)
        bad(`${at}.line`, "must be an integer 0..1023");
      if (typeof activeLow !== "boolean") bad(`${at}.activeLow`, "must be true or false");
      if (typeof chip === "string" && typeof offset === "number" && typeof activeLow === "boolean")
        gpio[role] = { chip, line: offset, activeLow };
    }
  }
  if (problems.length > 0) throw profileError(name, problems);
  return Object.freeze({
    name,
    description: description as string,
    model: Object.freeze([...(model as string[])]),
    serialPorts: Object.freeze(serialPorts),
    ...(modem !== undefined && { modem }),
    ...(ble !== undefined && { ble }),
    gpio: Object.freeze(gpio),
  });
}

/**
 * Reads and checks the profile `name`.
 * @throws GatewayError(Config_BoardProfile) when there is no such profile or its data is invalid.
 */
export function loadBoardProfile(name: string, options: BoardOptions = {}): BoardProfile {
  const dir = options.dir ?? defaultProfileDir();
  if (!NAME.test(name)) {
    throw new GatewayError(
      `board profile name "${name}" is not a profile name`,
      ErrorCode.Config_BoardProfile,
      {
        context: { name },
      },
    );
  }
  let text: string;
  try {
    text = readFileSync(join(dir, `${name}.json`), "utf8");
  } catch (cause) {
    const known = boardProfileNames(dir);
    throw new GatewayError(
      `no board profile "${name}" (known: ${known.join(", ") || "none"})`,
      ErrorCode.Config_BoardProfile,
      { cause, context: { name, known } },
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new GatewayError(
      `board profile "${name}" is not JSON: ${cause instanceof Error ? cause.message : String(cause)}`,
      ErrorCode.Config_BoardProfile,
      { cause, context: { name } },
    );
  }
  return parseBoardProfile(data, name);
}

/**
 * The profile `auto` means on this machine: the first profile (by name) one of whose `model`
 * prefixes starts the device tree's model string; without a device tree, generic-x86-64.
 * @throws GatewayError(Config_BoardProfile) when the model matches no profile, or a profile is invalid.
 */
export function detectBoardProfile(options: BoardOptions = {}): BoardProfile {
  const modelPath = options.modelPath ?? DEVICE_TREE_MODEL;
  let model: string;
  try {
    // The kernel's string ends in a NUL.
    model = readFileSync(modelPath, "latin1").replace(/\0+$/, "").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return loadBoardProfile(FALLBACK_BOARD, options);
    throw new GatewayError(`cannot read ${modelPath}`, ErrorCode.Config_BoardProfile, {
      cause: e,
      context: { modelPath },
    });
  }
  const dir = options.dir ?? defaultProfileDir();
  for (const name of boardProfileNames(dir)) {
    const profile = loadBoardProfile(name, { ...options, dir });
    if (profile.model.some((prefix) => model.startsWith(prefix))) return profile;
  }
  throw new GatewayError(
    `no board profile matches the model "${model}"; set "board" in the configuration`,
    ErrorCode.Config_BoardProfile,
    { context: { model, modelPath } },
  );
}

/** `auto` (detect) or a profile name. @throws GatewayError(Config_BoardProfile) */
export function resolveBoardProfile(board: string, options: BoardOptions = {}): BoardProfile {
  return board === "auto" ? detectBoardProfile(options) : loadBoardProfile(board, options);
}

function checkPath(
  value: unknown,
  path: string,
  bad: (path: string, message: string) => void,
): string | undefined {
  if (typeof value !== "string" || value === "") {
    bad(path, "must be a device path or tcp://host:port");
    return undefined;
  }
  if (UNSTABLE_TTY.test(value)) {
    bad(
      path,
      "must be a stable name (/dev/serial/by-id/... or a udev symlink), not a kernel ttyUSB/ttyACM name",
    );
    return undefined;
  }
  if (!value.startsWith("/dev/") && !value.startsWith("tcp://")) {
    bad(path, "must be a /dev path or tcp://host:port");
    return undefined;
  }
  return value;
}

function checkBaud(
  value: unknown,
  path: string,
  bad: (path: string, message: string) => void,
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 300 || value > 4_000_000) {
    bad(path, "must be an integer baud rate 300..4000000");
    return undefined;
  }
  return value;
}

function profileError(name: string, problems: readonly string[]): GatewayError {
  return new GatewayError(
    `board profile "${name}" is invalid: ${problems.join("; ")}`,
    ErrorCode.Config_BoardProfile,
    { context: { name, problems } },
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
