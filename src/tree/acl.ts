/**
 * The ACL property of a DM node: grammar, canonical text, inheritance and the rights it grants.
 *
 * Rules implemented (OMA DM 1.2 TND section 7.7.1, "ACL"; protocol.md 3.10):
 * - 7.7.1.5 grammar: `<acl> ::= <acl-entry> ("&" <acl-entry>)* | no value`,
 *   `<acl-entry> ::= <command> "=" <server-identifier> ("+" <server-identifier>)*`,
 *   `<server-identifier> ::= "*" | printable characters except "=", "&", "*", "+" and white space`,
 *   `<command> ::= Add | Delete | Exec | Get | Replace` (case-sensitive; there is no Copy entry).
 * - 7.7.1.5: `*` grants every server; when an entry lists `*` and identifiers, the wildcard overrides.
 * - 7.7.1.1/protocol.md 3.10: an empty ACL inherits the nearest non-empty ancestor ACL, as a whole.
 * - 7.7.1.2: the root ACL always has a value, by default `Add=*&Get=*`.
 * - 7.7.1.3: who may change an ACL ({@link mayReplaceAcl}).
 * - 7.7.1.4: a removed ServerID is stripped from all ACLs ({@link withoutServerId}).
 *
 * An {@link Acl} is immutable: a read-only map from command to its identifiers (or `"*"`), iterated in
 * the canonical command order Add, Delete, Exec, Get, Replace. Every function returns a new one.
 */
import assert from "node:assert/strict";
import { ACL_COMMANDS, type AclCommand } from "./types.js";

/** Who an ACL entry grants: listed server identifiers (in order, no duplicates), or `"*"` for every server. */
export type AclIds = readonly string[] | "*";

/** An ACL: command → grantees. Empty (size 0) means "no value": the node inherits. */
export type Acl = ReadonlyMap<AclCommand, AclIds>;

export type AclParseResult =
  { readonly ok: true; readonly acl: Acl } | { readonly ok: false; readonly reason: string };

/** TND 7.7.1.5: printable characters except `=`, `&`, `*`, `+` and white space (controls, format and
 * separator characters are not printable). */
const SERVER_ID = /^[^\p{C}\p{Z}\s=&*+]+$/u;

/** A read-only map that cannot be changed even through a cast. */
class FrozenAcl implements ReadonlyMap<AclCommand, AclIds> {
  readonly #map: Map<AclCommand, AclIds>;

  constructor(map: Map<AclCommand, AclIds>) {
    this.#map = map;
  }

  get size(): number {
    return this.#map.size;
  }
  get(key: AclCommand): AclIds | undefined {
    return this.#map.get(key);
  }
  has(key: AclCommand): boolean {
    return this.#map.has(key);
  }
  forEach(callbackfn: (value: AclIds, key: AclCommand, map: ReadonlyMap<AclCommand, AclIds>) => void): void {
    this.#map.forEach((value, key) => {
      callbackfn(value, key, this);
    });
  }
  entries(): MapIterator<[AclCommand, AclIds]> {
    return this.#map.entries();
  }
  keys(): MapIterator<AclCommand> {
    return this.#map.keys();
  }
  values(): MapIterator<AclIds> {
    return this.#map.values();
  }
  [Symbol.iterator](): MapIterator<[AclCommand, AclIds]> {
    return this.#map.entries();
  }
}

/**
 * Builds an ACL from entries in any order: entries are put in canonical command order, identifiers
 * deduplicated (first occurrence kept), a list containing `*` becomes `"*"` (TND 7.7.1.5: the wildcard
 * overrides), entries with no identifiers are dropped, and a repeated command is merged (union).
 */
export function aclFrom(entries: Iterable<readonly [AclCommand, AclIds]>): Acl {
  const merged = new Map<AclCommand, AclIds>();
  for (const [cmd, ids] of entries) {
    const before = merged.get(cmd);
    if (before === "*" || ids === "*" || ids.includes("*")) {
      merged.set(cmd, "*");
    } else {
      merged.set(cmd, [...(before ?? []), ...ids]);
    }
  }
  const ordered = new Map<AclCommand, AclIds>();
  for (const cmd of ACL_COMMANDS) {
    const ids = merged.get(cmd);
    if (ids === undefined) continue;
    if (ids === "*") {
      ordered.set(cmd, "*");
    } else if (ids.length > 0) {
      ordered.set(cmd, Object.freeze([...new Set(ids)]));
    }
  }
  return new FrozenAcl(ordered);
}

/** The empty ACL ("no value": inherit from the parent). */
export const EMPTY_ACL: Acl = aclFrom([]);

/** TND 7.7.1.2: the factory root ACL, `Add=*&Get=*`. */
export const ROOT_DEFAULT_ACL: Acl = aclFrom([
  ["Add", "*"],
  ["Get", "*"],
]);

/** True when `text` is a valid server identifier in an ACL (TND 7.7.1.5); `*` is the wildcard, not an id. */
export function isServerId(text: string): boolean {
  return SERVER_ID.test(text);
}

/**
 * Parses an ACL property value (TND 7.7.1.5; protocol.md 3.10). Bad text is a value, not an exception.
 *
 * - `""` is the empty ACL (inherit).
 * - Refused: an empty entry (`Get=*&`, `&&`), an entry without `=`, an unknown or wrongly-cased command
 *   (`get=*`, `Copy=*`), an entry without identifiers (`Get=`), an empty identifier (`Get=a++b`), an
 *   identifier with white space, `=`, `&`, `*` or a non-printable character (`Get=a=b`, `Get=a b`, `Get=a*`).
 * - `*` next to identifiers (`Get=a+*`) is `*`: the grammar allows it and the wildcard overrides.
 * - A repeated command (`Get=a&Get=b`) is merged into one entry (`Get=a+b`): the TND grammar does not
 *   make commands unique, and the OSGi DMT Admin `Acl(String)` parser merges them the same way.
 * - Repeated identifiers are kept once.
 */
export function parseAcl(text: string): AclParseResult {
  if (text === "") return { ok: true, acl: EMPTY_ACL };
  const entries: [AclCommand, AclIds][] = [];
  for (const entry of text.split("&")) {
    if (entry === "") return { ok: false, reason: `empty ACL entry in "${text}"` };
    const eq = entry.indexOf("=");
    if (eq === -1) return { ok: false, reason: `ACL entry "${entry}" has no "="` };
    const cmdText = entry.slice(0, eq);
    const cmd = ACL_COMMANDS.find((c) => c === cmdText);
    if (cmd === undefined) return { ok: false, reason: `unknown ACL command "${cmdText}"` };
    const idsText = entry.slice(eq + 1);
    if (idsText === "") return { ok: false, reason: `ACL entry "${entry}" has no server identifier` };
    const ids: string[] = [];
    for (const id of idsText.split("+")) {
      if (id === "") return { ok: false, reason: `empty server identifier in "${entry}"` };
      if (id !== "*" && !isServerId(id)) {
        return { ok: false, reason: `invalid server identifier "${id}" in "${entry}"` };
      }
      ids.push(id);
    }
    entries.push([cmd, ids]);
  }
  return { ok: true, acl: aclFrom(entries) };
}

/**
 * The canonical text of an ACL: entries in the order Add, Delete, Exec, Get, Replace, identifiers in
 * their given order without duplicates, `*` alone. The empty ACL is `""` (what a Get of an empty ACL
 * returns, TND 7.7.1.6). `parseAcl(formatAcl(a))` gives `a` back.
 */
export function formatAcl(acl: Acl): string {
  const parts: string[] = [];
  for (const cmd of ACL_COMMANDS) {
    const ids = acl.get(cmd);
    if (ids === undefined) continue;
    if (ids === "*" || ids.includes("*")) {
      parts.push(`${cmd}=*`);
    } else if (ids.length > 0) {
      parts.push(`${cmd}=${[...new Set(ids)].join("+")}`);
    }
  }
  return parts.join("&");
}

/**
 * True when `acl` grants `cmd` to `serverId`: the entry is `*`, or lists the identifier (exact,
 * case-sensitive match). Pass the {@link effectiveAcl effective} ACL: an empty ACL grants nothing here.
 */
export function aclGrants(acl: Acl, cmd: AclCommand, serverId: string): boolean {
  const ids = acl.get(cmd);
  if (ids === undefined) return false;
  return ids === "*" || ids.includes(serverId) || ids.includes("*");
}

/**
 * The ACL with `serverId` removed from every entry (TND 7.7.1.4: when a ServerID is removed from the
 * device, it is removed from all ACLs). An entry left with no identifier disappears; `*` entries stay.
 *
 * With `isRoot`, the root ACL keeps a value, as TND 7.7.1.4 requires ("the ACL for that command MUST
 * become `*` or a suitable factory default"): a command emptied by the removal gets its factory value
 * from {@link ROOT_DEFAULT_ACL} (`Add=*`, `Get=*`; the other commands have no factory grant and are
 * dropped), and if nothing at all is left the result is `ROOT_DEFAULT_ACL`.
 */
export function withoutServerId(
  acl: Acl,
  serverId: string,
  options: { readonly isRoot?: boolean } = {},
): Acl {
  const isRoot = options.isRoot ?? false;
  const kept: [AclCommand, AclIds][] = [];
  for (const [cmd, ids] of acl) {
    if (ids === "*") {
      kept.push([cmd, ids]);
      continue;
    }
    const rest = ids.filter((id) => id !== serverId);
    if (rest.length > 0) {
      kept.push([cmd, rest]);
    } else if (isRoot) {
      const factory = ROOT_DEFAULT_ACL.get(cmd);
      if (factory !== undefined) kept.push([cmd, factory]);
    }
  }
  const result = aclFrom(kept);
  return isRoot && result.size === 0 ? ROOT_DEFAULT_ACL : result;
}

/**
 * The ACL in force on a node (TND 7.7.1.1; protocol.md 3.10): the nearest non-empty ACL going up,
 * taken as a whole (an ancestor's `Get` does not fill in a node whose own ACL has only `Replace`).
 *
 * @param chain the stored ACLs of the node, its parent, ... up to the root, node first.
 * @returns the first non-empty ACL of `chain`; {@link ROOT_DEFAULT_ACL} if all are empty (the root
 *   always has a value, TND 7.7.1.2, so an empty stored root ACL means the factory default).
 */
export function effectiveAcl(chain: Iterable<Acl>): Acl {
  for (const acl of chain) if (acl.size > 0) return acl;
  return ROOT_DEFAULT_ACL;
}

/**
 * The ACL of an interior node added by a server that has no Replace right on the parent:
 * `Add=<id>&Delete=<id>&Replace=<id>`, so the creator can manage what it created (protocol.md 3.3 Add).
 *
 * @param serverId a valid server identifier ({@link isServerId}); anything else is a programmer error
 *   (ServerIDs are validated when the DM account is configured) and fails an assertion.
 */
export function creatorAcl(serverId: string): Acl {
  assert.ok(isServerId(serverId), `invalid ServerID for an ACL: ${JSON.stringify(serverId)}`);
  return aclFrom([
    ["Add", [serverId]],
    ["Delete", [serverId]],
    ["Replace", [serverId]],
  ]);
}

/** What {@link mayReplaceAcl} needs to know about the node whose ACL is to change. */
export interface AclChangeContext {
  readonly isInterior: boolean;
  /** The node's effective ACL ({@link effectiveAcl}). */
  readonly nodeEffectiveAcl: Acl;
  /** The parent's effective ACL; `undefined` for the root, which has no parent. */
  readonly parentEffectiveAcl: Acl | undefined;
}

/**
 * True when `serverId` may Replace the node's `?prop=ACL` (TND 7.7.1.3; protocol.md 3.10):
 * - an interior node's ACL follows the node's own Replace right;
 * - a leaf's ACL does not follow the leaf's Replace right (that covers its value and other properties);
 * - for both, the parent's Replace right suffices (a server in control of the parent can take over a child).
 */
export function mayReplaceAcl(ctx: AclChangeContext, serverId: string): boolean {
  if (ctx.parentEffectiveAcl !== undefined && aclGrants(ctx.parentEffectiveAcl, "Replace", serverId))
    return true;
  return ctx.isInterior && aclGrants(ctx.nodeEffectiveAcl, "Replace", serverId);
}
