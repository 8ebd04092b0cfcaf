/**
 * The site configuration (style.md 2.6): its types, its defaults, and a validation that reports
 * every problem at once, each with its path (`servers[0].uri: must be an http(s) URL`), as
 * zigbee2mqtt does, followed by range checks as zwave-js's `checkOptions` does.
 *
 *   raw (JSON/YAML value) ──► validateConfig ──► { ok: true, config }   deep-frozen, defaults filled,
 *                                 │                                      secretFile read, paths resolved
 *                                 └──────────► { ok: false, problems }  every problem, never a secret
 *
 * Decisions:
 * - Unknown keys are problems: a typo (`chekInSeconds`) would otherwise silently keep a default.
 * - Secrets come inline (`secret`) or from a file (`secretFile`, read here so a missing file is a
 *   config problem, not a crash at the first session). Messages name the key, never the value.
 * - Relative file paths (secretFile, tls, paths.*) are relative to the config file's directory.
 * - `identity.devId` defaults to a UUID derived from /etc/machine-id (machine-id(5) asks that the
 *   id itself not be published: an app-specific HMAC of it is).
 * - Restart-only: every key. dmgw reads the file once at start; the DM server changes the tree.
 */
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { boardProfileNames } from "../../board/profile.js";
import type { AdaptationDriverConfigs, ProxyDriverConfigs } from "../../drivers/registry.js";
import type { SerialPortConfig } from "../../drivers/serial/driver.js";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { LOG_LEVELS, type LogLevel } from "../core/log.js";
import { isServerId } from "../tree/acl.js";
import { resolvePaths, CONTROL_SOCKET_FILE, type GatewayPaths } from "./paths.js";

/** Everything below `T` readonly, arrays included: the config is read, never changed. */
export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type AuthSchemeName = "basic" | "md5" | "hmac";
export const AUTH_SCHEMES: readonly AuthSchemeName[] = ["basic", "md5", "hmac"];

/** One side's DM credentials of a northbound account. */
export interface CredentialConfig {
  scheme: AuthSchemeName;
  name: string;
  /** Inline or read from `secretFile`. Never logged or printed. */
  secret: string;
  /** The first nonce, Base64; default none (the session's Chal supplies one). */
  nonce?: string;
}

export interface ServerConfig {
  /** The ServerID (ACLs, Pkg#0). */
  serverId: string;
  /** The DMAcc node name (`./DMAcc/<account>`); default the serverId. */
  account: string;
  /** Where Package 1 goes: an http(s) URL. */
  uri: string;
  /** What the gateway presents (CLCRED). */
  clientAuth: CredentialConfig;
  /** What the server must present, and the Pkg#0 digest key (SRVCRED). */
  serverAuth: CredentialConfig;
  encoding: "xml" | "wbxml";
  /** A client-initiated session every this many seconds; 0 for none. Default 86400. */
  checkInSeconds: number;
  /** PEM files (absolute paths) for https: trust anchors and a client certificate. */
  tls?: { ca?: string; cert?: string; key?: string };
}

export interface NorthboundConfig {
  /** DM notifications over UDP (WDP port 2948); `false` for none. */
  udpPush: { host: string; port: number } | false;
  /** DM notifications by SMS through the board's modem. */
  sms: { enabled: boolean };
  /** Our MaxMsgSize, bytes. */
  maxMsgSize: number;
  /** Deadline of each HTTP exchange with a server, ms. */
  timeoutMs: number;
  /** Most messages we send in one session. */
  maxMessages: number;
  /** A Pkg#0 asking for user interaction: run its session anyway, or refuse it. */
  uiMode: "accept" | "refuse";
  /** Bounds of the alert outbox. */
  outbox: { maxCount: number; maxBytes: number };
  /** Retry delays after a failed session. */
  retry: { initialMs: number; maxMs: number };
}

/** The serial driver's section: `ports` default to the board profile's serial ports. */
export type SerialSection = Omit<ProxyDriverConfigs["serial"], "ports"> & { ports?: SerialPortConfig[] };

export interface DriversConfig {
  http?: ProxyDriverConfigs["http"];
  mqtt?: ProxyDriverConfigs["mqtt"];
  serial?: SerialSection;
  ble?: ProxyDriverConfigs["ble"];
  coap?: AdaptationDriverConfigs["coap"];
}

export interface SouthboundConfig {
  /** The gateway's ServerID toward its devices. Default `dmgw`. */
  gatewayServerId: string;
  /** Lets devices without an account enrol with the site's shared secret. */
  enrolment?: { scheme: AuthSchemeName; secret: string };
  /** Limits toward devices; the proxy's defaults when absent. */
  maxMsgSize?: number;
  maxObjSize?: number;
  sessionIdleMs?: number;
  /** Only the configured drivers are loaded. */
  drivers: DriversConfig;
}

export interface IdentityConfig {
  devId: string;
  man: string;
  /** Default: the board profile's name. */
  mod?: string;
  dmV: string;
  lang: string;
  /** Default `man`. */
  oem?: string;
  /** Default: the kernel release. */
  fwV?: string;
  /** Default: dmgw's version. */
  swV?: string;
  /** Default: the board profile's name. */
  hwV?: string;
  devTyp: string;
  uriLimits: { maxDepth: number; maxTotLen: number; maxSegLen: number };
}

export type LogFormatSetting = "auto" | "json" | "human" | "journald";

export interface GatewayConfigData {
  /** `auto` or a board profile name. */
  board: string;
  paths: GatewayPaths;
  identity: IdentityConfig;
  servers: ServerConfig[];
  northbound: NorthboundConfig;
  southbound: SouthboundConfig;
  fanout: { flushMs: number; retryBackoff: { initialMs: number; maxMs: number } };
  /** Prometheus text on loopback; `false` (the default) for none. */
  metrics: { host: string; port: number } | false;
  /** The control socket of the CLI; `false` for none. */
  control: { socket: string } | false;
  log: { level: LogLevel; format: LogFormatSetting };
}

export type GatewayConfig = DeepReadonly<GatewayConfigData>;

/** One problem: where (`servers[0].uri`) and what. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export type ConfigResult =
  | { readonly ok: true; readonly config: GatewayConfig }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export interface ValidateOptions {
  /** Environment for the paths (STATE_DIRECTORY, DMGW_DATA, ...). Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Relative file paths are resolved against this directory; default the working directory. */
  readonly baseDir?: string;
  /** Default `/etc/machine-id`. */
  readonly machineIdPath?: string;
  /** The board profile directory (the names `board` may take); default the shipped one. */
  readonly profileDir?: string;
}

export const CONFIG_DEFAULTS = {
  gatewayServerId: "dmgw",
  checkInSeconds: 86_400,
  udpPush: { host: "0.0.0.0", port: 2948 },
  maxMsgSize: 16_384,
  timeoutMs: 30_000,
  maxMessages: 50,
  outbox: { maxCount: 10_000, maxBytes: 16 << 20 },
  retry: { initialMs: 10_000, maxMs: 30 * 60_000 },
  flushMs: 20,
  fanoutRetry: { initialMs: 1_000, maxMs: 30_000 },
  metricsHost: "127.0.0.1",
} as const;

/** "A formatted problem a line": `path: message`. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.path === "" ? "(root)" : p.path}: ${p.message}`;
}

/**
 * Checks `raw` (the parsed file, or an object built in code) and fills the defaults.
 * Never throws for bad input: every problem is in the result.
 */
export function validateConfig(raw: unknown, options: ValidateOptions = {}): ConfigResult {
  const c = new Checker(options.baseDir ?? process.cwd());
  const root = c.section(raw, "", ROOT_KEYS, true);
  const boardNames = boardProfileNames(options.profileDir);
  const board = c.string(root, "board", "", { def: "auto" });
  if (board !== undefined && board !== "auto" && !boardNames.includes(board)) {
    c.bad("board", `must be "auto" or one of ${boardNames.join(", ")}`);
  }
  const pathsSection = c.section(root["paths"], "paths", ["state", "runtime"]);
  const statePath = c.file(pathsSection, "state", "paths");
  const runtimePath = c.file(pathsSection, "runtime", "paths");
  const paths = resolvePaths(options.env ?? process.env, {
    ...(statePath !== undefined && { state: statePath }),
    ...(runtimePath !== undefined && { runtime: runtimePath }),
  });
  const identity = checkIdentity(c, root["identity"], options.machineIdPath ?? "/etc/machine-id");
  const servers = checkServers(c, root["servers"]);
  const northbound = checkNorthbound(c, root["northbound"]);
  const southbound = checkSouthbound(c, root["southbound"]);
  const fanoutSection = c.section(root["fanout"], "fanout", ["flushMs", "retryBackoff"]);
  const fanoutRetry = c.section(fanoutSection["retryBackoff"], "fanout.retryBackoff", ["initialMs", "maxMs"]);
  const fanout = {
    flushMs: c.int(fanoutSection, "flushMs", "fanout", { min: 1, max: 10_000, def: CONFIG_DEFAULTS.flushMs }),
    retryBackoff: {
      initialMs: c.int(fanoutRetry, "initialMs", "fanout.retryBackoff", {
        min: 1,
        max: 3_600_000,
        def: CONFIG_DEFAULTS.fanoutRetry.initialMs,
      }),
      maxMs: c.int(fanoutRetry, "maxMs", "fanout.retryBackoff", {
        min: 1,
        max: 86_400_000,
        def: CONFIG_DEFAULTS.fanoutRetry.maxMs,
      }),
    },
  };
  let metrics: GatewayConfigData["metrics"] = false;
  if (root["metrics"] !== undefined && root["metrics"] !== false && root["metrics"] !== null) {
    const m = c.section(root["metrics"], "metrics", ["host", "port"]);
    const host = c.string(m, "host", "metrics", { def: CONFIG_DEFAULTS.metricsHost });
    const port = c.int(m, "port", "metrics", { min: 0, max: 65_535, required: true });
    metrics = { host: host ?? CONFIG_DEFAULTS.metricsHost, port: port ?? 0 };
  }
  let control: GatewayConfigData["control"] = { socket: `${paths.runtime}/${CONTROL_SOCKET_FILE}` };
  if (root["control"] === false) control = false;
  else {
    const s = c.section(root["control"], "control", ["socket"]);
    const socket = c.file(s, "socket", "control");
    if (socket !== undefined) control = { socket };
  }
  const logSection = c.section(root["log"], "log", ["level", "format"]);
  const log = {
    level: c.oneOf(logSection, "level", "log", LOG_LEVELS, "info"),
    format: c.oneOf(logSection, "format", "log", ["auto", "json", "human", "journald"] as const, "auto"),
  };

  if (c.problems.length > 0) return { ok: false, problems: c.problems };
  const config: GatewayConfigData = {
    board: board ?? "auto",
    paths,
    identity,
    servers,
    northbound,
    southbound,
    fanout,
    metrics,
    control,
    log,
  };
  return { ok: true, config: deepFreeze(config) };
}

/**
 * `validateConfig` for code that builds its config (the demo, tests).
 * @throws GatewayError(Config_Invalid) with every problem in the message and `context.problems`.
 */
export function parseConfig(raw: unknown, options: ValidateOptions = {}): GatewayConfig {
  const result = validateConfig(raw, options);
  if (result.ok) return result.config;
  throw configInvalid(result.problems);
}

/** The error of a configuration with `problems` (one per line in the message). */
export function configInvalid(problems: readonly ConfigProblem[], file?: string): GatewayError {
  const where = file === undefined ? "the configuration" : file;
  return new GatewayError(
    `${where} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  ${formatProblem(p)}`).join("\n")}\n`,
    ErrorCode.Config_Invalid,
    { context: { problems, ...(file !== undefined && { file }) } },
  );
}

// ---- sections -----------------------------------------------------------------------------------

const ROOT_KEYS = [
  "board",
  "paths",
  "identity",
  "servers",
  "northbound",
  "southbound",
  "fanout",
  "metrics",
  "control",
  "log",
] as const;

function checkIdentity(c: Checker, raw: unknown, machineIdPath: string): IdentityConfig {
  const at = "identity";
  const s = c.section(raw, at, [
    "devId",
    "man",
    "mod",
    "dmV",
    "lang",
    "oem",
    "fwV",
    "swV",
    "hwV",
    "devTyp",
    "uriLimits",
  ]);
  let devId = c.string(s, "devId", at);
  if (devId === undefined && s["devId"] === undefined) {
    devId = machineDevId(machineIdPath);
    if (devId === undefined)
      c.bad("identity.devId", `required: ${machineIdPath} cannot be read to derive one`);
  }
  const limits = c.section(s["uriLimits"], "identity.uriLimits", ["maxDepth", "maxTotLen", "maxSegLen"]);
  const opt = (key: string): { [k: string]: string } => {
    const v = c.string(s, key, at);
    return v === undefined ? {} : { [key]: v };
  };
  return {
    devId: devId ?? "",
    man: c.string(s, "man", at, { def: "dmgw" }) ?? "dmgw",
    dmV: c.string(s, "dmV", at, { def: "1.2" }) ?? "1.2",
    lang: c.string(s, "lang", at, { def: "en-US" }) ?? "en-US",
    devTyp: c.string(s, "devTyp", at, { def: "gateway" }) ?? "gateway",
    ...opt("mod"),
    ...opt("oem"),
    ...opt("fwV"),
    ...opt("swV"),
    ...opt("hwV"),
    uriLimits: {
      maxDepth: c.int(limits, "maxDepth", "identity.uriLimits", { min: 0, max: 0xffff, def: 0 }),
      maxTotLen: c.int(limits, "maxTotLen", "identity.uriLimits", { min: 0, max: 0xffff_ffff, def: 0 }),
      maxSegLen: c.int(limits, "maxSegLen", "identity.uriLimits", { min: 0, max: 0xffff_ffff, def: 0 }),
    },
  };
}

/** `urn:uuid:` + an app-specific UUID derived from the machine id; undefined when unreadable. */
export function machineDevId(machineIdPath = "/etc/machine-id"): string | undefined {
  let id: string;
  try {
    id = readFileSync(machineIdPath, "utf8").trim();
  } catch {
    // No machine id (a container without one): the caller reports devId as required.
    return undefined;
  }
  if (!/^[0-9a-f]{32}$/.test(id)) return undefined;
  // As sd_id128_get_machine_app_specific: HMAC-SHA256(machine id, app id), made a v4 UUID.
  const h = createHmac("sha256", Buffer.from(id, "hex")).update("dmgw-devid").digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x40;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString("hex");
  return `urn:uuid:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function checkServers(c: Checker, raw: unknown): ServerConfig[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    c.bad("servers", "must be a list");
    return [];
  }
  const out: ServerConfig[] = [];
  const ids = new Set<string>();
  const accounts = new Set<string>();
  raw.forEach((item: unknown, i) => {
    const at = `servers[${i}]`;
    const s = c.section(item, at, [
      "serverId",
      "account",
      "uri",
      "clientAuth",
      "serverAuth",
      "encoding",
      "checkInSeconds",
      "tls",
    ]);
    const serverId = c.string(s, "serverId", at, { required: true });
    let idOk = false;
    if (serverId !== undefined) {
      if (!isServerId(serverId))
        c.bad(`${at}.serverId`, "must be a ServerID usable in an ACL (no spaces, =, &, *)");
      else if (ids.has(serverId)) c.bad(`${at}.serverId`, "is used by another server");
      else idOk = true;
      ids.add(serverId);
    }
    // The account node defaults to the ServerID; a bad ServerID is reported once, above.
    const named = c.string(s, "account", at);
    const account = named ?? serverId;
    if (account !== undefined && (named !== undefined || idOk)) {
      if (!/^[A-Za-z0-9._-]+$/.test(account))
        c.bad(`${at}.account`, "must be one URI segment (letters, digits, . _ -)");
      else if (accounts.has(account)) c.bad(`${at}.account`, "is used by another server");
      accounts.add(account);
    }
    const uri = c.string(s, "uri", at, { required: true });
    if (uri !== undefined && !isHttpUrl(uri)) c.bad(`${at}.uri`, "must be an http(s) URL");
    const clientAuth = checkCredential(c, s["clientAuth"], `${at}.clientAuth`);
    const serverAuth = checkCredential(c, s["serverAuth"], `${at}.serverAuth`);
    const encoding = c.oneOf(s, "encoding", at, ["wbxml", "xml"] as const, "wbxml");
    const checkInSeconds = c.int(s, "checkInSeconds", at, {
      min: 0,
      max: 365 * 86_400,
      def: CONFIG_DEFAULTS.checkInSeconds,
    });
    let tls: ServerConfig["tls"];
    if (s["tls"] !== undefined) {
      const t = c.section(s["tls"], `${at}.tls`, ["ca", "cert", "key"]);
      const ca = c.file(t, "ca", `${at}.tls`, true);
      const cert = c.file(t, "cert", `${at}.tls`, true);
      const key = c.file(t, "key", `${at}.tls`, true);
      if ((t["cert"] === undefined) !== (t["key"] === undefined))
        c.bad(`${at}.tls`, "cert and key go together");
      tls = {
        ...(ca !== undefined && { ca }),
        ...(cert !== undefined && { cert }),
        ...(key !== undefined && { key }),
      };
      if (uri !== undefined && uri.startsWith("http:"))
        c.bad(`${at}.tls`, "is set but the uri is plain http");
    }
    if (serverId === undefined || uri === undefined || clientAuth === undefined || serverAuth === undefined)
      return;
    out.push({
      serverId,
      account: account ?? serverId,
      uri,
      clientAuth,
      serverAuth,
      encoding,
      checkInSeconds,
      ...(tls !== undefined && { tls }),
    });
  });
  return out;
}

function checkCredential(c: Checker, raw: unknown, at: string): CredentialConfig | undefined {
  if (raw === undefined) {
    c.bad(at, "is required");
    return undefined;
  }
  const s = c.section(raw, at, ["scheme", "name", "secret", "secretFile", "nonce"]);
  const scheme = c.oneOf(s, "scheme", at, AUTH_SCHEMES, "md5");
  const name = c.string(s, "name", at, { required: true });
  const secret = c.secret(s, at, "secret");
  const nonce = c.string(s, "nonce", at);
  if (nonce !== undefined && !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(nonce))
    c.bad(`${at}.nonce`, "must be Base64");
  if (name === undefined || secret === undefined) return undefined;
  return { scheme, name, secret, ...(nonce !== undefined && { nonce }) };
}

function checkNorthbound(c: Checker, raw: unknown): NorthboundConfig {
  const at = "northbound";
  const s = c.section(raw, at, [
    "udpPush",
    "sms",
    "maxMsgSize",
    "timeoutMs",
    "maxMessages",
    "uiMode",
    "outbox",
    "retry",
  ]);
  let udpPush: NorthboundConfig["udpPush"] = { ...CONFIG_DEFAULTS.udpPush };
  if (s["udpPush"] === false || s["udpPush"] === null) udpPush = false;
  else if (s["udpPush"] !== undefined) {
    const u = c.section(s["udpPush"], `${at}.udpPush`, ["host", "port"]);
    udpPush = {
      host: c.string(u, "host", `${at}.udpPush`, { def: CONFIG_DEFAULTS.udpPush.host }) ?? "0.0.0.0",
      port: c.int(u, "port", `${at}.udpPush`, { min: 0, max: 65_535, def: CONFIG_DEFAULTS.udpPush.port }),
    };
  }
  const sms = c.section(s["sms"], `${at}.sms`, ["enabled"]);
  const outbox = c.section(s["outbox"], `${at}.outbox`, ["maxCount", "maxBytes"]);
  const retry = c.section(s["retry"], `${at}.retry`, ["initialMs", "maxMs"]);
  return {
    udpPush,
    sms: { enabled: c.bool(sms, "enabled", `${at}.sms`, false) },
    maxMsgSize: c.int(s, "maxMsgSize", at, { min: 1024, max: 16 << 20, def: CONFIG_DEFAULTS.maxMsgSize }),
    timeoutMs: c.int(s, "timeoutMs", at, { min: 100, max: 600_000, def: CONFIG_DEFAULTS.timeoutMs }),
    maxMessages: c.int(s, "maxMessages", at, { min: 1, max: 10_000, def: CONFIG_DEFAULTS.maxMessages }),
    uiMode: c.oneOf(s, "uiMode", at, ["accept", "refuse"] as const, "accept"),
    outbox: {
      maxCount: c.int(outbox, "maxCount", `${at}.outbox`, {
        min: 1,
        max: 10_000_000,
        def: CONFIG_DEFAULTS.outbox.maxCount,
      }),
      maxBytes: c.int(outbox, "maxBytes", `${at}.outbox`, {
        min: 1024,
        max: 1 << 30,
        def: CONFIG_DEFAULTS.outbox.maxBytes,
      }),
    },
    retry: {
      initialMs: c.int(retry, "initialMs", `${at}.retry`, {
        min: 1,
        max: 86_400_000,
        def: CONFIG_DEFAULTS.retry.initialMs,
      }),
      maxMs: c.int(retry, "maxMs", `${at}.retry`, {
        min: 1,
        max: 86_400_000,
        def: CONFIG_DEFAULTS.retry.maxMs,
      }),
    },
  };
}

type FieldKind = "string" | "port" | "ms" | "count" | "bool" | "backoff" | "strings" | "url";

const DRIVER_FIELDS: Readonly<Record<keyof DriversConfig, Readonly<Record<string, FieldKind>>>> = {
  http: {
    host: "string",
    port: "port",
    path: "string",
    publicUrl: "url",
    maxBodyBytes: "count",
    concurrency: "count",
  },
  mqtt: {
    url: "string",
    prefix: "string",
    clientId: "string",
    username: "string",
    sessionExpirySeconds: "count",
    connectTimeoutMs: "ms",
    keepaliveSeconds: "count",
    publishTimeoutMs: "ms",
    reconnect: "backoff",
  },
  coap: {
    host: "string",
    port: "port",
    exchangesPerEndpoint: "count",
    ackTimeoutMs: "ms",
    maxRetransmit: "count",
    observeDevInfo: "bool",
    devInfoTimeoutMs: "ms",
    maxRegistrations: "count",
  },
  serial: {
    baudRate: "count",
    maxPacketLength: "count",
    responseTimeoutMs: "ms",
    maxMessageBytes: "count",
    reconnect: "backoff",
  },
  ble: {
    adapter: "string",
    serviceUuids: "strings",
    poolSize: "count",
    discoveryIntervalMs: "ms",
    connectTimeoutMs: "ms",
    callTimeoutMs: "ms",
    sessionIdleMs: "ms",
    linkIdleMs: "ms",
    notifyTimeoutMs: "ms",
    maxMessageBytes: "count",
    readDevInfoOnDiscovery: "bool",
    reconnect: "backoff",
  },
};

function checkSouthbound(c: Checker, raw: unknown): SouthboundConfig {
  const at = "southbound";
  const s = c.section(raw, at, [
    "gatewayServerId",
    "enrolment",
    "enrolmentSecret",
    "enrolmentSecretFile",
    "maxMsgSize",
    "maxObjSize",
    "sessionIdleMs",
    "drivers",
  ]);
  const gatewayServerId =
    c.string(s, "gatewayServerId", at, { def: CONFIG_DEFAULTS.gatewayServerId }) ?? "dmgw";
  if (!isServerId(gatewayServerId)) c.bad(`${at}.gatewayServerId`, "must be a ServerID usable in an ACL");
  let enrolment: SouthboundConfig["enrolment"];
  if (s["enrolmentSecret"] !== undefined || s["enrolmentSecretFile"] !== undefined) {
    const secret = c.secret(s, at, "enrolmentSecret");
    if (secret !== undefined) enrolment = { scheme: "hmac", secret };
  }
  if (s["enrolment"] !== undefined) {
    const e = c.section(s["enrolment"], `${at}.enrolment`, ["scheme", "secret", "secretFile"]);
    const scheme = c.oneOf(e, "scheme", `${at}.enrolment`, AUTH_SCHEMES, "hmac");
    const secret = c.secret(e, `${at}.enrolment`, "secret");
    if (enrolment !== undefined) c.bad(`${at}.enrolment`, "give enrolment or enrolmentSecret, not both");
    if (secret !== undefined) enrolment = { scheme, secret };
  }
  const limit = (key: string, min: number, max: number): { [k: string]: number } => {
    if (s[key] === undefined) return {};
    return { [key]: c.int(s, key, at, { min, max, def: min }) };
  };
  const d = c.section(s["drivers"], `${at}.drivers`, ["http", "mqtt", "coap", "serial", "ble"]);
  const drivers: Record<string, unknown> = {};
  for (const kind of ["http", "mqtt", "coap", "serial", "ble"] as const) {
    const section = d[kind];
    if (section === undefined || section === false || section === null) continue;
    const dat = `${at}.drivers.${kind}`;
    const extra = kind === "mqtt" ? ["password", "passwordFile"] : kind === "serial" ? ["ports"] : [];
    const o = c.section(section === true ? {} : section, dat, [
      ...Object.keys(DRIVER_FIELDS[kind]),
      ...extra,
    ]);
    const out = c.fields(o, dat, DRIVER_FIELDS[kind]);
    if (kind === "mqtt") {
      const url = out["url"];
      if (url === undefined) c.bad(`${dat}.url`, "is required");
      else if (typeof url === "string" && !/^(mqtts?|wss?):\/\/./.test(url))
        c.bad(`${dat}.url`, "must be an mqtt://, mqtts://, ws:// or wss:// URL");
      if (o["password"] !== undefined || o["passwordFile"] !== undefined) {
        const password = c.secret(o, dat, "password");
        if (password !== undefined) out["password"] = password;
      }
    }
    if (kind === "serial" && o["ports"] !== undefined) {
      const ports = o["ports"];
      if (!Array.isArray(ports)) c.bad(`${dat}.ports`, "must be a list");
      else {
        out["ports"] = ports.map((p: unknown, i) => {
          const pat = `${dat}.ports[${i}]`;
          const ps = c.section(p, pat, ["path", "deviceId"]);
          const path = c.string(ps, "path", pat, { required: true }) ?? "";
          if (/^\/dev\/tty(USB|ACM)\d+$/.test(path))
            c.bad(
              `${pat}.path`,
              "must be a stable name (/dev/serial/by-id/...), not a kernel ttyUSB/ttyACM name",
            );
          const deviceId = c.string(ps, "deviceId", pat);
          return { path, ...(deviceId !== undefined && { deviceId }) };
        });
      }
    }
    if (kind === "serial" && typeof out["maxPacketLength"] === "number") {
      const n = out["maxPacketLength"];
      if (n < 255 || n > 65_535) c.bad(`${dat}.maxPacketLength`, "must be 255..65535");
    }
    drivers[kind] = out;
  }
  return {
    gatewayServerId,
    ...(enrolment !== undefined && { enrolment }),
    ...limit("maxMsgSize", 1024, 16 << 20),
    ...limit("maxObjSize", 1024, 1 << 30),
    ...limit("sessionIdleMs", 100, 3_600_000),
    // Each section was checked field by field against its driver's config type (DRIVER_FIELDS).
    drivers,
  };
}

// ---- the checker --------------------------------------------------------------------------------

interface IntOptions {
  readonly min: number;
  readonly max: number;
  readonly def?: number;
  readonly required?: boolean;
}

class Checker {
  readonly problems: ConfigProblem[] = [];
  readonly #baseDir: string;

  constructor(baseDir: string) {
    this.#baseDir = baseDir;
  }

  bad(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  /** An object section (undefined/null: empty, so defaults apply); unknown keys are problems. */
  section(raw: unknown, at: string, keys: readonly string[], root = false): Record<string, unknown> {
    if (raw === undefined || raw === null) return {};
    if (typeof raw !== "object" || Array.isArray(raw)) {
      this.bad(
        at,
        root ? "the configuration must be an object (a mapping of sections)" : "must be an object",
      );
      return {};
    }
    const o = raw as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (!keys.includes(key)) this.bad(join(at, key), `unknown key (known: ${keys.join(", ")})`);
    }
    return o;
  }

  string(
    o: Record<string, unknown>,
    key: string,
    at: string,
    opts: { def?: string; required?: boolean } = {},
  ): string | undefined {
    const v = o[key];
    if (v === undefined || v === null) {
      if (opts.required === true) this.bad(join(at, key), "is required");
      return opts.def;
    }
    if (typeof v !== "string" || v === "") {
      this.bad(join(at, key), "must be a non-empty string");
      return opts.def;
    }
    return v;
  }

  int(o: Record<string, unknown>, key: string, at: string, opts: IntOptions & { def: number }): number;
  int(o: Record<string, unknown>, key: string, at: string, opts: IntOptions): number | undefined;
  int(o: Record<string, unknown>, key: string, at: string, opts: IntOptions): number | undefined {
    const v = o[key];
    if (v === undefined || v === null) {
      if (opts.required === true) this.bad(join(at, key), "is required");
      return opts.def;
    }
    if (typeof v !== "number" || !Number.isInteger(v) || v < opts.min || v > opts.max) {
      this.bad(join(at, key), `must be an integer ${opts.min}..${opts.max}`);
      return opts.def;
    }
    return v;
  }

  bool(o: Record<string, unknown>, key: string, at: string, def: boolean): boolean {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== "boolean") {
      this.bad(join(at, key), "must be true or false");
      return def;
    }
    return v;
  }

  oneOf<T extends string>(
    o: Record<string, unknown>,
    key: string,
    at: string,
    values: readonly T[],
    def: T,
  ): T {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      this.bad(join(at, key), `must be one of ${values.join(", ")}`);
      return def;
    }
    return v as T;
  }

  /** A file path, made absolute against the config's directory; `mustRead`: it must be readable now. */
  file(o: Record<string, unknown>, key: string, at: string, mustRead = false): string | undefined {
    const v = this.string(o, key, at);
    if (v === undefined) return undefined;
    const path = isAbsolute(v) ? v : resolve(this.#baseDir, v);
    if (mustRead) {
      try {
        readFileSync(path);
      } catch (e) {
        this.bad(join(at, key), `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
      }
    }
    return path;
  }

  /**
   * `<key>` inline or `<key>File` read from disk (trailing newline dropped). Exactly one is
   * required. Neither message holds the secret.
   */
  secret(o: Record<string, unknown>, at: string, key: string): string | undefined {
    const inline = o[key];
    const fileKey = `${key}File`;
    const file = o[fileKey];
    if (inline !== undefined && file !== undefined) {
      this.bad(join(at, key), `give ${key} or ${fileKey}, not both`);
      return undefined;
    }
    if (inline !== undefined) {
      if (typeof inline !== "string" || inline === "") {
        this.bad(join(at, key), "must be a non-empty string");
        return undefined;
      }
      return inline;
    }
    if (file === undefined) {
      this.bad(join(at, key), `is required (or ${fileKey})`);
      return undefined;
    }
    const path = this.file(o, fileKey, at);
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(path, "utf8").replace(/\r?\n$/, "");
    } catch (e) {
      this.bad(join(at, fileKey), `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
      return undefined;
    }
    if (text === "") {
      this.bad(join(at, fileKey), `${path} is empty`);
      return undefined;
    }
    return text;
  }

  /** A driver section's fields by kind; the checked ones are returned, bad ones reported. */
  fields(
    o: Record<string, unknown>,
    at: string,
    spec: Readonly<Record<string, FieldKind>>,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, kind] of Object.entries(spec)) {
      if (o[key] === undefined || o[key] === null) continue;
      const value = this.#field(o, key, at, kind);
      if (value !== undefined) out[key] = value;
    }
    return out;
  }

  #field(o: Record<string, unknown>, key: string, at: string, kind: FieldKind): unknown {
    switch (kind) {
      case "string":
        return this.string(o, key, at);
      case "url": {
        const v = this.string(o, key, at);
        if (v !== undefined && !isHttpUrl(v)) this.bad(join(at, key), "must be an http(s) URL");
        return v;
      }
      case "port":
        return this.int(o, key, at, { min: 0, max: 65_535 });
      case "ms":
        return this.int(o, key, at, { min: 1, max: 86_400_000 });
      case "count":
        return this.int(o, key, at, { min: 0, max: Number.MAX_SAFE_INTEGER });
      case "bool":
        return this.bool(o, key, at, false);
      case "strings": {
        const v = o[key];
        if (!Array.isArray(v) || !v.every((x) => typeof x === "string" && x !== "")) {
          this.bad(join(at, key), "must be a list of non-empty strings");
          return undefined;
        }
        return [...(v as string[])];
      }
      case "backoff": {
        const b = this.section(o[key], join(at, key), ["initialMs", "maxMs", "factor", "jitter"]);
        const bat = join(at, key);
        const out: Record<string, number> = {};
        for (const k of ["initialMs", "maxMs"]) {
          const n = this.int(b, k, bat, { min: 1, max: 86_400_000 });
          if (n !== undefined) out[k] = n;
        }
        for (const [k, min, max] of [
          ["factor", 1, 100],
          ["jitter", 0, 1],
        ] as const) {
          const v = b[k];
          if (v === undefined) continue;
          if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max)
            this.bad(join(bat, k), `must be a number ${min}..${max}`);
          else out[k] = v;
        }
        return out;
      }
    }
  }
}

function join(at: string, key: string): string {
  return at === "" ? key : `${at}.${key}`;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value as DeepReadonly<T>;
}
