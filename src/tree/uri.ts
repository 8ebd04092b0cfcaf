/**
 * DM URIs: parsing what a server sends in `Target/LocURI`, and the canonical paths the tree stores.
 *
 * Rules implemented (OMA DM 1.2 TND section 5, "The Management Tree", and 7.3, "Property addressing";
 * protocol.md 3.10):
 * - URIs are relative to the root `.`; `./A/B` and `A/B` name the same node.
 * - A URI MUST NOT end with `/`, so the root is `.` and never `./`.
 * - `../` MUST NOT be used, and `./` only at the very beginning.
 * - `/` is the segment delimiter and MUST NOT be part of a node name.
 * - URIs are UTF-8; names are compared case-sensitively (TND 5 allows either, and requires the case of
 *   created names to be preserved).
 * - Properties are addressed as `<uri>?prop=<Name>` (406 if unsupported) and tree exchange as
 *   `<uri>?list=<Struct|StructData|TNDS...>` (TND 10; 406 if unsupported).
 * - The limits `./DevDetail/URI/MaxDepth|MaxTotLen|MaxSegLen` (0 = unlimited) give 414.
 *
 * **Canonical paths.** Every path this module returns, and every path the tree stores, is canonical:
 * `.` for the root, otherwise `./` followed by the segments joined with `/`, each segment in its
 * canonical escaped form ({@link escapeSegment}). Because a name never contains an unescaped `/`, plain
 * string operations are exact on canonical paths: `./A` is an ancestor of `./A/B` (prefix `./A/`) but
 * not of `./AB`. The helpers below assume canonical input and do not re-validate it.
 */
import { NODE_PROPERTIES, type ListKind, type NodeProperty, type UriLimits } from "./types.js";
import { StatusCode } from "../syncml/constants.js";

/** The canonical path of the root node. */
export const ROOT_PATH = ".";

/** The properties a `?list=TNDS+X` / `?list=TNDS-X` selection may name (TNDS 1.2; protocol.md 3.10). */
export const TNDS_SELECTABLE = [
  "ACL",
  "Format",
  "Name",
  "Size",
  "Title",
  "TStamp",
  "Type",
  "VerNo",
  "Value",
] as const;
export type TndsSelectable = (typeof TNDS_SELECTABLE)[number];

/** The tree exchange forms `?list=` accepts. */
export const LIST_KINDS: readonly ListKind[] = ["Struct", "StructData", "TNDS"];

/** What a URI's query asks for: one property (`?prop=`), or a tree exchange (`?list=`). */
export type UriQuery =
  | { readonly kind: "prop"; readonly prop: NodeProperty }
  | {
      readonly kind: "list";
      readonly list: ListKind;
      /** Only for TNDS: `+` selects exactly these properties, `-` all but these. Names deduplicated. */
      readonly props?: { readonly mode: "+" | "-"; readonly names: readonly TndsSelectable[] };
    };

/** A parsed DM URI. */
export interface DmUri {
  /** The canonical path, the tree's storage key: `.` or `./A/B` (segments in canonical escaped form). */
  readonly path: string;
  /** The decoded node names from the root down; `[]` for the root. */
  readonly segments: readonly string[];
  /** Present when the URI had a `?prop=` or `?list=` query. */
  readonly query?: UriQuery;
}

/** The DM statuses a URI can fail with: 400 malformed, 414 over a published limit, 406 unsupported. */
export type UriStatus =
  typeof StatusCode.BadRequest | typeof StatusCode.UriTooLong | typeof StatusCode.OptionalFeatureNotSupported;

export type UriResult =
  | { readonly ok: true; readonly uri: DmUri }
  | { readonly ok: false; readonly status: UriStatus; readonly reason: string };

/** Characters that can never appear raw in a received URI: C0 controls and DEL. */
const RAW_CONTROL = /[\u0000-\u001f\u007f]/u; // eslint-disable-line no-control-regex -- refusing control characters is the point
/** A lone UTF-16 surrogate (not well-formed text). */
const LONE_SURROGATE = /\p{Cs}/u;
/** `scheme://`: an absolute URI. */
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//u;
/** The characters {@link escapeSegment} escapes: `%`, `?`, `/`, C0 controls, DEL and C1 controls. */
const MUST_ESCAPE = /[%?/\u0000-\u001f\u007f-\u009f]/gu; // eslint-disable-line no-control-regex -- control characters are escaped on purpose
const HEX_PAIR = /^[0-9A-Fa-f]{2}$/u;

const UTF8_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8_ENCODER = new TextEncoder();

function fail(status: UriStatus, reason: string): UriResult {
  return { ok: false, status, reason };
}

/** Length in Unicode code points ("characters"), not UTF-16 units. */
function charLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    if (unit < 0xdc00 || unit > 0xdfff) n++; // a surrogate pair counts once, at its high half
  }
  return n;
}

function over(limit: number, value: number): boolean {
  return limit > 0 && value > limit;
}

/**
 * Decodes the percent-escapes of one received segment. Each maximal run of `%XX` escapes is decoded as
 * UTF-8 (so `%C3%A9` is `é`); a `%` not followed by two hex digits, or escapes that are not valid
 * UTF-8, give `undefined`.
 */
function unescapeSegment(raw: string): string | undefined {
  if (!raw.includes("%")) return raw;
  let out = "";
  let i = 0;
  while (i < raw.length) {
    if (raw[i] !== "%") {
      const next = raw.indexOf("%", i);
      const end = next === -1 ? raw.length : next;
      out += raw.slice(i, end);
      i = end;
      continue;
    }
    const bytes: number[] = [];
    while (raw[i] === "%") {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX_PAIR.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 3;
    }
    try {
      out += UTF8_DECODER.decode(Uint8Array.from(bytes));
    } catch {
      // TextDecoder with fatal: true throws a TypeError on malformed UTF-8; that is a bad URI.
      return undefined;
    }
  }
  return out;
}

/**
 * The canonical escaped form of a node name, as it appears in a canonical path: `%`, `?`, `/` and
 * control characters (C0, DEL, C1) are percent-escaped as their UTF-8 bytes in upper-case hex;
 * everything else stays literal. `parseUri` decodes any escape, so `./%41` and `./A` are the same path.
 *
 * @param name a decoded node name: non-empty, well-formed UTF-16, not `.` or `..`.
 */
export function escapeSegment(name: string): string {
  return name.replace(MUST_ESCAPE, (ch) =>
    Array.from(UTF8_ENCODER.encode(ch), (b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join(""),
  );
}

function parseQuery(query: string): { ok: true; query: UriQuery } | { ok: false; result: UriResult } {
  const bad = (reason: string, status: UriStatus = StatusCode.BadRequest) => ({
    ok: false as const,
    result: fail(status, reason),
  });
  const eq = query.indexOf("=");
  const key = eq === -1 ? query : query.slice(0, eq);
  const value = eq === -1 ? "" : query.slice(eq + 1);
  if (eq === -1 || (key !== "prop" && key !== "list")) {
    return bad(`unsupported query "?${query}": only ?prop= and ?list= are defined`);
  }
  if (value === "") return bad(`empty ?${key}= value`);
  if (/[=&]/u.test(value)) return bad(`"?${query}": one query parameter only`);

  if (key === "prop") {
    const prop = NODE_PROPERTIES.find((p) => p === value);
    if (prop === undefined) {
      return bad(`unsupported property "${value}"`, StatusCode.OptionalFeatureNotSupported);
    }
    return { ok: true, query: { kind: "prop", prop } };
  }

  // list=<kind>[(+|-)<name>...]
  const cut = value.search(/[+-]/u);
  const kindText = cut === -1 ? value : value.slice(0, cut);
  const list = LIST_KINDS.find((k) => k === kindText);
  if (list === undefined) {
    return bad(`unsupported tree exchange form "${kindText}"`, StatusCode.OptionalFeatureNotSupported);
  }
  if (cut === -1) return { ok: true, query: { kind: "list", list } };
  if (list !== "TNDS") return bad(`?list=${list} takes no property selection`);

  const selection = value.slice(cut);
  const mode = selection[0] === "+" ? "+" : "-";
  if (selection.includes(mode === "+" ? "-" : "+")) {
    return bad(`?list=${value} mixes + and - property selections`);
  }
  const names: TndsSelectable[] = [];
  for (const text of selection.slice(1).split(mode)) {
    if (text === "") return bad(`empty property name in ?list=${value}`);
    const name = TNDS_SELECTABLE.find((n) => n === text);
    if (name === undefined) {
      return bad(`unsupported TNDS property "${text}"`, StatusCode.OptionalFeatureNotSupported);
    }
    if (!names.includes(name)) names.push(name);
  }
  return { ok: true, query: { kind: "list", list, props: { mode, names } } };
}

/**
 * Parses a DM URI as a server sends it (TND 5 and 7.3; protocol.md 3.10). Bad input is a value, never an
 * exception. The first failing rule, in this order, decides the status:
 *
 * 1. 400: empty, absolute (`scheme://...` or a leading `/`), a raw control character or lone surrogate.
 * 2. 414: the URI as received, without its query, is longer than `limits.maxTotLen` characters.
 * 3. 400: a trailing `/` (so `./` is refused: the root is `.`), an empty segment (`A//B`), a `.` or `..`
 *    segment other than the single leading `./`.
 * 4. 414: more segments than `limits.maxDepth`.
 * 5. 414: a segment longer than `limits.maxSegLen` characters in its received (escaped) form.
 * 6. 400: a malformed percent-escape (`%`, `%4`, `%G0`, escapes that are not UTF-8), or a name that
 *    decodes to something containing `/`, or to `.` or `..`.
 * 7. The query (after the first `?`): `prop=<Name>` with a name of {@link NODE_PROPERTIES} (else 406);
 *    `list=Struct`, `list=StructData`, `list=TNDS` (another kind gives 406), TNDS optionally followed by
 *    `+A+B` or `-A-B` over {@link TNDS_SELECTABLE} (mixing `+` and `-`, or an empty name, gives 400; an
 *    unknown name gives 406, as an unsupported property does). Anything else is 400. The query is
 *    matched literally (no percent-decoding; names are case-sensitive).
 *
 * Limits are in characters (Unicode code points); 0 means unlimited.
 */
export function parseUri(text: string, limits: UriLimits): UriResult {
  const qmark = text.indexOf("?");
  const pathText = qmark === -1 ? text : text.slice(0, qmark);

  if (pathText === "") return fail(StatusCode.BadRequest, "empty URI");
  if (pathText.startsWith("/") || ABSOLUTE.test(pathText)) {
    return fail(StatusCode.BadRequest, `absolute URI "${pathText}": DM URIs are relative to the root "."`);
  }
  if (RAW_CONTROL.test(text)) return fail(StatusCode.BadRequest, "control character in URI");
  if (LONE_SURROGATE.test(text)) return fail(StatusCode.BadRequest, "URI is not well-formed UTF-16");

  const totalLength = charLength(pathText);
  if (over(limits.maxTotLen, totalLength)) {
    return fail(StatusCode.UriTooLong, `URI is ${totalLength} characters, MaxTotLen is ${limits.maxTotLen}`);
  }

  let rawSegments: string[];
  if (pathText === ".") {
    rawSegments = [];
  } else {
    const body = pathText.startsWith("./") ? pathText.slice(2) : pathText;
    if (body === "" || body.endsWith("/")) {
      return fail(StatusCode.BadRequest, `URI "${pathText}" ends with "/" (the root is ".")`);
    }
    rawSegments = body.split("/");
    for (const raw of rawSegments) {
      if (raw === "") return fail(StatusCode.BadRequest, `empty segment in "${pathText}"`);
      if (raw === "." || raw === "..") {
        return fail(StatusCode.BadRequest, `"${raw}" segment in "${pathText}" ("./" only as the prefix)`);
      }
    }
  }

  if (over(limits.maxDepth, rawSegments.length)) {
    return fail(
      StatusCode.UriTooLong,
      `URI has ${rawSegments.length} segments, MaxDepth is ${limits.maxDepth}`,
    );
  }

  const segments: string[] = [];
  for (const raw of rawSegments) {
    const length = charLength(raw);
    if (over(limits.maxSegLen, length)) {
      return fail(StatusCode.UriTooLong, `segment is ${length} characters, MaxSegLen is ${limits.maxSegLen}`);
    }
    const name = unescapeSegment(raw);
    if (name === undefined)
      return fail(StatusCode.BadRequest, `malformed percent-escape in segment "${raw}"`);
    if (name.includes("/")) return fail(StatusCode.BadRequest, `segment "${raw}" decodes to a name with "/"`);
    if (name === "." || name === "..") {
      return fail(StatusCode.BadRequest, `segment "${raw}" decodes to "${name}"`);
    }
    segments.push(name);
  }

  const path = formatUri(segments);
  if (qmark === -1) return { ok: true, uri: { path, segments } };
  const q = parseQuery(text.slice(qmark + 1));
  if (!q.ok) return q.result;
  return { ok: true, uri: { path, segments, query: q.query } };
}

/**
 * The canonical path of a list of decoded node names (the inverse of `parseUri(...).uri.segments`):
 * `.` for `[]`, otherwise `./` and the {@link escapeSegment escaped} names joined with `/`.
 *
 * @param segments decoded names, each non-empty and not `.` or `..` (as `parseUri` guarantees).
 */
export function formatUri(segments: readonly string[]): string {
  if (segments.length === 0) return ROOT_PATH;
  return `./${segments.map(escapeSegment).join("/")}`;
}

/** The canonical path of the parent of a canonical path; `undefined` for the root. */
export function parentOf(path: string): string | undefined {
  if (path === ROOT_PATH) return undefined;
  const cut = path.lastIndexOf("/");
  return cut <= 1 ? ROOT_PATH : path.slice(0, cut);
}

/** The canonical path of the child `name` (decoded) of the canonical path `path`. */
export function childPath(path: string, name: string): string {
  return `${path}/${escapeSegment(name)}`;
}

/**
 * True when `ancestorPath` is `path` or one of its ancestors. Both must be canonical: then a prefix test
 * on `ancestorPath + "/"` is exact (`./A` is an ancestor of `./A/B`, not of `./AB`).
 */
export function isAncestorOrSelf(ancestorPath: string, path: string): boolean {
  if (ancestorPath === path || ancestorPath === ROOT_PATH) return true;
  return path.startsWith(`${ancestorPath}/`);
}

/** The number of segments of a canonical path: 0 for the root, 2 for `./A/B` (what MaxDepth limits). */
export function depthOf(path: string): number {
  if (path === ROOT_PATH) return 0;
  let n = 0;
  for (const ch of path) if (ch === "/") n++;
  return n;
}

/**
 * The decoded name of the last segment of a canonical path (what `?prop=Name` reports); `.` for the root.
 */
export function nameOf(path: string): string {
  if (path === ROOT_PATH) return ROOT_PATH;
  const last = path.slice(path.lastIndexOf("/") + 1);
  // Canonical segments hold only well-formed escapes, so decoding cannot fail here.
  return unescapeSegment(last) ?? last;
}
