/**
 * Test helpers for the management tree, the store and the command executor: trees on an in-memory or
 * temporary-file store, an injectable clock, small MO plugins, and SyncML message scaffolding.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ExecutorContext, Reply } from "../../src/dm/command-executor.js";
import { executeCommands } from "../../src/dm/command-executor.js";
import type { AlertAnswer } from "../../src/dm/user-interaction.js";
import {
  decodeMessage,
  type AlertCommand,
  type Command,
  type Encoding,
  type ResultsCommand,
  type StatusCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import type { MoPlugin } from "../../src/tree/plugin.js";
import { ROOT_ID, Store } from "../../src/tree/store.js";
import { DmTree, type TreeNode, type TreeOptions } from "../../src/tree/tree.js";
import type { NodeValue } from "../../src/tree/types.js";

/** The acting DM server of most tests, and another one the ACLs can tell apart from it. */
export const SRV = "dm.example.com";
export const OTHER = "other.example.net";

/** An ACL granting every command to every server (set on the root to take the ACL out of a test). */
export const OPEN_ACL = "Add=*&Delete=*&Exec=*&Get=*&Replace=*";

/** 2025-01-01T12:00:00Z, the clock's start. */
export const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

/** A clock the tests move by hand (TStamp). */
export class Clock {
  ms = T0;
  readonly now = (): number => this.ms;
  tick(ms = 1000): void {
    this.ms += ms;
  }
}

export interface MemoryTreeOptions extends TreeOptions {
  /** Run `seed()` (root ACL `Add=*&Get=*`, plugin nodes). Default true. */
  readonly seed?: boolean;
  /** Replace the root ACL after seeding (for example {@link OPEN_ACL}). */
  readonly rootAcl?: string;
}

/** A tree on `Store.open(":memory:")`. */
export function memoryTree(options: MemoryTreeOptions = {}): DmTree {
  const tree = new DmTree(Store.open(":memory:"), options);
  if (options.seed !== false) tree.seed();
  if (options.rootAcl !== undefined) tree.store.setAcl(ROOT_ID, options.rootAcl);
  return tree;
}

/** A fresh temporary directory, removed by `cleanup()`. */
export interface TempDir {
  readonly dir: string;
  file(name: string): string;
  cleanup(): void;
}

export function tempDir(prefix = "dmgw-test-"): TempDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    dir,
    file: (name) => path.join(dir, name),
    cleanup: () => {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A plugin with an id derived from its root; everything else as given. */
export function plugin(p: Omit<MoPlugin, "id"> & { readonly id?: string }): MoPlugin {
  return { id: p.id ?? p.root.slice(2).toLowerCase(), ...p };
}

/** A leaf or interior node's value as text (bytes as UTF-8), asserting the Get succeeded. */
export function getNode(tree: DmTree, serverId: string, uri: string): TreeNode {
  const r = tree.get(serverId, uri);
  assert.equal(r.status, 200, `Get ${uri} as ${serverId}: ${r.kind === "error" ? r.reason : ""}`);
  assert.equal(r.kind, "node", `Get ${uri} is a node`);
  return r.node;
}

/** The value of a property, asserting the Get succeeded. */
export function getProp(tree: DmTree, serverId: string, uri: string, prop: string): string {
  const r = tree.get(serverId, `${uri}?prop=${prop}`);
  assert.equal(r.status, 200, `Get ${uri}?prop=${prop}: ${r.kind === "error" ? r.reason : ""}`);
  assert.equal(r.kind, "prop");
  return r.value;
}

/** The nodes of a `?list=` Get, asserting it succeeded. */
export function getList(tree: DmTree, serverId: string, uri: string): readonly TreeNode[] {
  const r = tree.get(serverId, uri);
  assert.equal(r.status, 200, `Get ${uri}: ${r.kind === "error" ? r.reason : ""}`);
  assert.equal(r.kind, "list");
  return r.nodes;
}

export function text(v: NodeValue | undefined): string | undefined {
  if (v === undefined) return undefined;
  return typeof v === "string" ? v : Buffer.from(v).toString("utf8");
}

/** Every node of the tree as the gateway sees it, for "nothing changed" comparisons. */
export function snapshot(tree: DmTree): unknown[] {
  return tree.store.db
    .prepare(
      "SELECT id, parent, name, format, flags, access, type, acl, title, tstamp, verno, value FROM node ORDER BY id",
    )
    .all();
}

// ---------------------------------------------------------------- SyncML messages

/** A DM 1.2 server message (Pkg#2 shape) with `body` as the SyncBody's commands. */
export function serverMessageXml(body: string, msgId = "2"): string {
  return [
    `<SyncML xmlns="SYNCML:SYNCML1.2">`,
    `<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1A</SessionID>`,
    `<MsgID>${msgId}</MsgID>`,
    `<Target><LocURI>IMEI:493005100592800</LocURI></Target>`,
    `<Source><LocURI>https://dm.example.com/dm</LocURI></Source></SyncHdr>`,
    `<SyncBody>${body}<Final/></SyncBody></SyncML>`,
  ].join("");
}

/** Decodes `serverMessageXml(body)` and returns its commands. */
export function decodeCommands(body: string, msgId = "2"): readonly Command[] {
  const decoded = decodeMessage(new TextEncoder().encode(serverMessageXml(body, msgId)));
  assert.equal(decoded.encoding, "xml");
  return decoded.message.body.commands;
}

export interface RunOptions {
  readonly serverId?: string;
  readonly encoding?: Encoding;
  readonly msgId?: string;
  readonly onAlert?: (alert: AlertCommand) => AlertAnswer;
}

export interface RunOutcome {
  readonly replies: readonly Reply[];
  readonly statuses: readonly StatusCommand[];
  readonly results: readonly ResultsCommand[];
}

/** Decodes an XML server message and runs its commands in one tree transaction. */
export function runMessage(tree: DmTree, body: string, options: RunOptions = {}): RunOutcome {
  const msgId = options.msgId ?? "2";
  const commands = decodeCommands(body, msgId);
  let next = 1;
  const ctx: ExecutorContext = {
    tree,
    serverId: options.serverId ?? SRV,
    encoding: options.encoding ?? "xml",
    msgId,
    nextCmdId: () => String(next++),
    ...(options.onAlert !== undefined && { onAlert: options.onAlert }),
  };
  const replies = tree.transaction(() => executeCommands(commands, ctx));
  return {
    replies,
    statuses: replies.filter((r): r is StatusCommand => r.kind === "Status"),
    results: replies.filter((r): r is ResultsCommand => r.kind === "Results"),
  };
}

/** `[CmdRef, Cmd, Data]` of each Status, for compact table assertions. */
export function statusTriples(statuses: readonly StatusCommand[]): [string, string, string][] {
  return statuses.map((s) => [s.cmdRef, s.cmd, s.data]);
}

/** The client's reply message (Pkg#3 shape) carrying `commands`. */
export function clientReply(commands: readonly Reply[], msgId = "2"): SyncMLMessage {
  return {
    version: "1.2",
    hdr: {
      verDTD: "1.2",
      verProto: "DM/1.2",
      sessionId: "1A",
      msgId,
      target: { locUri: "https://dm.example.com/dm" },
      source: { locUri: "IMEI:493005100592800" },
    },
    body: { commands, final: true },
  };
}
