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

  // Cli_*: the command line was used wrongly.
  Cli_Usage = "Cli_Usage",
  Cli_Io = "Cli_Io",
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
