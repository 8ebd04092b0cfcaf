/**
 * CoAP (RFC 7252, 7641, 7959, 9175) and LwM2M 1.1 (OMA-TS-LightweightM2M_Core-V1_1_1) constants used
 * by the coap driver, its codecs and its simulator. One file per protocol (style.md 2.11).
 */

/** Content-Format numbers (IANA CoAP registry; LwM2M 1.1 Core 7.1). */
export const CONTENT_FORMAT = {
  TEXT: 0,
  LINK_FORMAT: 40,
  OPAQUE: 42,
  CBOR: 60,
  SENML_JSON: 110,
  SENML_CBOR: 112,
  LWM2M_TLV: 11542,
  LWM2M_JSON: 11543,
} as const;

/** CoAP option numbers the coap-packet codec has no name for. */
export const OPTION_REQUEST_TAG = 292; // RFC 9175 section 3.2

/** RFC 7252 section 4.8 transmission parameters (the defaults; the driver takes overrides). */
export const ACK_TIMEOUT_MS = 2000;
export const ACK_RANDOM_FACTOR = 1.5;
export const MAX_RETRANSMIT = 4;
/** EXCHANGE_LIFETIME (RFC 7252 4.8.2), ms: how long a message id is remembered for deduplication. */
export const EXCHANGE_LIFETIME_MS = 247_000;
/** NSTART (RFC 7252 4.7): exchanges in flight per endpoint. */
export const NSTART = 1;

/** Block size used by dmgw, bytes (SZX 6). RFC 7959: 2^(SZX+4), 16..1024. */
export const BLOCK_SIZE = 1024;
/** The largest reassembled Block1 body the gateway accepts, bytes. */
export const MAX_BLOCK1_BODY = 1 << 20;
/** The largest UDP datagram dmgw sends or parses (a 1024-byte block + header + options). */
export const MAX_DATAGRAM = 1280;

/** Default LwM2M ports (LwM2M 1.1 Transport 6.4): 5683 (NoSec), 5684 (DTLS, not implemented). */
export const LWM2M_PORT = 5683;
/** Registration lifetime when the client gives none, s (LwM2M 1.1 Core 6.2.1: 86400). */
export const DEFAULT_LIFETIME_S = 86_400;

/** LwM2M object ids with a meaning to the gateway. */
export const OBJECT = { SECURITY: 0, SERVER: 1, DEVICE: 3, FIRMWARE: 5 } as const;
