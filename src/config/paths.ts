/**
 * Where dmgw keeps its files (style.md 2.6, 2.12). Under systemd the unit's `StateDirectory=`,
 * `ConfigurationDirectory=` and `RuntimeDirectory=` arrive as environment variables; a developer
 * points `DMGW_DATA` at one directory instead (zigbee2mqtt's `ZIGBEE2MQTT_DATA`).
 *
 *   state    config `paths.state`   > $DMGW_DATA/state   > $STATE_DIRECTORY         > /var/lib/dmgw
 *   runtime  config `paths.runtime` > $DMGW_DATA/runtime > $RUNTIME_DIRECTORY       > /run/dmgw
 *   config   (the default config file's directory)
 *                                     $DMGW_DATA         > $CONFIGURATION_DIRECTORY > /etc/dmgw
 *
 * systemd joins several directories of one kind with `:`; dmgw asks for one, so the first is used.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export const DEFAULT_STATE_DIR = "/var/lib/dmgw";
export const DEFAULT_RUNTIME_DIR = "/run/dmgw";
export const DEFAULT_CONFIG_DIR = "/etc/dmgw";
/** The one SQLite file (design.md 2), in the state directory. */
export const DB_FILE = "dmgw.db";
/** The control socket, in the runtime directory. */
export const CONTROL_SOCKET_FILE = "dmgw.sock";
/** The config file names looked for in the configuration directory, in order. */
export const CONFIG_FILE_NAMES = ["config.yaml", "config.yml", "config.json"] as const;

export interface GatewayPaths {
  readonly state: string;
  readonly runtime: string;
  /** `$STATE_DIRECTORY/dmgw.db`. */
  readonly db: string;
}

type Env = Readonly<Record<string, string | undefined>>;

function first(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  const head = value.split(":")[0];
  return head === undefined || head === "" ? undefined : head;
}

/** The directories from the environment alone (before config keys apply). */
export function envDirectories(env: Env): { state: string; runtime: string; config: string } {
  const data = first(env["DMGW_DATA"]);
  if (data !== undefined) {
    return { state: join(data, "state"), runtime: join(data, "runtime"), config: data };
  }
  return {
    state: first(env["STATE_DIRECTORY"]) ?? DEFAULT_STATE_DIR,
    runtime: first(env["RUNTIME_DIRECTORY"]) ?? DEFAULT_RUNTIME_DIR,
    config: first(env["CONFIGURATION_DIRECTORY"]) ?? DEFAULT_CONFIG_DIR,
  };
}

/** The state and runtime directories: config keys first, then the environment. */
export function resolvePaths(env: Env, configured: { state?: string; runtime?: string } = {}): GatewayPaths {
  const fromEnv = envDirectories(env);
  const state = configured.state ?? fromEnv.state;
  return { state, runtime: configured.runtime ?? fromEnv.runtime, db: join(state, DB_FILE) };
}

/**
 * The config file `dmgw run` reads without `--config`: the first of config.yaml, config.yml,
 * config.json that exists in the configuration directory, else the path of config.yaml there (so
 * the error names the file that was expected).
 */
export function defaultConfigFile(env: Env): string {
  const dir = envDirectories(env).config;
  for (const name of CONFIG_FILE_NAMES) {
    const file = join(dir, name);
    if (existsSync(file)) return file;
  }
  return join(dir, CONFIG_FILE_NAMES[0]);
}
