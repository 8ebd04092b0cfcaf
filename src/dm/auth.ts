/**
 * DM-level authentication (OMA DM Security 1.2 section 5.1, DM Protocol 1.2 authentication;
 * protocol.md 3.7 and 4.3): building and checking `Cred` (syncml:auth-basic, syncml:auth-md5), the
 * `x-syncml-hmac` transport header (syncml:auth-MAC), and `Chal` challenges. Pure functions: the caller
 * injects randomness, keeps nonces and session state, and moves the bytes.
 *
 *   basic  Data = B64(name ":" secret)
 *   md5    Data = B64(H(B64(H(name ":" secret)) ":" nonce))
 *   hmac   mac  = B64(H(B64(H(name ":" secret)) ":" nonce ":" B64(H(body))))      H = MD5
 *
 * A nonce is bytes: the raw octets of the Base64-decoded NextNonce, appended to the hash input as
 * octets, never as text. `body` is the exact message body as it travels (XML or WBXML), never a
 * re-serialisation.
 *
 * Secrets: no result, refusal or thrown error ever holds the secret, `name:secret`, or a digest or MAC
 * this side computed; refusals describe what was wrong with the input, not what was expected.
 */
import assert from "node:assert/strict";
import { createHash, timingSafeEqual } from "node:crypto";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { StatusCode } from "../syncml/constants.js";
import type { Chal, Cred, Meta } from "../syncml/model.js";

/** A DM-level authentication scheme. `hmac` travels in the `x-syncml-hmac` header, never in `Cred`. */
export type AuthScheme = "basic" | "md5" | "hmac";

/**
 * One side's DM-level credentials (protocol.md 3.7). `none`: no DM-level authentication (TLS does
 * it, or nobody). The secret is never logged and never part of an outcome.
 */
export type AuthConfig =
  | { readonly scheme: "none" }
  | { readonly scheme: AuthScheme; readonly name: string; readonly secret: string };
/** The schemes that travel in a `Cred` element. */
export type CredScheme = Exclude<AuthScheme, "hmac">;
/** DMAcc `AppAuth/<x>/AAuthType` names of the DM-level schemes (protocol.md 4.3). */
export type AAuthType = "BASIC" | "DIGEST" | "HMAC";

/** One side's credentials: the user name (LocName, AAuthName) and its secret (AAuthSecret). */
export interface Credentials {
  readonly name: string;
  /** The password or shared secret, hashed as UTF-8. Never logged, never in an error. */
  readonly secret: string;
}

/** Meta Type strings of the schemes (DM Security 1.2 section 5.1.3). */
export const AUTH_TYPE_BASIC = "syncml:auth-basic";
export const AUTH_TYPE_MD5 = "syncml:auth-md5";
export const AUTH_TYPE_MAC = "syncml:auth-MAC";
/** The Meta Format of every credential and of NextNonce. */
export const FORMAT_B64 = "b64";
/** The transport header carrying the HMAC (DM Security 1.2 section 5.1.4.3). */
export const HMAC_HEADER = "x-syncml-hmac";
/** The only HMAC algorithm defined, and the one assumed when the header names none. */
export const HMAC_ALGORITHM_MD5 = "MD5";
/** Recommended nonce size in octets: at least 128 bits (DM Security 1.2 section 5.1.3.3). */
export const DEFAULT_NONCE_SIZE = 16;

const META_TYPES: Readonly<Record<AuthScheme, string>> = {
  basic: AUTH_TYPE_BASIC,
  md5: AUTH_TYPE_MD5,
  hmac: AUTH_TYPE_MAC,
};
const AAUTH_TYPES: Readonly<Record<AuthScheme, AAuthType>> = { basic: "BASIC", md5: "DIGEST", hmac: "HMAC" };
const SCHEMES: readonly AuthScheme[] = ["basic", "md5", "hmac"];

/** Standard alphabet; padding optional (the DM Security example MAC is unpadded). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
/** Whitespace a Base64 value may be folded with (XML character data, folded headers). */
const BASE64_SPACE = /[ \t\r\n]+/g;
const COLON = Uint8Array.of(0x3a);
const UTF8 = new TextEncoder();

// ---------------------------------------------------------------------------------------------------
// Scheme names

/** The Meta Type string of `scheme` (`syncml:auth-basic`, `syncml:auth-md5`, `syncml:auth-MAC`). */
export function authMetaType(scheme: AuthScheme): string {
  return META_TYPES[scheme];
}

/**
 * The scheme a Meta Type string names, or undefined for any other type (X509, SecurID, unknown).
 * Matched without regard to case or surrounding whitespace: peers differ on `auth-MAC` vs `auth-mac`.
 */
export function schemeFromMetaType(type: string): AuthScheme | undefined {
  const wanted = type.trim().toLowerCase();
  return SCHEMES.find((s) => META_TYPES[s].toLowerCase() === wanted);
}

/** The DMAcc AAuthType name of `scheme` (`BASIC`, `DIGEST`, `HMAC`). */
export function authAAuthType(scheme: AuthScheme): AAuthType {
  return AAUTH_TYPES[scheme];
}

/**
 * The scheme a DMAcc AAuthType names, or undefined for the others (`HTTP-BASIC`, `X509`,
 * `TRANSPORT`, ...); case and surrounding whitespace are ignored.
 */
export function schemeFromAAuthType(name: string): AuthScheme | undefined {
  const wanted = name.trim().toUpperCase();
  return SCHEMES.find((s) => AAUTH_TYPES[s] === wanted);
}

// ---------------------------------------------------------------------------------------------------
// Nonces

/**
 * A fresh nonce of `size` octets (16 = 128 bits, the recommended minimum) from `randomBytes`
 * (`crypto.randomBytes` in production, a fixed source in tests).
 */
export function newNonce(
  randomBytes: (size: number) => Uint8Array,
  size: number = DEFAULT_NONCE_SIZE,
): Uint8Array {
  assert.ok(Number.isSafeInteger(size) && size >= 1, "a nonce size is a positive integer");
  const bytes = randomBytes(size);
  assert.equal(bytes.length, size, "randomBytes returned the number of octets asked for");
  return Uint8Array.from(bytes);
}

/** The NextNonce text of a nonce: Base64, standard alphabet, padded. */
export function encodeNonce(nonce: Uint8Array): string {
  return base64(nonce);
}

/**
 * The octets of a NextNonce (or any b64 value): standard alphabet, padding optional, spaces, tabs
 * and line breaks ignored. Undefined when the text is not Base64.
 */
export function decodeNonce(text: string): Uint8Array | undefined {
  return decodeBase64(text);
}

// ---------------------------------------------------------------------------------------------------
// Cred: syncml:auth-basic and syncml:auth-md5

/** The syncml:auth-basic value: B64(`name:secret`) of the UTF-8 text. */
export function basicDigest(cred: Credentials): string {
  return base64(utf8(`${cred.name}:${cred.secret}`));
}

/** The syncml:auth-md5 value: B64(MD5(B64(MD5(`name:secret`)) ":" nonce)); the nonce as octets. */
export function md5Digest(cred: Credentials, nonce: Uint8Array): string {
  return base64(md5DigestBytes(cred, nonce));
}

/**
 * The `Cred` of `scheme` for the SyncHdr: Meta Type and Format `b64`, and the digest as Data.
 * syncml:auth-md5 needs the nonce last received from the peer (an empty one when none ever came).
 */
export function buildCred(scheme: "basic", cred: Credentials): Cred;
export function buildCred(scheme: CredScheme, cred: Credentials, nonce: Uint8Array): Cred;
export function buildCred(scheme: CredScheme, cred: Credentials, nonce?: Uint8Array): Cred {
  const meta: Meta = { type: META_TYPES[scheme], format: FORMAT_B64 };
  if (scheme === "basic") return { meta, data: basicDigest(cred) };
  assert.ok(nonce !== undefined, "syncml:auth-md5 credentials need a nonce");
  return { meta, data: md5Digest(cred, nonce) };
}

/** Why credentials were refused (the `code` of a failed verification). */
export type AuthFailure =
  /** 407: no credentials (no Cred, no x-syncml-hmac header). */
  | "missing"
  /** 401: a Meta Type this side does not verify (X509, SecurID, auth-MAC inside Cred, unknown). */
  | "unsupported-type"
  /** 401: a Meta Format other than b64. */
  | "unsupported-format"
  /** 401: a scheme other than the one required (the one challenged for). */
  | "wrong-scheme"
  /** 401: Data or mac that is not Base64, or an x-syncml-hmac header that does not parse. */
  | "malformed"
  /** 401: an x-syncml-hmac algorithm other than MD5. */
  | "unsupported-algorithm"
  /** 401: an x-syncml-hmac username other than the expected name. */
  | "unknown-user"
  /** 401: well-formed credentials that do not match (wrong name, secret or nonce). */
  | "mismatch";

/** The two statuses of an authentication failure (protocol.md 3.5). */
export type AuthFailureStatus = typeof StatusCode.InvalidCredentials | typeof StatusCode.MissingCredentials;

/** The outcome of checking a peer's credentials. `reason` is for logs; match on `code`. */
export type AuthResult =
  | { readonly ok: true; readonly scheme: AuthScheme }
  | {
      readonly ok: false;
      readonly status: AuthFailureStatus;
      readonly code: AuthFailure;
      readonly reason: string;
    };

export interface VerifyCredOptions {
  /**
   * The scheme the peer must use (the one this side challenged for); any other is refused with
   * `wrong-scheme` (DM Security 1.2 section 5.1.4.1). When absent, basic and md5 are both accepted.
   */
  readonly require?: CredScheme;
}

/**
 * Checks a peer's `Cred` (SyncHdr) against the expected credentials. A missing Meta Type means
 * syncml:auth-basic and a missing Format means b64 (SyncML RepPro defaults). The value is compared
 * in constant time; the user name is part of what is hashed, so a wrong name is a mismatch.
 *
 * @param nonce the nonce this side last sent the peer (ignored for basic).
 * @returns 407 `missing` when there is no Cred; 401 with a `code` for anything else wrong.
 */
export function verifyCred(
  received: Cred | undefined,
  expected: Credentials,
  nonce: Uint8Array,
  options: VerifyCredOptions = {},
): AuthResult {
  if (received === undefined) return missing("no credentials");
  const type = received.meta?.type ?? AUTH_TYPE_BASIC;
  const scheme = schemeFromMetaType(type);
  if (scheme === undefined) return invalid("unsupported-type", "the credential type is not supported");
  if (scheme === "hmac") {
    return invalid("unsupported-type", "syncml:auth-MAC travels in the x-syncml-hmac header, not in Cred");
  }
  if (options.require !== undefined && scheme !== options.require) {
    return invalid(
      "wrong-scheme",
      `${META_TYPES[scheme]} credentials where ${META_TYPES[options.require]} was required`,
    );
  }
  const format = received.meta?.format ?? FORMAT_B64;
  if (format.trim().toLowerCase() !== FORMAT_B64) {
    return invalid("unsupported-format", "the credential format is not b64");
  }
  const value = decodeBase64(received.data);
  if (value === undefined) return invalid("malformed", "the credential data is not Base64");
  const want =
    scheme === "basic" ? utf8(`${expected.name}:${expected.secret}`) : md5DigestBytes(expected, nonce);
  if (!constantTimeEqual(value, want))
    return invalid("mismatch", `the ${META_TYPES[scheme]} credentials do not match`);
  return { ok: true, scheme };
}

// ---------------------------------------------------------------------------------------------------
// HMAC: the x-syncml-hmac header

/** The parameters of an x-syncml-hmac header. */
export interface HmacHeader {
  readonly algorithm: typeof HMAC_ALGORITHM_MD5;
  /** The sender's identity: the LocName of the SyncHdr Source. */
  readonly username: string;
  /** The MAC as it travelled: Base64 text. */
  readonly mac: string;
}

export interface HmacHeaderInput {
  readonly algorithm?: typeof HMAC_ALGORITHM_MD5;
  readonly username: string;
  readonly mac: string;
}

/** Why an x-syncml-hmac header was refused. */
export type HmacHeaderRefusal = "malformed" | "unsupported-algorithm" | "missing-username" | "missing-mac";

export type HmacHeaderResult =
  | { readonly ok: true; readonly header: HmacHeader }
  | {
      readonly ok: false;
      readonly code: HmacHeaderRefusal;
      readonly reason: string;
      /** For `unsupported-algorithm`: the name the peer sent (printable ASCII, at most 32 characters). */
      readonly algorithm?: string;
    };

/**
 * The syncml:auth-MAC value: B64(MD5(B64(MD5(`name:secret`)) ":" nonce ":" B64(MD5(body)))).
 *
 * @param body the exact message body as it travels (XML or WBXML).
 */
export function hmacMac(cred: Credentials, nonce: Uint8Array, body: Uint8Array): string {
  return base64(hmacMacBytes(cred, nonce, body));
}

/**
 * The x-syncml-hmac header value: `algorithm=MD5, username="<name>", mac=<b64>`. The username is a
 * quoted-string (`"` and `\` escaped).
 *
 * @throws GatewayError(Codec_EncodeFailed) when the username holds a control character (it cannot be
 *   a quoted-string) or the mac is not Base64.
 */
export function formatHmacHeader(input: HmacHeaderInput): string {
  // A username can come from a server (a Replace of AAuthName), so this is bad input, not a bug.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(input.username)) {
    throw new GatewayError(
      "x-syncml-hmac: the username holds a control character",
      ErrorCode.Codec_EncodeFailed,
      {
        context: { param: "username" },
      },
    );
  }
  if (input.mac.length === 0 || !BASE64.test(input.mac)) {
    throw new GatewayError("x-syncml-hmac: the mac is not Base64", ErrorCode.Codec_EncodeFailed, {
      context: { param: "mac" },
    });
  }
  const username = input.username.replace(/["\\]/g, (c) => `\\${c}`);
  return `algorithm=${input.algorithm ?? HMAC_ALGORITHM_MD5}, username="${username}", mac=${input.mac}`;
}

/**
 * Parses an x-syncml-hmac header value (DM Security 1.2 section 5.1.4.3): a comma-separated list of
 * `name=value` pairs, where a value is a token or a quoted-string (with `\` escapes).
 *
 * Tolerated: any order; spaces, tabs and line breaks (folding) around names, `=` and commas; empty
 * list elements; parameter names and the algorithm in any case; a quoted or unquoted username, mac
 * or algorithm; unknown parameters (ignored); a leading `x-syncml-hmac:` header name. The algorithm
 * defaults to MD5.
 *
 * Refused: a repeated parameter (`malformed`: two headers folded into one are ambiguous), a missing
 * `=` or unterminated quote (`malformed`), a mac that is not Base64 (`malformed`), an algorithm other
 * than MD5 (`unsupported-algorithm`), no or an empty username or mac (`missing-username`,
 * `missing-mac`).
 */
export function parseHmacHeader(text: string): HmacHeaderResult {
  const params = new Map<string, string>();
  const src = text.replace(/^[ \t\r\n]*x-syncml-hmac[ \t]*:/i, "");
  let i = 0;
  const skipSpace = (): void => {
    while (i < src.length && isSpace(src.charCodeAt(i))) i++;
  };
  for (;;) {
    // Leading space and empty list elements (`#rule` allows `, ,`).
    while (i < src.length && (isSpace(src.charCodeAt(i)) || src[i] === ",")) i++;
    if (i >= src.length) break;
    const nameStart = i;
    while (i < src.length && isTokenChar(src.charCodeAt(i))) i++;
    if (i === nameStart) return refuse("malformed", `unexpected character at offset ${i}`);
    const name = src.slice(nameStart, i).toLowerCase();
    skipSpace();
    if (src[i] !== "=") return refuse("malformed", `parameter "${printable(name)}" has no value`);
    i++;
    skipSpace();
    let value: string;
    if (src[i] === '"') {
      i++;
      let out = "";
      let closed = false;
      while (i < src.length) {
        const c = src.charAt(i++);
        if (c === '"') {
          closed = true;
          break;
        }
        // quoted-pair: the next character stands for itself.
        out += c === "\\" && i < src.length ? src.charAt(i++) : c;
      }
      if (!closed)
        return refuse("malformed", `parameter "${printable(name)}" has an unterminated quoted string`);
      value = out;
    } else {
      const valueStart = i;
      while (i < src.length && src[i] !== "," && src[i] !== '"' && !isSpace(src.charCodeAt(i))) i++;
      value = src.slice(valueStart, i);
      if (value.length === 0) return refuse("malformed", `parameter "${printable(name)}" has an empty value`);
    }
    skipSpace();
    if (i < src.length && src[i] !== ",") {
      return refuse("malformed", `parameter "${printable(name)}" is followed by unexpected text`);
    }
    if (params.has(name)) return refuse("malformed", `parameter "${printable(name)}" appears twice`);
    params.set(name, value);
  }

  const algorithm = params.get("algorithm");
  if (algorithm !== undefined && algorithm.trim().toUpperCase() !== HMAC_ALGORITHM_MD5) {
    const shown = printable(algorithm);
    return {
      ok: false,
      code: "unsupported-algorithm",
      reason: `HMAC algorithm "${shown}" is not supported (only MD5)`,
      algorithm: shown,
    };
  }
  const username = params.get("username");
  if (username === undefined || username.length === 0) return refuse("missing-username", "no username");
  const mac = params.get("mac")?.replace(BASE64_SPACE, "");
  if (mac === undefined || mac.length === 0) return refuse("missing-mac", "no mac");
  if (!BASE64.test(mac)) return refuse("malformed", "the mac is not Base64");
  return { ok: true, header: { algorithm: HMAC_ALGORITHM_MD5, username, mac } };
}

/**
 * Checks the x-syncml-hmac header of a received message: the username must be the expected name
 * (compared exactly, as LocName) and the mac must match the body, in constant time.
 *
 * @param headerValue the header's value, undefined when the message had none.
 * @param nonce the nonce this side last sent the peer.
 * @param body the exact received body bytes.
 * @returns 407 `missing` without a header; 401 with a `code` for anything else wrong.
 */
export function verifyHmac(
  headerValue: string | undefined,
  expected: Credentials,
  nonce: Uint8Array,
  body: Uint8Array,
): AuthResult {
  if (headerValue === undefined || headerValue.trim().length === 0) return missing("no x-syncml-hmac header");
  const parsed = parseHmacHeader(headerValue);
  if (!parsed.ok) {
    const code = parsed.code === "unsupported-algorithm" ? "unsupported-algorithm" : "malformed";
    return invalid(code, `x-syncml-hmac: ${parsed.reason}`);
  }
  if (parsed.header.username !== expected.name) {
    return invalid("unknown-user", "x-syncml-hmac: the username is not the expected one");
  }
  const mac = decodeBase64(parsed.header.mac);
  if (mac === undefined) return invalid("malformed", "x-syncml-hmac: the mac is not Base64");
  if (!constantTimeEqual(mac, hmacMacBytes(expected, nonce, body))) {
    return invalid("mismatch", "x-syncml-hmac: the mac does not match the body");
  }
  return { ok: true, scheme: "hmac" };
}

// ---------------------------------------------------------------------------------------------------
// Challenges

/** Why a `Chal` could not be used. */
export type ChalRefusal = "unknown-type" | "unsupported-format" | "missing-nonce" | "bad-nonce";

export type ChalResult =
  | { readonly ok: true; readonly scheme: AuthScheme; readonly nonce: Uint8Array }
  | {
      readonly ok: false;
      readonly code: ChalRefusal;
      readonly reason: string;
      /** For `unknown-type`: the Type the peer sent (printable ASCII, at most 32 characters). */
      readonly type?: string;
    };

/**
 * A challenge for `scheme`: Meta Type, Format b64 and NextNonce = B64(nonce). md5 and hmac need a
 * nonce; a basic challenge may carry one for a later switch of scheme.
 */
export function buildChal(scheme: "basic", nonce?: Uint8Array): Chal;
export function buildChal(scheme: AuthScheme, nonce: Uint8Array): Chal;
export function buildChal(scheme: AuthScheme, nonce?: Uint8Array): Chal {
  if (nonce === undefined) {
    assert.ok(scheme === "basic", "an md5 or HMAC challenge needs a nonce");
    return { meta: { type: META_TYPES[scheme], format: FORMAT_B64 } };
  }
  return { meta: { type: META_TYPES[scheme], format: FORMAT_B64, nextNonce: base64(nonce) } };
}

/**
 * Reads a peer's challenge: the scheme it asks for and the nonce to use next. A missing Type means
 * syncml:auth-basic and a missing Format means b64. A basic challenge without NextNonce gives an
 * empty nonce; md5 and hmac challenges must carry one (DM Protocol 1.2: NextNonce Format MUST be b64).
 */
export function readChal(chal: Chal): ChalResult {
  const type = chal.meta.type ?? AUTH_TYPE_BASIC;
  const scheme = schemeFromMetaType(type);
  if (scheme === undefined) {
    const shown = printable(type);
    return {
      ok: false,
      code: "unknown-type",
      reason: `challenge type "${shown}" is not supported`,
      type: shown,
    };
  }
  const next = chal.meta.nextNonce;
  if (next === undefined) {
    if (scheme !== "basic")
      return {
        ok: false,
        code: "missing-nonce",
        reason: `${META_TYPES[scheme]} challenge without NextNonce`,
      };
    return { ok: true, scheme, nonce: new Uint8Array(0) };
  }
  const format = chal.meta.format ?? FORMAT_B64;
  if (format.trim().toLowerCase() !== FORMAT_B64) {
    return {
      ok: false,
      code: "unsupported-format",
      reason: `challenge NextNonce format "${printable(format)}" is not b64`,
    };
  }
  const nonce = decodeBase64(next);
  if (nonce === undefined)
    return { ok: false, code: "bad-nonce", reason: "challenge NextNonce is not Base64" };
  return { ok: true, scheme, nonce };
}

// ---------------------------------------------------------------------------------------------------
// Comparison

/**
 * Compares two byte strings without a data-dependent early exit. `crypto.timingSafeEqual` throws on
 * different lengths, so both sides are first hashed to a fixed-size SHA-256 digest; inputs of
 * different lengths are simply unequal.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

// ---------------------------------------------------------------------------------------------------
// Internals

function md5(...parts: Uint8Array[]): Buffer {
  const h = createHash("md5");
  for (const p of parts) h.update(p);
  return h.digest();
}

/** B64(MD5(`name:secret`)) as ASCII octets: the shared key of md5 and hmac. */
function userKey(cred: Credentials): Uint8Array {
  return utf8(base64(md5(utf8(`${cred.name}:${cred.secret}`))));
}

function md5DigestBytes(cred: Credentials, nonce: Uint8Array): Buffer {
  return md5(userKey(cred), COLON, nonce);
}

function hmacMacBytes(cred: Credentials, nonce: Uint8Array, body: Uint8Array): Buffer {
  return md5(userKey(cred), COLON, nonce, COLON, utf8(base64(md5(body))));
}

function utf8(text: string): Uint8Array {
  return UTF8.encode(text);
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function decodeBase64(text: string): Uint8Array | undefined {
  const compact = text.replace(BASE64_SPACE, "");
  if (!BASE64.test(compact)) return undefined;
  return Uint8Array.from(Buffer.from(compact, "base64"));
}

function missing(reason: string): AuthResult {
  return { ok: false, status: StatusCode.MissingCredentials, code: "missing", reason };
}

function invalid(code: Exclude<AuthFailure, "missing">, reason: string): AuthResult {
  return { ok: false, status: StatusCode.InvalidCredentials, code, reason };
}

function refuse(code: HmacHeaderRefusal, reason: string): HmacHeaderResult {
  return { ok: false, code, reason };
}

/** SP, HTAB, CR, LF. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

/** RFC 7230 tchar. */
function isTokenChar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))
  );
}

/** Peer text made safe for a log line: printable ASCII only, at most 32 characters. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return clean.length > 32 ? `${clean.slice(0, 32)}...` : clean;
}
