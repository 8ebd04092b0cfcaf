/**
 * The one error class of dmgw (style.md 2.4): a `GatewayError` carries a stable `code` that callers
 * match on (never the message text), an optional `context` with machine-readable details, and the
 * ES2022 `cause` when it wraps another failure.
 */

/** Error codes, grouped by the area that raises them. Values are stable strings. */
export enum ErrorCode {
  // Codec_*: bad bytes from outside, raised by src/syncml decoders.
  Codec_TooLarge = "Codec_TooLarge",
  Codec_TooDeep = "Codec_TooDeep",
  Codec_TooManyElements = "Codec_TooManyElements",
  Codec_Truncated = "Codec_Truncated",
  Codec_IntegerOverflow = "Codec_IntegerOverflow",
  Codec_UnknownToken = "Codec_UnknownToken",
  Codec_UnsupportedVersion = "Codec_UnsupportedVersion",
  Codec_UnsupportedCharset = "Codec_UnsupportedCharset",
  Codec_UnknownDocument = "Codec_UnknownDocument",
  Codec_InvalidEncoding = "Codec_InvalidEncoding",
  Codec_MalformedXml = "Codec_MalformedXml",
  Codec_UnknownElement = "Codec_UnknownElement",
  Codec_InvalidStructure = "Codec_InvalidStructure",
  Codec_TrailingData = "Codec_TrailingData",
  Codec_EncodeFailed = "Codec_EncodeFailed",

  // Store_*: the SQLite file.
  Store_Missing = "Store_Missing",
  Store_Unavailable = "Store_Unavailable",
  Store_Foreign = "Store_Foreign",
  Store_TooNew = "Store_TooNew",
  Store_Corrupt = "Store_Corrupt",

  // Tree_*: misuse of the tree by gateway code (a server's bad request is a DM status, not this).
  Tree_InvalidPlugin = "Tree_InvalidPlugin",
  Tree_NotFound = "Tree_NotFound",
  Tree_Conflict = "Tree_Conflict",

  // Link_*: a byte link (serial port) to a peer.
  Link_OpenFailed = "Link_OpenFailed",
  Link_Closed = "Link_Closed",

  // Modem_*: the cellular modem's AT dialogue.
  Modem_Timeout = "Modem_Timeout",
  Modem_CommandFailed = "Modem_CommandFailed",
  Modem_StartFailed = "Modem_StartFailed",

  // Driver_*: a southbound transport.
  Driver_StartFailed = "Driver_StartFailed",
  Driver_Unreachable = "Driver_Unreachable",
  Driver_LinkLost = "Driver_LinkLost",
  Driver_Stopped = "Driver_Stopped",

  // Config_*: the site configuration (src/config) or a board profile (board/profile.ts).
  /** The configuration has problems; `context.problems` lists every one with its path. */
  Config_Invalid = "Config_Invalid",
  /** The configuration file cannot be read or parsed. */
  Config_Unreadable = "Config_Unreadable",
  /** A board profile is unknown or its data is invalid. */
  Config_BoardProfile = "Config_BoardProfile",

  // Runtime_*: the composition root (src/runtime/gateway.ts) and its plumbing (sd-notify.ts).
  /** A start step failed; `context.step` names it. */
  Runtime_StartFailed = "Runtime_StartFailed",
  /** A message to the service manager (sd_notify) was not delivered; logged, never thrown. */
  Runtime_NotifyFailed = "Runtime_NotifyFailed",

  // Cli_*: the command line was used wrongly.
  Cli_Usage = "Cli_Usage",
  Cli_Io = "Cli_Io",

  // Control_*: the local control socket (runtime/control-*.ts).
  /** No service answers on the control socket (none runs, or the socket is not ours to use). */
  Control_Unavailable = "Control_Unavailable",
  /** Another live service already answers on the control socket path. */
  Control_InUse = "Control_InUse",
  /** The control socket could not be created. */
  Control_ListenFailed = "Control_ListenFailed",
  /** A request that is not a JSON object with a string id and method, or with bad params. */
  Control_BadRequest = "Control_BadRequest",
  Control_UnknownMethod = "Control_UnknownMethod",
  /** A request line over the size limit: answered, then the connection is closed. */
  Control_TooLarge = "Control_TooLarge",
  /** What a request names (a node, a job) does not exist. */
  Control_NotFound = "Control_NotFound",
  /** The gateway refused the request (a job that cannot start, a node that exists). */
  Control_Refused = "Control_Refused",
  /** The service's answer did not follow the protocol (client side). */
  Control_Protocol = "Control_Protocol",

  // Metrics_*: the Prometheus endpoint (runtime/metrics.ts).
  /** The metrics endpoint may listen on a loopback address only. */
  Metrics_NotLoopback = "Metrics_NotLoopback",
  Metrics_ListenFailed = "Metrics_ListenFailed",
}

export interface GatewayErrorOptions {
  /** Machine-readable details (offsets, limits, names). Never secrets. */
  readonly context?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly context: Readonly<Record<string, unknown>> | undefined;

  constructor(message: string, code: ErrorCode, options: GatewayErrorOptions = {}) {
    super(`${message} [${code}]`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GatewayError";
    this.code = code;
    this.context = options.context;
  }
}

/** True when `e` is a GatewayError, optionally of the given code. */
export function isGatewayError(e: unknown, code?: ErrorCode): e is GatewayError {
  return e instanceof GatewayError && (code === undefined || e.code === code);
}

/** True for the codes that describe malformed input from outside (a codec failure). */
export function isCodecError(e: unknown): e is GatewayError {
  return e instanceof GatewayError && e.code.startsWith("Codec_");
}
