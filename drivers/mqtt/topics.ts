/**
 * The MQTT binding's framing, pure (style.md 2.3): topic names, the presence payload and the content
 * types. No client, no socket, no timer, no log: `driver.ts` and `sim.ts` do the I/O.
 *
 *   <prefix>/<deviceId>/dm/up      device -> gateway   DM message (Pkg#1, client packages)
 *   <prefix>/<deviceId>/dm/down    gateway -> device   DM message (server packages) or Pkg#0
 *   <prefix>/<deviceId>/status     device, retained    presence: {"state":"online"} on connect,
 *                                                       {"state":"offline"} as its last will
 *   <prefix>/gateway/status        gateway, retained   the gateway's own presence, same payload
 *
 * Payloads are the DM bytes as they are (no envelope); what they are travels in the MQTT 5
 * Content Type property (`CONTENT_TYPE_*` below) and the DM HMAC in the user property
 * `x-syncml-hmac` (the HTTP header of the same name, DM Security 1.2 section 5.5.2.2.1).
 *
 * Device ids are validated, never escaped: a topic level is the device's identity on the broker,
 * where ACLs (mosquitto `pattern ... %c`) match it literally, and an escape would make the gateway
 * and the device disagree on it. An id MQTT cannot carry as one topic level is a typed refusal:
 * empty, longer than `MAX_DEVICE_ID_BYTES` UTF-8 bytes, holding `+` or `#` (wildcards), `/` (level
 * separator), NUL, another control character (MQTT 5 section 1.5.4), a lone surrogate, or the
 * reserved level `gateway` (the gateway's own status topic sits at the same depth).
 *
 * Presence payload (UTF-8 JSON, the availability format zigbee2mqtt uses): exactly
 * `{"state":"online"}` or `{"state":"offline"}` when we write it. When we read it, other members
 * are ignored (room for additions), the legacy bare texts `online` / `offline` are accepted, and an
 * empty payload is `cleared` (someone deleted the retained message: the device is gone).
 */
import { MIME_DM_NOTIFICATION, MIME_DM_WBXML, MIME_DM_XML } from "../../src/syncml/constants.js";

/** Topic prefix when the configuration names none. */
export const DEFAULT_PREFIX = "dmgw";

/** The topic level reserved for the gateway's own status (`<prefix>/gateway/status`). */
export const GATEWAY_LEVEL = "gateway";

/** Longest device id, in UTF-8 bytes (DevIds such as `IMEI:...` are far shorter). */
export const MAX_DEVICE_ID_BYTES = 256;

/** Longest prefix, in UTF-8 bytes (MQTT allows 65535 for the whole topic). */
export const MAX_PREFIX_BYTES = 512;

/** Largest presence payload we parse, bytes. */
export const MAX_STATUS_BYTES = 1024;

/** DM message, WBXML (DM Protocol 1.2, protocol.md 6.5): `application/vnd.syncml.dm+wbxml`. */
export const CONTENT_TYPE_DM_WBXML = MIME_DM_WBXML;
/** DM message, XML: `application/vnd.syncml.dm+xml`. */
export const CONTENT_TYPE_DM_XML = MIME_DM_XML;
/** Package #0 (DM Notification 1.2): `application/vnd.syncml.notification`. */
export const CONTENT_TYPE_NOTIFICATION = MIME_DM_NOTIFICATION;
/** Content type of the presence payload. */
export const CONTENT_TYPE_STATUS = "application/json";

/** The MQTT 5 user property carrying the DM HMAC (the HTTP binding's header, same name). */
export const HMAC_USER_PROPERTY = "x-syncml-hmac";

/** Why a device id or prefix cannot be a topic level. */
export type TopicRefusal =
  "empty" | "too-long" | "wildcard" | "separator" | "nul" | "control" | "not-unicode" | "reserved";

export type Checked<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly refusal: TopicRefusal; readonly detail: string };

/** The per-device topics. */
export type DeviceChannel = "up" | "down" | "status";

export type ParsedTopic =
  | { readonly kind: "device"; readonly deviceId: string; readonly channel: DeviceChannel }
  | { readonly kind: "gateway-status" };

/** The presence of a device (or of the gateway). */
export type PresenceState = "online" | "offline";

/** What a received presence payload says; `cleared` is an empty payload (retained message deleted). */
export type ReadPresence = PresenceState | "cleared";

/** What a content type names (parameters and case ignored). */
export type ContentKind = "dm-wbxml" | "dm-xml" | "notification" | "missing" | "other";

const UTF8 = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function refuse(refusal: TopicRefusal, detail: string): Checked<never> {
  return { ok: false, refusal, detail };
}

/**
 * Checks one topic-level-or-more text against what MQTT 5 topic names allow (section 4.7). `/` is
 * refused unless `levels` (a prefix may span several levels, none empty).
 */
function checkText(text: string, maxBytes: number, what: string, levels: boolean): Checked<string> {
  if (text.length === 0) return refuse("empty", `${what} is empty`);
  if (LONE_SURROGATE.test(text)) return refuse("not-unicode", `${what} holds a lone surrogate`);
  const bytes = UTF8.encode(text).length;
  if (bytes > maxBytes) return refuse("too-long", `${what} is ${bytes} UTF-8 bytes, over ${maxBytes}`);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b || c === 0x23) return refuse("wildcard", `${what} holds a wildcard at ${i}`);
    if (c === 0) return refuse("nul", `${what} holds NUL at ${i}`);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      return refuse("control", `${what} holds control character U+${hex4(c)} at ${i}`);
    }
    if (c === 0x2f && !levels) return refuse("separator", `${what} holds '/' at ${i}`);
  }
  return { ok: true, value: text };
}

function hex4(c: number): string {
  return c.toString(16).toUpperCase().padStart(4, "0");
}

/** Checks a device id (see the file comment for what is refused). */
export function checkDeviceId(deviceId: string): Checked<string> {
  const checked = checkText(deviceId, MAX_DEVICE_ID_BYTES, "device id", false);
  if (!checked.ok) return checked;
  if (deviceId === GATEWAY_LEVEL) return refuse("reserved", `device id '${GATEWAY_LEVEL}' is reserved`);
  return checked;
}

/**
 * Checks a topic prefix: one or more non-empty levels (`site1/dmgw` is fine), no wildcard, no
 * control character, not starting with `$` (broker-reserved topics such as `$SYS`).
 */
export function checkPrefix(prefix: string): Checked<string> {
  const checked = checkText(prefix, MAX_PREFIX_BYTES, "prefix", true);
  if (!checked.ok) return checked;
  if (prefix.startsWith("$")) return refuse("reserved", "prefix starts with '$' (broker topics)");
  if (prefix.split("/").some((level) => level.length === 0)) {
    return refuse("empty", "prefix has an empty level");
  }
  return checked;
}

/** `<prefix>/<deviceId>/dm/up`, `/dm/down` or `/status`. `prefix` must have passed `checkPrefix`. */
export function deviceTopic(prefix: string, deviceId: string, channel: DeviceChannel): Checked<string> {
  const id = checkDeviceId(deviceId);
  if (!id.ok) return id;
  return { ok: true, value: `${prefix}/${deviceId}/${channel === "status" ? "status" : `dm/${channel}`}` };
}

/** `<prefix>/gateway/status`: the gateway's retained presence and last will. */
export function gatewayStatusTopic(prefix: string): string {
  return `${prefix}/${GATEWAY_LEVEL}/status`;
}

/** The filters the gateway subscribes to: every device's `/dm/up` and every `/status`. */
export function gatewayFilters(prefix: string): { readonly up: string; readonly status: string } {
  return { up: `${prefix}/+/dm/up`, status: `${prefix}/+/status` };
}

/**
 * Reads a topic under `prefix`. Undefined for a topic that is not one of ours (another prefix,
 * another shape); a refusal for one of our shapes whose device level is not a valid device id.
 */
export function parseTopic(prefix: string, topic: string): Checked<ParsedTopic> | undefined {
  if (!topic.startsWith(`${prefix}/`)) return undefined;
  const levels = topic.slice(prefix.length + 1).split("/");
  const [id, a, b] = levels;
  if (id === undefined || a === undefined) return undefined;
  let channel: DeviceChannel;
  if (levels.length === 2 && a === "status") channel = "status";
  else if (levels.length === 3 && a === "dm" && (b === "up" || b === "down")) channel = b;
  else return undefined;
  if (id === GATEWAY_LEVEL && channel === "status") return { ok: true, value: { kind: "gateway-status" } };
  const checked = checkDeviceId(id);
  if (!checked.ok) return checked;
  return { ok: true, value: { kind: "device", deviceId: id, channel } };
}

/** The presence payload we write: `{"state":"online"}` or `{"state":"offline"}`, UTF-8. */
export function encodeStatus(state: PresenceState): Uint8Array {
  return UTF8.encode(JSON.stringify({ state }));
}

/**
 * Reads a presence payload (see the file comment). A refusal is a value: the caller logs it at warn
 * and keeps the device's presence as it was.
 */
export function decodeStatus(
  payload: Uint8Array,
): { readonly ok: true; readonly value: ReadPresence } | { readonly ok: false; readonly reason: string } {
  if (payload.length === 0) return { ok: true, value: "cleared" };
  if (payload.length > MAX_STATUS_BYTES) {
    return { ok: false, reason: `status payload of ${payload.length} bytes, over ${MAX_STATUS_BYTES}` };
  }
  let text: string;
  try {
    text = UTF8_STRICT.decode(payload);
  } catch {
    return { ok: false, reason: "status payload is not UTF-8" };
  }
  const bare = text.trim();
  if (bare === "online" || bare === "offline") return { ok: true, value: bare };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, reason: "status payload is neither JSON nor online/offline" };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { ok: false, reason: "status payload is not a JSON object" };
  }
  const state: unknown = (parsed as Record<string, unknown>)["state"];
  if (state === "online" || state === "offline") return { ok: true, value: state };
  return { ok: false, reason: "status payload has no state online/offline" };
}

/** What a Content Type property names: a DM message (either encoding), a Pkg#0, or something else. */
export function contentKind(contentType: string | undefined): ContentKind {
  if (contentType === undefined || contentType.trim() === "") return "missing";
  const base = (contentType.split(";")[0] ?? "").trim().toLowerCase();
  switch (base) {
    case CONTENT_TYPE_DM_WBXML:
      return "dm-wbxml";
    case CONTENT_TYPE_DM_XML:
      return "dm-xml";
    case CONTENT_TYPE_NOTIFICATION:
      return "notification";
    default:
      return "other";
  }
}

/**
 * The HMAC user property's value from an MQTT 5 user property map (names compared without case; a
 * repeated property takes its first value).
 */
export function hmacFromUserProperties(
  userProperties: Readonly<Record<string, string | readonly string[]>> | undefined,
): string | undefined {
  if (userProperties === undefined) return undefined;
  for (const [name, value] of Object.entries(userProperties)) {
    if (name.toLowerCase() !== HMAC_USER_PROPERTY) continue;
    return typeof value === "string" ? value : value[0];
  }
  return undefined;
}
