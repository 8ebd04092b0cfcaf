/**
 * The DM management tree (OMA DM 1.2 TND; protocol.md 3.3 and 3.10), persisted in SQLite through
 * `Store`. Every server command is checked against the node's supported commands (405) and the ACL
 * for the acting ServerID (425); results and refusals are values carrying the DM status.
 *
 * The tree knows nothing of sessions: a DM message's commands run inside `transaction()`, which
 * commits once (WAL, synchronous=FULL) before the caller sends the message's Status; `savepoint()`
 * gives Atomic its all-or-nothing.
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import { StatusCode } from "../syncml/constants.js";
import {
  aclGrants,
  creatorAcl,
  effectiveAcl,
  formatAcl,
  isServerId,
  mayReplaceAcl,
  parseAcl,
  ROOT_DEFAULT_ACL,
  EMPTY_ACL,
  type Acl,
} from "./acl.js";
import { Access, ACCESS_ALL, NodeFlag, type MoPlugin, type NodeSpec, type NodePolicy } from "./plugin.js";
import { ROOT_ID, type NodeRow, type Store } from "./store.js";
import type { TndsNode } from "./tnds.js";
import { NODE_FORMATS, type NodeFormat, type NodeProperty, type NodeValue, type UriLimits } from "./types.js";
import { childPath, parseUri, type DmUri, type UriQuery } from "./uri.js";

/** A node as the tree reports it (Get, Struct, StructData, TNDS). */
export interface TreeNode {
  readonly path: string;
  readonly name: string;
  readonly format: NodeFormat;
  readonly type?: string;
  /** Leaf value; for an interior node in a plain Get, the child names joined by `/`. */
  readonly value?: NodeValue;
  readonly acl?: string;
  readonly title?: string;
  readonly tstamp?: string;
  readonly verNo?: number;
  readonly size?: number;
  /** Set on a secret node (AAuthSecret...): its value is never given to a server. */
  readonly secret?: true;
}

export type GetResult =
  | { readonly status: 200; readonly kind: "node"; readonly node: TreeNode }
  | { readonly status: 200; readonly kind: "prop"; readonly prop: NodeProperty; readonly value: string }
  | {
      readonly status: 200;
      readonly kind: "list";
      readonly query: Extract<UriQuery, { kind: "list" }>;
      readonly nodes: readonly TreeNode[];
    }
  | { readonly status: number; readonly kind: "error"; readonly reason: string };

/** A command outcome: the DM status and, for failures, why (for logs; never holds secrets). */
export interface TreeStatus {
  readonly status: number;
  readonly reason?: string;
}

export interface LeafInput {
  readonly format?: NodeFormat;
  readonly type?: string;
  readonly value?: NodeValue;
}

export interface TreeOptions {
  readonly plugins?: readonly MoPlugin[];
  readonly uriLimits?: UriLimits;
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number;
}

const NO_LIMITS: UriLimits = { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 };
const FORMAT_CODE: ReadonlyMap<NodeFormat, number> = new Map(NODE_FORMATS.map((f, i) => [f, i]));
const NODE_FORMAT_CODE = FORMAT_CODE.get("node") ?? 10;

function formatOf(code: number): NodeFormat {
  return NODE_FORMATS[code] ?? "chr";
}

const ok: TreeStatus = { status: StatusCode.Ok };
function fail(status: number, reason: string): TreeStatus {
  return { status, reason };
}

/** The rows from the root down to a node, or to the last existing ancestor. */
interface Resolved {
  /** rows[0] is the root; rows[i] is the node of segments[i - 1]. */
  readonly rows: NodeRow[];
  /** True when every segment exists. */
  readonly found: boolean;
}

export class DmTree {
  readonly store: Store;
  readonly #plugins: readonly MoPlugin[];
  readonly #uriLimits: UriLimits;
  readonly #now: () => number;
  readonly #aclCache = new Map<string, Acl>();
  #afterCommit: (() => void)[] | undefined;

  constructor(store: Store, options: TreeOptions = {}) {
    this.store = store;
    this.#plugins = [...(options.plugins ?? [])].sort((a, b) => b.root.length - a.root.length);
    this.#uriLimits = options.uriLimits ?? NO_LIMITS;
    this.#now = options.now ?? Date.now;
  }

  get uriLimits(): UriLimits {
    return this.#uriLimits;
  }

  // ---------------------------------------------------------------- transactions

  /**
   * Runs one DM message's commands as one transaction: all its changes commit together, with the
   * WAL synced, before this returns; a throw rolls everything back. Hooks registered through
   * `ExecRequest.afterCommit` run after the commit.
   */
  transaction<T>(fn: () => T): T {
    if (this.store.db.inTransaction) return fn();
    const hooks: (() => void)[] = [];
    this.#afterCommit = hooks;
    let result: T;
    try {
      result = this.store.db.transaction(fn).immediate();
    } catch (e) {
      this.store.invalidate(); // rolled back: cached rows may name nodes that no longer exist
      throw e;
    } finally {
      this.#afterCommit = undefined;
    }
    for (const hook of hooks) hook();
    return result;
  }

  /**
   * Atomic (RepPro 1.2): runs `fn` inside a savepoint; when it returns `commit: false` (or throws),
   * every change it made is rolled back.
   */
  savepoint<T>(fn: () => { commit: boolean; value: T }): { committed: boolean; value: T } {
    const db = this.store.db;
    const name = "atomic";
    // afterCommit hooks registered inside a rolled-back savepoint belong to commands that were
    // undone (216 in an Atomic, RepPro 1.2): drop them with the changes.
    const hooks = this.#afterCommit;
    const mark = hooks?.length ?? 0;
    db.exec(`SAVEPOINT ${name}`);
    let outcome: { commit: boolean; value: T };
    try {
      outcome = fn();
    } catch (e) {
      db.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
      this.store.invalidate();
      if (hooks !== undefined) hooks.length = mark;
      throw e;
    }
    if (outcome.commit) db.exec(`RELEASE ${name}`);
    else {
      db.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
      this.store.invalidate();
      if (hooks !== undefined) hooks.length = mark;
    }
    return { committed: outcome.commit, value: outcome.value };
  }

  // ---------------------------------------------------------------- seeding

  /**
   * Creates every plugin's static nodes that do not exist yet (first start, or a plugin added by an
   * upgrade). Existing nodes are never overwritten: a server's change survives restarts.
   */
  seed(): void {
    this.transaction(() => {
      const root = this.store.nodeById(ROOT_ID);
      if (root !== undefined && (root.acl === null || root.acl === ""))
        this.store.setAcl(ROOT_ID, formatAcl(ROOT_DEFAULT_ACL));
      for (const plugin of [...this.#plugins].sort((a, b) => a.root.length - b.root.length)) {
        for (const spec of plugin.seed?.() ?? []) this.#seedNode(plugin, spec);
      }
    });
  }

  #seedNode(plugin: MoPlugin, spec: NodeSpec): void {
    const parsed = this.#parse(spec.path);
    if (!parsed.ok) {
      throw new GatewayError(
        `plugin ${plugin.id} declares an invalid path ${spec.path}`,
        ErrorCode.Tree_InvalidPlugin,
        {
          context: { plugin: plugin.id, path: spec.path },
        },
      );
    }
    // A seeded node is created once: if a server has since deleted it (a non-permanent node), the
    // deletion survives restarts, as any other server change does.
    const marker = `seeded:${parsed.uri.path}`;
    if (this.store.setting(marker) !== undefined) return;
    const { rows, found } = this.#resolve(parsed.uri.segments);
    if (found) {
      this.store.setSetting(marker, 1);
      return;
    }
    if (rows.length !== parsed.uri.segments.length) {
      throw new GatewayError(
        `plugin ${plugin.id} declares ${spec.path} before its parent`,
        ErrorCode.Tree_InvalidPlugin,
        {
          context: { plugin: plugin.id, path: spec.path },
        },
      );
    }
    const parent = rows[rows.length - 1];
    if (parent === undefined) return;
    const isRoot = spec.path === plugin.root;
    const flags =
      (spec.permanent === false ? 0 : NodeFlag.Permanent) |
      (spec.secret === true ? NodeFlag.Secret : 0) |
      (spec.dynamic === true ? NodeFlag.Dynamic : 0);
    this.store.insert({
      parent: parent.id,
      name: parsed.uri.segments[parsed.uri.segments.length - 1] ?? "",
      format: FORMAT_CODE.get(spec.format) ?? 0,
      flags,
      access: spec.access === undefined || spec.access === ACCESS_ALL ? null : spec.access,
      type: spec.type ?? (isRoot ? (plugin.moid ?? null) : null),
      acl: spec.acl ?? null,
      title: spec.title ?? null,
      tstamp: this.#now(),
      value: spec.format === "node" ? null : (spec.value ?? null),
    });
    this.store.setSetting(marker, 1);
  }

  // ---------------------------------------------------------------- server commands

  /** Add (TND; protocol.md 3.3): 418 when it exists; missing interior ancestors are created. */
  add(serverId: string, uri: string, input: LeafInput): TreeStatus {
    const parsed = this.#parse(uri);
    if (!parsed.ok) return parsed;
    const u = parsed.uri;
    if (u.query !== undefined) return fail(StatusCode.CommandNotAllowed, "properties cannot be added");
    if (u.segments.length === 0) return fail(StatusCode.AlreadyExists, "the root exists");
    const { rows, found } = this.#resolve(u.segments);
    if (found) return fail(StatusCode.AlreadyExists, `${u.path} exists`);
    const ancestor = rows[rows.length - 1];
    if (ancestor === undefined) return fail(StatusCode.CommandFailed, "no root");
    if (ancestor.format !== NODE_FORMAT_CODE)
      return fail(StatusCode.CommandNotAllowed, "the parent is a leaf");
    const ancestorAcl = this.#effective(rows);
    if (!aclGrants(ancestorAcl, "Add", serverId)) return fail(StatusCode.PermissionDenied, "ACL denies Add");
    // Without Meta/Format the Format is chr, Data or not: an interior node needs Format `node`
    // explicitly (protocol.md 3.3 Add: "Interior nodes need Meta/Format = node").
    const format = input.format ?? "chr";
    const checked = checkValue(format, input.value);
    if (checked !== undefined) return checked;

    // Each node to create (missing ancestors, then the node itself) must be allowed by its MO.
    const policies: (NodePolicy | undefined)[] = [];
    for (let i = rows.length - 1; i < u.segments.length; i++) {
      const segs = u.segments.slice(0, i + 1);
      const policy = this.#policy(segs);
      if (policy?.refuse !== undefined)
        return fail(policy.refuse, `${childPath(".", segs.join("/"))} cannot be added`);
      if (policy?.access !== undefined && (policy.access & Access.Add) === 0) {
        return fail(StatusCode.CommandNotAllowed, "the MO does not allow Add here");
      }
      policies.push(policy);
    }
    if (format !== "node") {
      const refused = this.#check("Add", serverId, u.segments, format, input.value);
      if (refused !== undefined) return refused;
    }
    const parentMayReplace = aclGrants(ancestorAcl, "Replace", serverId);
    const now = this.#now();
    let parentId = ancestor.id;
    for (let i = rows.length - 1; i < u.segments.length; i++) {
      const last = i === u.segments.length - 1;
      const policy = policies[i - (rows.length - 1)];
      const interior = !last || format === "node";
      // The topmost new node, when interior and added by a server without Replace on the existing
      // parent, gets the creator ACL (protocol.md 3.3 Add); every node below it starts empty and
      // inherits that ACL, as implicit ancestors do.
      const topmost = i === rows.length - 1;
      const acl =
        topmost && interior && !parentMayReplace && isServerId(serverId) ? creatorAclText(serverId) : null;
      parentId = this.store.insert({
        parent: parentId,
        name: u.segments[i] ?? "",
        format: interior ? NODE_FORMAT_CODE : (FORMAT_CODE.get(format) ?? 0),
        flags: policy?.secret === true ? NodeFlag.Secret : 0,
        access: policy?.access ?? null,
        type: last ? (input.type ?? null) : null,
        acl,
        title: null,
        tstamp: now,
        value: interior ? null : storedValue(input.value),
      });
    }
    this.store.touch(ancestor.id, now);
    for (let i = rows.length - 1; i < u.segments.length; i++) this.#added(u.segments.slice(0, i + 1));
    return ok;
  }

  /** Get: a leaf's value, an interior node's child list, a property, or a tree exchange. */
  get(serverId: string, uri: string): GetResult {
    const parsed = this.#parse(uri);
    if (!parsed.ok) return { status: parsed.status, kind: "error", reason: parsed.reason };
    const u = parsed.uri;
    const { rows, found } = this.#resolve(u.segments);
    const node = rows[rows.length - 1];
    if (!found || node === undefined)
      return { status: StatusCode.NotFound, kind: "error", reason: `${u.path} not found` };
    if (!this.#supports(node, Access.Get))
      return { status: StatusCode.CommandNotAllowed, kind: "error", reason: "Get not supported" };
    if (!aclGrants(this.#effective(rows), "Get", serverId)) {
      return { status: StatusCode.PermissionDenied, kind: "error", reason: "ACL denies Get" };
    }
    const query = u.query;
    if (query?.kind === "prop") {
      const value = this.#property(node, rows, query.prop);
      if (value === undefined)
        return { status: StatusCode.OptionalFeatureNotSupported, kind: "error", reason: "no such property" };
      return { status: StatusCode.Ok, kind: "prop", prop: query.prop, value };
    }
    if (query?.kind === "list") {
      return { status: StatusCode.Ok, kind: "list", query, nodes: this.#list(serverId, u.path, rows, query) };
    }
    if ((node.flags & NodeFlag.Secret) !== 0) {
      return { status: StatusCode.CommandNotAllowed, kind: "error", reason: "the node cannot be read" };
    }
    return {
      status: StatusCode.Ok,
      kind: "node",
      node: this.#describe(u.path, node, rows.slice(0, -1), true),
    };
  }

  /** Replace: a leaf's value (404 when missing, never creates), or `?prop=ACL|Name|Title`. */
  replace(serverId: string, uri: string, input: LeafInput): TreeStatus {
    const parsed = this.#parse(uri);
    if (!parsed.ok) return parsed;
    const u = parsed.uri;
    const { rows, found } = this.#resolve(u.segments);
    const node = rows[rows.length - 1];
    if (!found || node === undefined) return fail(StatusCode.NotFound, `${u.path} not found`);
    if (u.query?.kind === "prop") return this.#replaceProperty(serverId, u, node, rows, input);
    if (u.query !== undefined) return fail(StatusCode.CommandNotAllowed, "a list cannot be replaced");
    if (node.format === NODE_FORMAT_CODE)
      return fail(StatusCode.CommandNotAllowed, "an interior node has no value");
    if (!this.#supports(node, Access.Replace))
      return fail(StatusCode.CommandNotAllowed, "Replace not supported");
    if (!aclGrants(this.#effective(rows), "Replace", serverId))
      return fail(StatusCode.PermissionDenied, "ACL denies Replace");
    const format = input.format ?? formatOf(node.format);
    if (format === "node") return fail(StatusCode.CommandNotAllowed, "a leaf cannot become interior");
    const checked = checkValue(format, input.value);
    if (checked !== undefined) return checked;
    const refused = this.#check("Replace", serverId, u.segments, format, input.value);
    if (refused !== undefined) return refused;
    this.store.setValue(node.id, FORMAT_CODE.get(format) ?? 0, storedValue(input.value), this.#now());
    if (input.type !== undefined && input.type !== node.type) this.store.setType(node.id, input.type);
    return ok;
  }

  /** Delete: the node and its subtree; 405 for the root and for permanent nodes. */
  delete(serverId: string, uri: string): TreeStatus {
    const parsed = this.#parse(uri);
    if (!parsed.ok) return parsed;
    const u = parsed.uri;
    if (u.query !== undefined) return fail(StatusCode.CommandNotAllowed, "properties cannot be deleted");
    if (u.segments.length === 0) return fail(StatusCode.CommandNotAllowed, "the root cannot be deleted");
    const { rows, found } = this.#resolve(u.segments);
    const node = rows[rows.length - 1];
    const parent = rows[rows.length - 2];
    if (!found || node === undefined || parent === undefined)
      return fail(StatusCode.NotFound, `${u.path} not found`);
    if ((node.flags & NodeFlag.Permanent) !== 0 || !this.#supports(node, Access.Delete)) {
      return fail(StatusCode.CommandNotAllowed, "the node cannot be deleted");
    }
    if (!aclGrants(this.#effective(rows), "Delete", serverId))
      return fail(StatusCode.PermissionDenied, "ACL denies Delete");
    if (
      node.format === NODE_FORMAT_CODE &&
      this.store.subtree(node.id).some((n) => (n.flags & NodeFlag.Permanent) !== 0)
    ) {
      return fail(StatusCode.CommandNotAllowed, "the subtree holds permanent nodes");
    }
    this.store.deleteSubtree(node.id);
    this.store.touch(parent.id, this.#now());
    return ok;
  }

  /** Copy (DM 1.2): leaf to leaf; needs Get on the source and Replace (or Add) on the target. */
  copy(serverId: string, targetUri: string, sourceUri: string): TreeStatus {
    const source = this.get(serverId, sourceUri);
    if (source.kind === "error") return fail(source.status, source.reason);
    if (source.kind !== "node") return fail(StatusCode.CommandNotAllowed, "only a node can be copied");
    if (source.node.format === "node")
      return fail(StatusCode.CommandNotAllowed, "Copy is leaf to leaf in DM 1.2");
    const input: LeafInput = {
      format: source.node.format,
      ...(source.node.type !== undefined && { type: source.node.type }),
      ...(source.node.value !== undefined && { value: source.node.value }),
    };
    const target = this.#parse(targetUri);
    if (!target.ok) return target;
    const { found } = this.#resolve(target.uri.segments);
    const result = found ? this.replace(serverId, targetUri, input) : this.add(serverId, targetUri, input);
    return result.status === StatusCode.CommandNotAllowed && found
      ? fail(StatusCode.Forbidden, "the target cannot be overwritten")
      : result;
  }

  /** Exec: delegated to the MO that owns the node (405 when it has no Exec). */
  exec(serverId: string, uri: string, data?: NodeValue, correlator?: string): TreeStatus {
    const parsed = this.#parse(uri);
    if (!parsed.ok) return parsed;
    const u = parsed.uri;
    if (u.query !== undefined) return fail(StatusCode.CommandNotAllowed, "a property cannot be executed");
    const { rows, found } = this.#resolve(u.segments);
    const node = rows[rows.length - 1];
    if (!found || node === undefined) return fail(StatusCode.NotFound, `${u.path} not found`);
    const plugin = this.#pluginFor(u.path);
    if (plugin?.exec === undefined || !this.#supports(node, Access.Exec)) {
      return fail(StatusCode.CommandNotAllowed, "the node cannot be executed");
    }
    if (!aclGrants(this.#effective(rows), "Exec", serverId))
      return fail(StatusCode.PermissionDenied, "ACL denies Exec");
    const hooks = this.#afterCommit;
    const outcome = plugin.exec({
      path: u.path,
      segments: u.segments,
      serverId,
      ...(data !== undefined && { data }),
      ...(correlator !== undefined && { correlator }),
      afterCommit: (fn) => {
        if (hooks === undefined) fn();
        else hooks.push(fn);
      },
    });
    return outcome.status >= 300
      ? fail(outcome.status, "the MO refused the Exec")
      : { status: outcome.status };
  }

  /** The paths of the MO roots whose Type is `moid` (a server finds an MO by its MOID). */
  findByMoid(moid: string): string[] {
    return this.store
      .nodesOfType(moid)
      .filter((r) => r.format === NODE_FORMAT_CODE)
      .map((r) => this.#pathOf(r))
      .sort();
  }

  // ---------------------------------------------------------------- gateway-side (no ACL)

  /** Reads a node as the gateway itself (no ACL, secrets included). Undefined when missing. */
  read(path: string): TreeNode | undefined {
    const parsed = this.#parse(path);
    if (!parsed.ok) return undefined;
    const { rows, found } = this.#resolve(parsed.uri.segments);
    const node = rows[rows.length - 1];
    if (!found || node === undefined) return undefined;
    return this.#describe(parsed.uri.path, node, rows.slice(0, -1), true, true);
  }

  /** The names of a node's children, as the gateway itself; undefined when the node is missing. */
  childNames(path: string): string[] | undefined {
    const parsed = this.#parse(path);
    if (!parsed.ok) return undefined;
    const { rows, found } = this.#resolve(parsed.uri.segments);
    const node = rows[rows.length - 1];
    return found && node !== undefined ? this.store.childNames(node.id) : undefined;
  }

  /**
   * Creates or overwrites a node as the gateway itself (MOs keeping their own state, the device
   * inventory): no ACL; missing ancestors are created as interior nodes.
   */
  write(spec: NodeSpec): void {
    const parsed = this.#parse(spec.path);
    if (!parsed.ok) {
      throw new GatewayError(`invalid path ${spec.path}: ${parsed.reason}`, ErrorCode.Tree_InvalidPlugin, {
        context: { path: spec.path },
      });
    }
    const segs = parsed.uri.segments;
    const { rows, found } = this.#resolve(segs);
    const now = this.#now();
    const flags =
      (spec.permanent === true ? NodeFlag.Permanent : 0) |
      (spec.secret === true ? NodeFlag.Secret : 0) |
      (spec.dynamic === true ? NodeFlag.Dynamic : 0);
    const node = rows[rows.length - 1];
    const conflict = (why: string): GatewayError =>
      new GatewayError(`cannot write ${spec.path}: ${why}`, ErrorCode.Tree_Conflict, {
        context: { path: spec.path },
      });
    if (found && node !== undefined && (node.format === NODE_FORMAT_CODE) !== (spec.format === "node")) {
      throw conflict(node.format === NODE_FORMAT_CODE ? "it is an interior node" : "it is a leaf");
    }
    if (!found && node !== undefined && node.format !== NODE_FORMAT_CODE)
      throw conflict(`${node.name} is a leaf`);
    if (found && node !== undefined) {
      if (spec.format !== "node")
        this.store.setValue(node.id, FORMAT_CODE.get(spec.format) ?? 0, storedValue(spec.value), now);
      if (spec.type !== undefined && spec.type !== node.type) this.store.setType(node.id, spec.type);
      if (spec.acl !== undefined) this.store.setAcl(node.id, spec.acl);
      return;
    }
    let parentId = node?.id ?? ROOT_ID;
    for (let i = rows.length - 1; i < segs.length; i++) {
      const last = i === segs.length - 1;
      // The owning MO's policy marks new nodes secret (AAuthSecret...) whoever creates them.
      const policySecret = this.#policy(segs.slice(0, i + 1))?.secret === true ? NodeFlag.Secret : 0;
      parentId = this.store.insert({
        parent: parentId,
        name: segs[i] ?? "",
        format: last ? (FORMAT_CODE.get(spec.format) ?? 0) : NODE_FORMAT_CODE,
        flags: (last ? flags : 0) | policySecret,
        access: last && spec.access !== undefined && spec.access !== ACCESS_ALL ? spec.access : null,
        type: last ? (spec.type ?? null) : null,
        acl: last ? (spec.acl ?? null) : null,
        title: last ? (spec.title ?? null) : null,
        tstamp: now,
        value: last && spec.format !== "node" ? storedValue(spec.value) : null,
      });
    }
  }

  /** Deletes a node and its subtree as the gateway itself; false when it did not exist. */
  remove(path: string): boolean {
    const parsed = this.#parse(path);
    if (!parsed.ok || parsed.uri.segments.length === 0) return false;
    const { rows, found } = this.#resolve(parsed.uri.segments);
    const node = rows[rows.length - 1];
    if (!found || node === undefined) return false;
    this.store.deleteSubtree(node.id);
    return true;
  }

  // ---------------------------------------------------------------- internals

  #parse(uri: string): { ok: true; uri: DmUri } | { ok: false; status: number; reason: string } {
    return parseUri(uri, this.#uriLimits);
  }

  #resolve(segments: readonly string[]): Resolved {
    this.store.checkExternalChanges();
    // Ancestors come from the store's interior-row cache; the node itself is always read fresh.
    const root = segments.length === 0 ? this.store.nodeById(ROOT_ID) : this.store.rootRow();
    if (root === undefined) throw new GatewayError("the tree has no root node", ErrorCode.Store_Corrupt);
    const rows: NodeRow[] = [root];
    let current = root;
    const last = segments.length - 1;
    for (let i = 0; i <= last; i++) {
      const name = segments[i] ?? "";
      const next =
        i === last ? this.store.child(current.id, name) : this.store.interiorChild(current.id, name);
      if (next === undefined) return { rows, found: false };
      rows.push(next);
      current = next;
    }
    return { rows, found: true };
  }

  #acl(text: string | null): Acl {
    if (text === null || text === "") return EMPTY_ACL;
    let acl = this.#aclCache.get(text);
    if (acl === undefined) {
      const parsed = parseAcl(text);
      acl = parsed.ok ? parsed.acl : EMPTY_ACL;
      if (this.#aclCache.size > 1024) this.#aclCache.clear();
      this.#aclCache.set(text, acl);
    }
    return acl;
  }

  /** The ACL in force at the last row (nearest non-empty going up). */
  #effective(rows: readonly NodeRow[]): Acl {
    const chain: Acl[] = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      const acl = this.#acl(rows[i]?.acl ?? null);
      if (acl.size > 0) return acl;
      chain.push(acl);
    }
    return effectiveAcl(chain);
  }

  #supports(node: NodeRow, access: number): boolean {
    return node.access === null || (node.access & access) !== 0;
  }

  /** The plugin with the longest root that is `path` or one of its ancestors (MOs may nest). */
  #pluginFor(path: string): MoPlugin | undefined {
    let best: MoPlugin | undefined;
    for (const p of this.#plugins) {
      if ((path === p.root || path.startsWith(`${p.root}/`)) && p.root.length > (best?.root.length ?? -1))
        best = p;
    }
    return best;
  }

  #check(
    command: "Add" | "Replace",
    serverId: string,
    segments: readonly string[],
    format: NodeFormat,
    value: NodeValue | undefined,
  ): TreeStatus | undefined {
    const path = pathOfSegments(segments);
    const status = this.#pluginFor(path)?.check?.({ command, path, segments, serverId, format, value });
    return status === undefined ? undefined : fail(status, `the MO refused the value of ${path}`);
  }

  /** Writes what the owning MO's DDF puts under a node just added (existing nodes are kept). */
  #added(segments: readonly string[]): void {
    const path = pathOfSegments(segments);
    const specs = this.#pluginFor(path)?.added?.(path, segments) ?? [];
    for (const spec of specs) if (this.read(spec.path) === undefined) this.write(spec);
  }

  #policy(segments: readonly string[]): NodePolicy | undefined {
    return this.#pluginFor(pathOfSegments(segments))?.policyFor?.(segments);
  }

  #pathOf(row: NodeRow): string {
    const names: string[] = [];
    let current: NodeRow | undefined = row;
    while (current !== undefined && current.id !== ROOT_ID) {
      names.unshift(current.name);
      current = this.store.nodeById(current.parent);
    }
    return names.length === 0 ? "." : `./${names.join("/")}`;
  }

  #describe(
    path: string,
    row: NodeRow,
    _ancestors: readonly NodeRow[],
    withValue: boolean,
    includeSecret = false,
  ): TreeNode {
    const format = formatOf(row.format);
    const hidden = (row.flags & NodeFlag.Secret) !== 0 && !includeSecret;
    let value: NodeValue | undefined;
    if (withValue) {
      if (format === "node") value = this.store.childNames(row.id).join("/");
      else if (hidden) value = undefined;
      else if ((row.flags & NodeFlag.Dynamic) !== 0) value = this.#dynamic(path);
      else value = valueOf(row.value);
    }
    return {
      path,
      name: row.name,
      format,
      ...(row.type !== null && { type: row.type }),
      ...(value !== undefined && { value }),
      ...(row.acl !== null && { acl: row.acl }),
      ...(row.title !== null && { title: row.title }),
      ...(row.tstamp !== null && { tstamp: isoBasic(row.tstamp) }),
      verNo: row.verno ?? 0,
      // A secret's Size is not revealed to a server either (as `?prop=Size` refuses it): a
      // `?list=TNDS+Size` would otherwise leak its length (NodeFlag.Secret: never readable).
      ...(format !== "node" && !hidden && { size: sizeOf(value ?? valueOf(row.value)) }),
      ...((row.flags & NodeFlag.Secret) !== 0 && { secret: true as const }),
    };
  }

  #dynamic(path: string): NodeValue | undefined {
    const plugin = this.#pluginFor(path);
    const parsed = this.#parse(path);
    return parsed.ok ? plugin?.read?.(path, parsed.uri.segments) : undefined;
  }

  #property(row: NodeRow, rows: readonly NodeRow[], prop: NodeProperty): string | undefined {
    const format = formatOf(row.format);
    switch (prop) {
      case "ACL":
        return row.acl ?? "";
      case "Format":
        return format;
      case "Name":
        return row.name;
      case "Size":
        if (format === "node") return undefined;
        if ((row.flags & NodeFlag.Secret) !== 0) return undefined;
        return String(sizeOf(valueOf(row.value)));
      case "Title":
        return row.title ?? "";
      case "TStamp":
        return row.tstamp === null ? "" : isoBasic(row.tstamp);
      case "Type":
        return row.type ?? (format === "node" ? "" : "text/plain");
      case "VerNo":
        return String(row.verno ?? 0);
    }
    return undefined;
  }

  #replaceProperty(
    serverId: string,
    u: DmUri,
    node: NodeRow,
    rows: readonly NodeRow[],
    input: LeafInput,
  ): TreeStatus {
    if (u.query?.kind !== "prop") return fail(StatusCode.BadRequest, "not a property");
    const text =
      typeof input.value === "string"
        ? input.value
        : input.value === undefined
          ? ""
          : Buffer.from(input.value).toString("utf8");
    switch (u.query.prop) {
      case "ACL": {
        const parent = rows.length >= 2 ? this.#effective(rows.slice(0, -1)) : undefined;
        const allowed = mayReplaceAcl(
          {
            isInterior: node.format === NODE_FORMAT_CODE,
            nodeEffectiveAcl: this.#effective(rows),
            parentEffectiveAcl: parent,
          },
          serverId,
        );
        if (!allowed) return fail(StatusCode.PermissionDenied, "may not change this ACL");
        const parsed = parseAcl(text);
        if (!parsed.ok) return fail(StatusCode.BadRequest, `invalid ACL: ${parsed.reason}`);
        if (node.id === ROOT_ID && parsed.acl.size === 0)
          return fail(StatusCode.BadRequest, "the root ACL cannot be empty");
        this.store.setAcl(node.id, parsed.acl.size === 0 ? null : formatAcl(parsed.acl));
        return ok;
      }
      case "Name": {
        if (node.id === ROOT_ID || (node.flags & NodeFlag.Permanent) !== 0)
          return fail(StatusCode.CommandNotAllowed, "cannot rename");
        if (!aclGrants(this.#effective(rows), "Replace", serverId))
          return fail(StatusCode.PermissionDenied, "ACL denies Replace");
        const check = parseUri(`./${text}`, this.#uriLimits);
        if (!check.ok || check.uri.segments.length !== 1)
          return fail(StatusCode.BadRequest, "invalid node name");
        const name = check.uri.segments[0] ?? "";
        if (this.store.child(node.parent, name) !== undefined)
          return fail(StatusCode.AlreadyExists, "the name is taken");
        this.store.rename(node.id, name, this.#now());
        return ok;
      }
      case "Title": {
        if (!aclGrants(this.#effective(rows), "Replace", serverId))
          return fail(StatusCode.PermissionDenied, "ACL denies Replace");
        if (Buffer.byteLength(text) > 255)
          return fail(StatusCode.RequestEntityTooLarge, "a Title holds at most 255 bytes");
        this.store.setTitle(node.id, text === "" ? null : text);
        return ok;
      }
      case "Format":
      case "Size":
      case "TStamp":
      case "Type":
      case "VerNo":
        return fail(StatusCode.CommandNotAllowed, `${u.query.prop} is read-only`);
    }
  }

  /** The nodes of a `?list=` exchange below (and including) `path` that the server may read. */
  #list(
    serverId: string,
    path: string,
    rows: readonly NodeRow[],
    query: Extract<UriQuery, { kind: "list" }>,
  ): TreeNode[] {
    const top = rows[rows.length - 1];
    if (top === undefined) return [];
    const withData = query.list !== "Struct";
    const out: TreeNode[] = [
      this.#describe(path, top, rows.slice(0, -1), withData && top.format !== NODE_FORMAT_CODE),
    ];
    // Walk the subtree keeping, per node id, its path and effective ACL, so that each node costs one
    // lookup; a node the server may not Get is left out with everything below it.
    const info = new Map<number, { path: string; acl: Acl }>([
      [top.id, { path, acl: this.#effective(rows) }],
    ]);
    for (const row of this.store.subtree(top.id)) {
      const parent = info.get(row.parent);
      if (parent === undefined) continue;
      const own = this.#acl(row.acl);
      const acl = own.size > 0 ? own : parent.acl;
      if (!aclGrants(acl, "Get", serverId) || !this.#supports(row, Access.Get)) continue;
      const childPathText = childPath(parent.path, row.name);
      info.set(row.id, { path: childPathText, acl });
      out.push(this.#describe(childPathText, row, [], withData && row.format !== NODE_FORMAT_CODE));
    }
    return out;
  }
}

/**
 * The creator ACL (protocol.md 3.3 Add): Add, Delete and Replace for the creating server, plus Get.
 * An ACL is inherited as a whole, so without Get the creator could not read back what it created;
 * granting it adds no right to anyone else.
 */
/** The canonical path of decoded segments (`%` and `/` escaped as in DM URIs). */
function pathOfSegments(segments: readonly string[]): string {
  return segments.length === 0
    ? "."
    : `./${segments.map((s) => s.replace(/%/g, "%25").replace(/\//g, "%2F")).join("/")}`;
}

function creatorAclText(serverId: string): string {
  const acl = new Map(creatorAcl(serverId));
  acl.set("Get", [serverId]);
  return formatAcl(acl);
}

function valueOf(v: string | Buffer | null): NodeValue | undefined {
  if (v === null) return undefined;
  return typeof v === "string" ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function storedValue(v: NodeValue | undefined): string | Uint8Array | null {
  return v ?? null;
}

function sizeOf(v: NodeValue | undefined): number {
  if (v === undefined) return 0;
  return typeof v === "string" ? Buffer.byteLength(v) : v.byteLength;
}

/** A node as a TNDS node (for `?list=TNDS` and `dmgw tree export`). */
export function treeNodeToTnds(n: TreeNode): TndsNode {
  return {
    path: n.path,
    format: n.format,
    ...(n.type !== undefined && { type: n.type }),
    ...(n.acl !== undefined && { acl: n.acl }),
    ...(n.title !== undefined && { title: n.title }),
    ...(n.tstamp !== undefined && { tstamp: n.tstamp }),
    ...(n.verNo !== undefined && { verNo: n.verNo }),
    ...(n.size !== undefined && { size: n.size }),
    ...(n.value !== undefined && n.format !== "node" && { value: n.value }),
  };
}

/** TStamp: ISO 8601 basic format, UTC (TND 1.2: `20010711T163817Z`). */
export function isoBasic(ms: number): string {
  // Built from the UTC fields: toISOString() plus two regexes cost more than the SQLite lookup of a
  // Get (every node described carries its TStamp).
  const d = new Date(ms);
  return (
    String(d.getUTCFullYear()).padStart(4, "0") +
    two(d.getUTCMonth() + 1) +
    two(d.getUTCDate()) +
    "T" +
    two(d.getUTCHours()) +
    two(d.getUTCMinutes()) +
    two(d.getUTCSeconds()) +
    "Z"
  );
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** A value the format cannot hold is a bad request (400); the text formats are checked. */
function checkValue(format: NodeFormat, value: NodeValue | undefined): TreeStatus | undefined {
  if (format === "node")
    return value === undefined || value === ""
      ? undefined
      : fail(StatusCode.BadRequest, "an interior node has no value");
  if (value === undefined || typeof value !== "string") return undefined;
  switch (format) {
    case "int":
      return /^[+-]?\d+$/.test(value.trim()) ? undefined : fail(StatusCode.BadRequest, "not an int");
    case "bool":
      return /^(true|false)$/i.test(value.trim()) ? undefined : fail(StatusCode.BadRequest, "not a bool");
    case "float":
      return value.trim() !== "" && Number.isFinite(Number(value))
        ? undefined
        : fail(StatusCode.BadRequest, "not a float");
    case "null":
      return value === "" ? undefined : fail(StatusCode.BadRequest, "a null node has no value");
    case "b64":
    case "bin":
    case "chr":
    case "date":
    case "time":
    case "xml":
      return undefined;
  }
}
