/**
 * Error helpers for board/modem. Malformed bytes from the network or the modem use the `Codec_*`
 * codes; link and AT failures use the `Link_*` and `Modem_*` codes of `ErrorCode`.
 */
import { ErrorCode, GatewayError, type GatewayErrorOptions } from "../../src/core/errors.js";

/**
 * The modem's codes: Link_OpenFailed (the serial port could not be opened; transient), Link_Closed
 * (the link closed or failed in use, or stop() closed it; transient), Modem_Timeout (no final result
 * code in time; context command, timeoutMs), Modem_CommandFailed (ERROR, +CME/+CMS ERROR; context
 * command, final), Modem_StartFailed (start() could not reach `ready`; the cause is the first failure).
 */
export const ModemErrorCode = {
  Link_OpenFailed: ErrorCode.Link_OpenFailed,
  Link_Closed: ErrorCode.Link_Closed,
  Modem_Timeout: ErrorCode.Modem_Timeout,
  Modem_CommandFailed: ErrorCode.Modem_CommandFailed,
  Modem_StartFailed: ErrorCode.Modem_StartFailed,
} as const;
export type ModemErrorCode = (typeof ModemErrorCode)[keyof typeof ModemErrorCode];

/** A `GatewayError` with a modem code. */
export function modemError(
  message: string,
  code: ModemErrorCode,
  options: GatewayErrorOptions = {},
): GatewayError {
  return new GatewayError(message, code, options);
}

/** A `GatewayError` for malformed input (a `Codec_*` code). */
export function codecError(
  message: string,
  code:
    | ErrorCode.Codec_Truncated
    | ErrorCode.Codec_InvalidStructure
    | ErrorCode.Codec_InvalidEncoding
    | ErrorCode.Codec_TrailingData
    | ErrorCode.Codec_TooLarge
    | ErrorCode.Codec_EncodeFailed,
  context?: Readonly<Record<string, unknown>>,
): GatewayError {
  return new GatewayError(message, code, context === undefined ? {} : { context });
}
