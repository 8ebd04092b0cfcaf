/**
 * The MO plugin interface (design.md section 2, `mo/`): a management object declares its subtree
 * (static nodes, persisted, seeded once), the policy for nodes a server adds below it (the DDF's
 * access types, secrets), may compute dynamic leaves on Get, and owns the Exec of its nodes.
 * Plugins know the tree, never a transport or a session.
 */
import type { NodeFormat, NodeValue } from "./types.js";

/** Access types of the DDF: which commands a node supports at all (405 otherwise). */
export const Access = {
  Add: 1,
  Delete: 2,
  Exec: 4,
  Get: 8,
  Replace: 16,
  Copy: 32,
} as const;
export const ACCESS_ALL = 63;
export const ACCESS_READ_ONLY = Access.Get;

/** Per-node flags kept with the node. */
export const NodeFlag = {
  /** Created by a plugin as part of its fixed structure: Delete and rename answer 405. */
  Permanent: 1,
  /** Never readable by a server: Get, `?list=` and TNDS leave its value out (AAuthSecret...). */
  Secret: 2,
  /** The value is computed on Get by the owning plugin's `read`. */
  Dynamic: 4,
} as const;

/** A node a plugin declares; paths are canonical (`./A/B`). */
export interface NodeSpec {
  readonly path: string;
  readonly format: NodeFormat;
  readonly type?: string;
  readonly value?: NodeValue;
  readonly acl?: string;
  readonly title?: string;
  /** Supported commands (Access bits); all by default. */
  readonly access?: number;
  readonly permanent?: boolean;
  readonly secret?: boolean;
  readonly dynamic?: boolean;
}

/** What a plugin says about a node a server is adding below its root. */
export interface NodePolicy {
  readonly access?: number;
  readonly secret?: boolean;
  /** Refuse the Add outright with this status (e.g. 405 for a read-only MO, 404 for a bad reference). */
  readonly refuse?: number;
}

export interface ExecRequest {
  readonly path: string;
  readonly segments: readonly string[];
  readonly serverId: string;
  readonly data?: NodeValue;
  readonly correlator?: string;
  /** Runs `fn` after the DM message's transaction has committed (work that must not be rolled back). */
  afterCommit(fn: () => void): void;
}

export interface ExecOutcome {
  /** 200 done, 202 accepted (runs later, reported by a Generic Alert), or a failure status. */
  readonly status: number;
}

export interface MoPlugin {
  /** A short name for logs ("devinfo"). */
  readonly id: string;
  /** Canonical path of the MO root (`./DevInfo`). */
  readonly root: string;
  /** The MOID, written into the root's Type property so a server can find the MO by it. */
  readonly moid?: string;
  /** Nodes created on first start, parents first; never overwritten by a later start. */
  seed?(): readonly NodeSpec[];
  /** The policy for a node a server adds below the root; undefined = no restriction. */
  policyFor?(segments: readonly string[]): NodePolicy | undefined;
  /** The value of a dynamic leaf; undefined when it has none right now. */
  read?(path: string, segments: readonly string[]): NodeValue | undefined;
  /** Exec on a node of this MO. Without it, Exec answers 405. */
  exec?(request: ExecRequest): ExecOutcome;
  /**
   * Checks a value a server writes (Add or Replace of a leaf): a status to refuse it with (404 for
   * a reference to something that does not exist, 400 for a malformed value), undefined to accept.
   * Runs after the ACL and format checks, before anything is written.
   */
  check?(request: ValueCheck): number | undefined;
  /**
   * The nodes the MO's DDF puts under a node a server just added (a job's Start and Status, say):
   * written in the same transaction, skipped where they exist already. Called once per node the
   * Add created (implicit ancestors included), parents first.
   */
  added?(path: string, segments: readonly string[]): readonly NodeSpec[];
}

/** A server's write of a leaf, as `MoPlugin.check` sees it. */
export interface ValueCheck {
  readonly command: "Add" | "Replace";
  readonly path: string;
  readonly segments: readonly string[];
  readonly serverId: string;
  readonly format: NodeFormat;
  readonly value: NodeValue | undefined;
}
