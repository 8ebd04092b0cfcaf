/**
 * DM Notification (Package #0, "General Notification Initiated Session Alert"): the binary trigger a
 * DM server sends (WAP Push over SMS or UDP) to make the client open a session. Sans-I/O: bytes in,
 * values out; MD5 comes from node:crypto.
 *
 * Layout (OMA-TS-DM_Notification-V1_2 section 6; protocol.md 5.1), network byte order:
 *
 * ```
 *   0..15   digest          MD5, covers everything after it (the "trigger")
 *  16..23   64-bit word     version(10) ui-mode(2) initiator(1) future-use(27) sessionid(16) length-id(8)
 *  24..     server-id       length-id bytes, UTF-8 (DMAcc ServerID)
 *  ...      vendor-specific the rest, opaque
 * ```
 *
 * Digest = MD5( B64(MD5("<server-identifier>:<password>")) ":" nonce ":" B64(MD5(trigger)) ), where
 * password and nonce are the server credentials (SRVCRED AAuthSecret, AAuthData). When the stored
 * nonce fails, the spec says to retry with the nonce 0x00000000, which implementations read two ways
 * (4 zero bytes, or the 10-character text libdmclient uses); `verifyPackage0` tries both.
 *
 * Decisions:
 * - A version other than 11 or 12 is not refused: `parsePackage0` returns it with
 *   `versionSupported: false` so the caller logs it (protocol.md 5.2: accept 11 and 12, log others;
 *   the digest, not the version, is what decides whether a session starts). We send 11.
 * - The future-use bits are ignored on input and written as zero.
 * - SessionID 0 is refused (`Codec_InvalidStructure`): the id must map to a SessionID of 1..FFFF.
 * - libdmclient byte-swaps the session id field (`ntohs` on an already host-order value); we read it
 *   big-endian as the layout says and do not copy that.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ErrorCode, GatewayError } from "../core/errors.js";
import type { AuthConfig } from "./auth.js";

/** User-interaction mode requested by the server (2 bits). */
export type UiMode = "not-specified" | "background" | "informative" | "user-interaction";
/** Who asked for the session (1 bit): 0 client/user, 1 server. */
export type Initiator = "client" | "server";

export interface Notification {
  /** Notification version times ten, 10 bits (11 = "1.1", the value DM 1.2 messages carry). */
  readonly version: number;
  readonly uiMode: UiMode;
  readonly initiator: Initiator;
  /** 16-bit session id, 1..0xFFFF; becomes the Pkg#1 SessionID through `sessionIdText`. */
  readonly sessionId: number;
  /** The server identifier (DMAcc ServerID), at most 255 UTF-8 bytes. */
  readonly serverId: string;
  /** The optional vendor-specific trigger body, kept as is (may be empty). */
  readonly vendorSpecific: Uint8Array;
}

export type ParsedPackage0 =
  | {
      readonly ok: true;
      readonly notification: Notification;
      /** The 16 digest bytes as received. */
      readonly digest: Uint8Array;
      /** Everything after the digest: the bytes the digest covers. */
      readonly trigger: Uint8Array;
      /** False for a version other than 11 or 12: still parsed, for the caller to log (see above). */
      readonly versionSupported: boolean;
    }
  | { readonly ok: false; readonly error: GatewayError };

/** The credentials the digest is keyed with. */
export interface Package0Credentials {
  /** The name used in the digest: SRVCRED AAuthName, or the ServerID (usually the same). */
  readonly serverId: string;
  /** SRVCRED AAuthSecret. */
  readonly password: string;
  /** Raw nonce bytes (SRVCRED AAuthData, b64-decoded). */
  readonly nonce: Uint8Array;
}

/**
 * The digest credentials of a server that presents `auth` to the device (its SRVCRED), under its
 * ServerID (protocol.md 5.1: server-identifier is the ServerID; receivers also try AAuthName).
 */
export function package0Credentials(
  serverId: string,
  auth: AuthConfig,
  nonce: Uint8Array,
): Package0Credentials {
  return { serverId, password: auth.scheme === "none" ? "" : auth.secret, nonce };
}

/** Which nonce made the digest match. */
export type Package0NonceKind = "stored" | "zero-bytes" | "zero-ascii";

export type Package0Verification =
  | {
      readonly ok: true;
      readonly nonce: Package0NonceKind;
      /** The nonce bytes that matched: build the Pkg#1 credentials on these. */
      readonly nonceBytes: Uint8Array;
      /** The name that matched (one of `names`). */
      readonly name: string;
    }
  | { readonly ok: false; readonly reason: "digest-mismatch" };

export interface VerifyOptions {
  /** Names to try as server-identifier, in order: the ServerID and the SRVCRED AAuthName. */
  readonly names: readonly string[];
  readonly password: string;
  /** The stored server nonce, or undefined when none is stored yet (only the fallbacks are tried). */
  readonly nonce: Uint8Array | undefined;
}

export const PACKAGE0_DIGEST_BYTES = 16;
/** Digest plus the 64-bit header word: the shortest valid Pkg#0 (with an empty server id). */
export const PACKAGE0_MIN_BYTES = PACKAGE0_DIGEST_BYTES + 8;
/** The version we send: 11 ("1.1"), which is what DM 1.2 clients such as libdmclient accept. */
export const PACKAGE0_VERSION = 11;
/** Versions we accept without flagging (protocol.md 5.2). */
export const PACKAGE0_SUPPORTED_VERSIONS: readonly number[] = [11, 12];

const UI_MODES: readonly UiMode[] = ["not-specified", "background", "informative", "user-interaction"];
const MAX_SERVER_ID_BYTES = 0xff;
const MAX_VERSION = 0x3ff;

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ENCODER = new TextEncoder();
const COLON = ENCODER.encode(":");
/** The 10-character text libdmclient uses as the fallback nonce (PRV_DEFAULT_NONCE). */
const ZERO_NONCE_ASCII = "0x00000000";

/**
 * The trigger: the 64-bit header word, the server id and the vendor-specific bytes.
 * @throws GatewayError(Codec_EncodeFailed) for a version outside 0..1023, a session id outside
 *   1..0xFFFF, or a server id longer than 255 UTF-8 bytes.
 */
export function encodeTrigger(n: Notification): Uint8Array {
  if (!Number.isInteger(n.version) || n.version < 0 || n.version > MAX_VERSION) {
    throw encodeError(`Pkg#0 version ${String(n.version)} does not fit in 10 bits`, { version: n.version });
  }
  if (!Number.isInteger(n.sessionId) || n.sessionId < 1 || n.sessionId > 0xffff) {
    throw encodeError(`Pkg#0 session id ${String(n.sessionId)} is outside 1..0xFFFF`, {
      sessionId: n.sessionId,
    });
  }
  const serverId = ENCODER.encode(n.serverId);
  if (serverId.length > MAX_SERVER_ID_BYTES) {
    throw encodeError("Pkg#0 server id is longer than 255 bytes", { length: serverId.length });
  }
  const out = new Uint8Array(8 + serverId.length + n.vendorSpecific.length);
  const view = new DataView(out.buffer);
  // High word: version bits 31..22, ui-mode 21..20, initiator 19, future-use 18..0 (zero).
  const hi =
    ((n.version << 22) | (UI_MODES.indexOf(n.uiMode) << 20) | ((n.initiator === "server" ? 1 : 0) << 19)) >>>
    0;
  // Low word: future-use 31..24 (zero), session id 23..8, length-id 7..0.
  const lo = ((n.sessionId << 8) | serverId.length) >>> 0;
  view.setUint32(0, hi);
  view.setUint32(4, lo);
  out.set(serverId, 8);
  out.set(n.vendorSpecific, 8 + serverId.length);
  return out;
}

/**
 * Digest ‖ trigger. Use `buildPackage0` to compute the digest.
 * @throws GatewayError(Codec_EncodeFailed) for a digest that is not 16 bytes, or as `encodeTrigger`.
 */
export function encodePackage0(n: Notification, digest: Uint8Array): Uint8Array {
  if (digest.length !== PACKAGE0_DIGEST_BYTES) {
    throw encodeError(`Pkg#0 digest must be 16 bytes, got ${digest.length}`, { length: digest.length });
  }
  return concat([digest, encodeTrigger(n)]);
}

/** MD5( B64(MD5("serverId:password")) ":" nonce ":" B64(MD5(trigger)) ), 16 raw bytes. */
export function package0Digest(trigger: Uint8Array, credentials: Package0Credentials): Uint8Array {
  const keyB64 = md5(ENCODER.encode(`${credentials.serverId}:${credentials.password}`)).toString("base64");
  return new Uint8Array(digestWithKey(keyB64, credentials.nonce, md5(trigger).toString("base64")));
}

/**
 * A complete Pkg#0 (what a DM server, or the gateway as server toward a device, sends).
 * @throws GatewayError(Codec_EncodeFailed) as `encodeTrigger`.
 */
export function buildPackage0(n: Notification, credentials: Package0Credentials): Uint8Array {
  const trigger = encodeTrigger(n);
  return concat([package0Digest(trigger, credentials), trigger]);
}

/**
 * Parses a Pkg#0. Malformed bytes are a value, never an exception:
 * `Codec_Truncated` (shorter than 24 bytes, or a length-id past the end),
 * `Codec_InvalidEncoding` (server id not UTF-8), `Codec_InvalidStructure` (session id 0).
 * The digest is not checked here; see `verifyPackage0`.
 */
export function parsePackage0(bytes: Uint8Array): ParsedPackage0 {
  if (bytes.length < PACKAGE0_MIN_BYTES) {
    return fail(
      `Pkg#0 of ${bytes.length} bytes is shorter than its 24-byte header`,
      ErrorCode.Codec_Truncated,
      {
        length: bytes.length,
        need: PACKAGE0_MIN_BYTES,
      },
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hi = view.getUint32(PACKAGE0_DIGEST_BYTES);
  const lo = view.getUint32(PACKAGE0_DIGEST_BYTES + 4);
  const version = hi >>> 22;
  const uiMode = UI_MODES[(hi >>> 20) & 0x3] ?? "not-specified";
  const initiator: Initiator = ((hi >>> 19) & 0x1) === 1 ? "server" : "client";
  const sessionId = (lo >>> 8) & 0xffff;
  const lengthId = lo & 0xff;

  const serverIdEnd = PACKAGE0_MIN_BYTES + lengthId;
  if (serverIdEnd > bytes.length) {
    return fail(
      `Pkg#0 length-id ${lengthId} runs past the end (${bytes.length - PACKAGE0_MIN_BYTES} bytes left)`,
      ErrorCode.Codec_Truncated,
      { lengthId, available: bytes.length - PACKAGE0_MIN_BYTES },
    );
  }
  if (sessionId === 0) {
    return fail("Pkg#0 session id is 0; it must be 1..0xFFFF", ErrorCode.Codec_InvalidStructure, {
      sessionId,
    });
  }
  let serverId: string;
  try {
    serverId = UTF8.decode(bytes.subarray(PACKAGE0_MIN_BYTES, serverIdEnd));
  } catch (e) {
    // TextDecoder with fatal: true throws a TypeError on malformed UTF-8: bad input, not a bug.
    return fail(
      "Pkg#0 server id is not UTF-8",
      ErrorCode.Codec_InvalidEncoding,
      { offset: PACKAGE0_MIN_BYTES },
      e,
    );
  }
  return {
    ok: true,
    notification: {
      version,
      uiMode,
      initiator,
      sessionId,
      serverId,
      vendorSpecific: bytes.slice(serverIdEnd),
    },
    digest: bytes.slice(0, PACKAGE0_DIGEST_BYTES),
    trigger: bytes.slice(PACKAGE0_DIGEST_BYTES),
    versionSupported: PACKAGE0_SUPPORTED_VERSIONS.includes(version),
  };
}

/**
 * Checks a parsed Pkg#0's digest. Tries the stored nonce first, then the fallback nonce 0x00000000
 * as 4 zero bytes, then as the 10-character text "0x00000000" (protocol.md 5.1), each with every
 * name in `names`; the first match wins. Comparisons are constant-time. A mismatch is a value: the
 * caller ignores the notification (and may count it), it is not a failure of ours.
 */
export function verifyPackage0(
  parsed: { readonly digest: Uint8Array; readonly trigger: Uint8Array },
  options: VerifyOptions,
): Package0Verification {
  if (parsed.digest.length !== PACKAGE0_DIGEST_BYTES) return { ok: false, reason: "digest-mismatch" };
  const received = Buffer.from(parsed.digest.buffer, parsed.digest.byteOffset, parsed.digest.byteLength);
  const triggerB64 = md5(parsed.trigger).toString("base64");
  const nonces: [Package0NonceKind, Uint8Array][] = [];
  if (options.nonce !== undefined) nonces.push(["stored", options.nonce]);
  nonces.push(["zero-bytes", new Uint8Array(4)], ["zero-ascii", ENCODER.encode(ZERO_NONCE_ASCII)]);
  const names = [...new Set(options.names)];
  for (const [kind, nonce] of nonces) {
    for (const name of names) {
      const keyB64 = md5(ENCODER.encode(`${name}:${options.password}`)).toString("base64");
      if (timingSafeEqual(digestWithKey(keyB64, nonce, triggerB64), received)) {
        return { ok: true, nonce: kind, nonceBytes: Uint8Array.from(nonce), name };
      }
    }
  }
  return { ok: false, reason: "digest-mismatch" };
}

/**
 * The Pkg#1 SessionID for a Pkg#0 session id: upper-case hex without leading zeros, 1 to 4
 * characters (0x00AF → "AF"; protocol.md 5.1).
 * @throws RangeError for an id that is not an integer in 1..0xFFFF (a caller bug: parsed ids are).
 */
export function sessionIdText(id: number): string {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff) {
    throw new RangeError(`session id ${String(id)} is outside 1..0xFFFF`);
  }
  return id.toString(16).toUpperCase();
}

function digestWithKey(keyB64: string, nonce: Uint8Array, triggerB64: string): Buffer {
  return md5(concat([ENCODER.encode(keyB64), COLON, nonce, COLON, ENCODER.encode(triggerB64)]));
}

function md5(data: Uint8Array): Buffer {
  return createHash("md5").update(data).digest();
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function encodeError(message: string, context: Record<string, unknown>): GatewayError {
  return new GatewayError(message, ErrorCode.Codec_EncodeFailed, { context });
}

function fail(
  message: string,
  code: ErrorCode,
  context: Record<string, unknown>,
  cause?: unknown,
): { readonly ok: false; readonly error: GatewayError } {
  return {
    ok: false,
    error: new GatewayError(message, code, cause === undefined ? { context } : { context, cause }),
  };
}
