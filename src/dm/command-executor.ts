/**
 * Runs a DM server's commands against the management tree and builds the replies: one Status per
 * command (per Item where a command carries several) and a Results for each successful Get
 * (OMA DM RepPro 1.2; protocol.md 3.3). Sans-I/O and synchronous; the caller wraps one message's
 * commands in `DmTree.transaction`, so the message's changes are durable before its Status leaves.
 *
 * Atomic: a savepoint; on any failure everything it did is rolled back, the Atomic answers 507, the
 * commands that had succeeded 216, the failing one its own status and the ones not run 215.
 * Nested Atomic and Get inside Atomic answer 500 (RepPro 1.2, Atomic).
 */
import {
  MIME_TNDS_XML,
  StatusCode,
  type AlertCommand,
  type Command,
  type ContainerCommand,
  type Data,
  type ExecCommand,
  type ItemCommand,
  type Encoding,
  type Item,
  type Meta,
  type ResultsCommand,
  type StatusCommand,
} from "../syncml/index.js";
import type { AlertAnswer } from "./user-interaction.js";
import { nodesToTnds, tndsToNodes } from "../tree/tnds.js";
import { treeNodeToTnds, type DmTree, type LeafInput, type TreeNode, type TreeStatus } from "../tree/tree.js";
import { NODE_FORMATS, type NodeFormat, type NodeValue } from "../tree/types.js";

export interface ExecutorContext {
  readonly tree: DmTree;
  /** The ServerID of the server that sent the commands (ACLs are checked for it). */
  readonly serverId: string;
  /** Encoding of the reply: binary values travel as b64 text in XML, as OPAQUE bin in WBXML. */
  readonly encoding: Encoding;
  /** MsgID of the message the commands came in: the MsgRef of every reply. */
  readonly msgId: string;
  /** Allocates the CmdID of each reply command. */
  nextCmdId(): string;
  /** Answers a server Alert (user interaction); without it, such alerts answer 406. */
  onAlert?(alert: AlertCommand): AlertAnswer;
}

/** What executing one message's commands produced, in order. */
export type Reply = StatusCommand | ResultsCommand;

export function executeCommands(commands: readonly Command[], ctx: ExecutorContext): Reply[] {
  const out: Reply[] = [];
  for (const command of commands) runCommand(command, ctx, out, { inAtomic: false });
  return out;
}

interface Scope {
  readonly inAtomic: boolean;
}

function runCommand(command: Command, ctx: ExecutorContext, out: Reply[], scope: Scope): number {
  switch (command.kind) {
    case "Atomic":
      return runAtomic(command, ctx, out, scope);
    case "Sequence": {
      out.push(status(ctx, command, StatusCode.Ok));
      // The Sequence itself answers 200, but a failure inside it is a failure of the enclosing
      // Atomic (RepPro 1.2 Atomic: all contained commands succeed or all are rolled back).
      let worst: number = StatusCode.Ok;
      for (const inner of command.commands) {
        const code = runCommand(inner, ctx, out, scope);
        if (code >= 300) worst = Math.max(worst, code);
      }
      return worst;
    }
    case "Status":
    case "Results":
      // Responses, not commands: the session layer consumes them; nothing to execute here.
      return StatusCode.Ok;
    case "Alert": {
      const answer = ctx.onAlert?.(command) ?? { status: StatusCode.OptionalFeatureNotSupported };
      out.push({ ...status(ctx, command, answer.status), items: answer.items ?? [] });
      return answer.status;
    }
    case "Get":
      if (scope.inAtomic) return refuseItems(command, ctx, out, StatusCode.CommandFailed);
      return runGet(command, ctx, out);
    case "Add":
    case "Replace":
    case "Delete":
    case "Copy":
    case "Exec":
      return runItems(command, ctx, out);
  }
}

function runAtomic(command: ContainerCommand, ctx: ExecutorContext, out: Reply[], scope: Scope): number {
  const atomicStatus = status(ctx, command, StatusCode.Ok);
  if (scope.inAtomic) {
    out.push({ ...atomicStatus, data: String(StatusCode.CommandFailed) });
    // Every command gets a Status (RepPro 1.2): the nested Atomic's commands were not run (215).
    for (const c of command.commands) skip(c, ctx, out, StatusCode.NotExecuted);
    return StatusCode.CommandFailed;
  }
  const index = out.length;
  out.push(atomicStatus);
  const inner: Reply[] = [];
  const { committed } = ctx.tree.savepoint(() => {
    const codes: number[] = [];
    let failed = false;
    for (const c of command.commands) {
      if (failed) {
        skip(c, ctx, inner, StatusCode.NotExecuted);
        continue;
      }
      const code = runCommand(c, ctx, inner, { inAtomic: true });
      codes.push(code);
      if (code >= 300) {
        failed = true;
        // Everything that had succeeded is rolled back with the savepoint: say so (216), including
        // the successful Items of the failing command itself (RepPro 1.2 Atomic).
        for (let i = 0; i < inner.length; i++) {
          const s = inner[i];
          if (s?.kind !== "Status") continue;
          const replied = Number(s.data);
          // 215 (a nested Atomic's commands, never run) is not a success to roll back.
          if (replied < 300 && replied !== StatusCode.NotExecuted)
            inner[i] = { ...s, data: String(StatusCode.AtomicRollbackOk) };
        }
      }
    }
    return { commit: !failed, value: codes };
  });
  out[index] = { ...atomicStatus, data: String(committed ? StatusCode.Ok : StatusCode.AtomicFailed) };
  // Results of a rolled-back Atomic are not sent (there are none: Get is refused inside Atomic).
  out.push(...inner);
  return committed ? StatusCode.Ok : StatusCode.AtomicFailed;
}

/** Answers every item (or the command) of a command that was not run. */
function skip(command: Command, ctx: ExecutorContext, out: Reply[], code: number): void {
  if ("commands" in command) {
    out.push(status(ctx, command, code));
    for (const inner of command.commands) skip(inner, ctx, out, code);
    return;
  }
  if (command.kind === "Status" || command.kind === "Results") return;
  if (command.kind === "Alert") {
    out.push(status(ctx, command, code));
    return;
  }
  refuseItems(command, ctx, out, code);
}

function refuseItems(
  command: ItemCommand | ExecCommand | AlertCommand,
  ctx: ExecutorContext,
  out: Reply[],
  code: number,
): number {
  if (command.items.length === 0) out.push(status(ctx, command, code));
  for (const item of command.items) out.push(status(ctx, command, code, item));
  return code;
}

function runGet(command: ItemCommand, ctx: ExecutorContext, out: Reply[]): number {
  let worst: number = StatusCode.Ok;
  if (command.items.length === 0) {
    out.push(status(ctx, command, StatusCode.IncompleteCommand));
    return StatusCode.IncompleteCommand;
  }
  for (const item of command.items) {
    const uri = item.target?.locUri;
    if (uri === undefined) {
      out.push(status(ctx, command, StatusCode.IncompleteCommand, item));
      worst = Math.max(worst, StatusCode.IncompleteCommand);
      continue;
    }
    const result = ctx.tree.get(ctx.serverId, uri);
    out.push(status(ctx, command, result.status, item));
    worst = Math.max(worst, result.status);
    if (result.kind === "error") continue;
    const items: Item[] = [];
    let meta: Meta | undefined;
    if (result.kind === "node") items.push(nodeItem(result.node, uri, ctx.encoding, true));
    else if (result.kind === "prop")
      items.push({ source: { locUri: uri }, meta: { format: "chr" }, data: text(result.value) });
    else if (result.query.list === "TNDS") {
      const doc = nodesToTnds(result.nodes.map(treeNodeToTnds), {
        rootPath: result.nodes[0]?.path ?? ".",
        ...(result.query.props !== undefined && { props: result.query.props }),
      });
      items.push({
        source: { locUri: uri },
        meta: { format: "xml", type: MIME_TNDS_XML },
        data: { kind: "element", element: doc },
      });
    } else {
      const withData = result.query.list === "StructData";
      for (const node of result.nodes) items.push(nodeItem(node, node.path, ctx.encoding, withData));
      meta = undefined;
    }
    out.push({
      kind: "Results",
      cmdId: ctx.nextCmdId(),
      msgRef: ctx.msgId,
      cmdRef: command.cmdId,
      ...(meta !== undefined && { meta }),
      targetRefs: [],
      sourceRefs: [],
      items,
    });
  }
  return worst;
}

function runItems(command: ItemCommand | ExecCommand, ctx: ExecutorContext, out: Reply[]): number {
  if (command.items.length === 0) {
    out.push(status(ctx, command, StatusCode.IncompleteCommand));
    return StatusCode.IncompleteCommand;
  }
  let worst: number = StatusCode.Ok;
  for (const item of command.items) {
    const result = runItem(command, item, ctx);
    out.push(status(ctx, command, result.status, item));
    worst = Math.max(worst, result.status >= 300 ? result.status : worst);
    if (result.status >= 300) worst = Math.max(worst, result.status);
  }
  return worst;
}

function runItem(command: ItemCommand | ExecCommand, item: Item, ctx: ExecutorContext): TreeStatus {
  const target = item.target?.locUri;
  if (target === undefined) return { status: StatusCode.IncompleteCommand, reason: "no Target" };
  const { tree, serverId } = ctx;
  const meta = mergeMeta(command.kind === "Delete" ? undefined : command.meta, item.meta);
  switch (command.kind) {
    case "Get":
      return { status: StatusCode.CommandFailed, reason: "Get is answered by runGet" };
    case "Delete":
      return tree.delete(serverId, target);
    case "Copy": {
      const source = item.source?.locUri;
      if (source === undefined) return { status: StatusCode.IncompleteCommand, reason: "no Source" };
      return tree.copy(serverId, target, source);
    }
    case "Exec": {
      const input = item.data === undefined ? undefined : leafValue(item.data, meta?.format);
      if (input !== undefined && "status" in input) return input;
      return tree.exec(serverId, target, input?.value, command.correlator);
    }
    case "Add":
    case "Replace": {
      if (item.data?.kind === "element") return applyTnds(command.kind, target, item.data, meta, ctx);
      const input = leafInput(item.data, meta);
      if ("status" in input) return input;
      return command.kind === "Add"
        ? tree.add(serverId, target, input)
        : tree.replace(serverId, target, input);
    }
  }
}

/** Add/Replace of a TNDS payload: the whole subtree, one status (TND 1.2; protocol.md 3.10). */
function applyTnds(
  kind: "Add" | "Replace",
  target: string,
  data: Extract<Data, { kind: "element" }>,
  meta: Meta | undefined,
  ctx: ExecutorContext,
): TreeStatus {
  if (meta?.type !== undefined && meta.type.trim() !== MIME_TNDS_XML) {
    return { status: StatusCode.UnsupportedMediaType, reason: `structured Data of type ${meta.type}` };
  }
  const parsed = tndsToNodes(data.element, canonicalTarget(target));
  if (!parsed.ok) return { status: parsed.status, reason: parsed.reason };
  const { tree, serverId } = ctx;
  // Add creates the subtree: its top node must not exist yet (418), as for a plain Add.
  const top = parsed.nodes[0];
  if (kind === "Add" && top !== undefined && tree.read(top.path) !== undefined) {
    return { status: StatusCode.AlreadyExists, reason: `${top.path} exists` };
  }
  const outcome = tree.savepoint(() => {
    for (const node of parsed.nodes) {
      const input: LeafInput = {
        format: node.format,
        ...(node.type !== undefined && { type: node.type }),
        ...(node.value !== undefined && { value: node.value }),
      };
      const exists = tree.read(node.path) !== undefined;
      let r: TreeStatus;
      if (node.format === "node")
        r = exists ? { status: StatusCode.Ok } : tree.add(serverId, node.path, input);
      else if (exists && kind === "Replace") r = tree.replace(serverId, node.path, input);
      else r = tree.add(serverId, node.path, input);
      if (r.status < 300 && node.acl !== undefined)
        r = tree.replace(serverId, `${node.path}?prop=ACL`, { value: node.acl });
      if (r.status < 300 && node.title !== undefined)
        r = tree.replace(serverId, `${node.path}?prop=Title`, { value: node.title });
      if (r.status >= 300) return { commit: false, value: r };
    }
    const done: TreeStatus = { status: StatusCode.Ok };
    return { commit: true, value: done };
  });
  return outcome.value;
}

/** `./A/B` for `A/B`: TNDS paths are canonical. */
function canonicalTarget(uri: string): string {
  if (uri === "." || uri.startsWith("./")) return uri;
  return `./${uri}`;
}

function mergeMeta(outer: Meta | undefined, inner: Meta | undefined): Meta | undefined {
  if (outer === undefined) return inner;
  if (inner === undefined) return outer;
  return { ...outer, ...inner };
}

function leafInput(data: Data | undefined, meta: Meta | undefined): LeafInput | TreeStatus {
  const format = meta?.format?.trim();
  if (format !== undefined && !isFormat(format)) {
    return { status: StatusCode.UnsupportedMediaType, reason: `unknown format ${format.slice(0, 20)}` };
  }
  const type = meta?.type?.trim();
  if (data === undefined) {
    return { ...(format !== undefined && { format }), ...(type !== undefined && { type }) };
  }
  const v = leafValue(data, format);
  if ("status" in v) return v;
  return {
    ...(v.format !== undefined && { format: v.format }),
    ...(type !== undefined && { type }),
    value: v.value,
  };
}

/**
 * The stored form of an Item's Data: `b64` arrives as Base64 text and is stored as bytes with
 * Format `bin` (TND 1.2: b64 is a transfer encoding); OPAQUE bytes stay bytes.
 */
function leafValue(
  data: Data,
  format: string | undefined,
): { format?: NodeFormat; value: NodeValue } | TreeStatus {
  if (data.kind === "element")
    return { status: StatusCode.UnsupportedMediaType, reason: "structured Data on a leaf" };
  if (format === "b64") {
    const textValue = data.kind === "text" ? data.text : Buffer.from(data.bytes).toString("latin1");
    const clean = textValue.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 === 1) {
      return { status: StatusCode.BadRequest, reason: "Data is not Base64" };
    }
    return { format: "bin", value: new Uint8Array(Buffer.from(clean, "base64")) };
  }
  if (data.kind === "opaque")
    return { format: format === undefined ? "bin" : (format as NodeFormat), value: data.bytes };
  return format === undefined ? { value: data.text } : { format: format as NodeFormat, value: data.text };
}

function isFormat(f: string): f is NodeFormat {
  return (NODE_FORMATS as readonly string[]).includes(f);
}

/** A Results Item for a node: bytes as OPAQUE `bin` in WBXML, as `b64` text in XML. */
function nodeItem(node: TreeNode, uri: string, encoding: Encoding, withData: boolean): Item {
  const meta: { format: string; type?: string } = { format: node.format };
  if (node.type !== undefined) meta.type = node.type;
  let data: Data | undefined;
  if (withData && node.value !== undefined) {
    if (typeof node.value === "string") data = text(node.value);
    else if (encoding === "wbxml") data = { kind: "opaque", bytes: node.value };
    else {
      meta.format = "b64";
      data = text(Buffer.from(node.value).toString("base64"));
    }
  } else if (withData && node.format !== "node" && node.secret !== true) data = text("");
  return { source: { locUri: uri }, meta, ...(data !== undefined && { data }) };
}

function text(t: string): Data {
  return { kind: "text", text: t };
}

function status(ctx: ExecutorContext, command: Command, code: number, item?: Item): StatusCommand {
  const target = item?.target?.locUri;
  const source = item?.source?.locUri;
  return {
    kind: "Status",
    cmdId: ctx.nextCmdId(),
    msgRef: ctx.msgId,
    cmdRef: command.cmdId,
    cmd: command.kind,
    targetRefs: target === undefined ? [] : [target],
    sourceRefs: source === undefined || command.kind === "Get" ? [] : [source],
    data: String(code),
    items: [],
  };
}
