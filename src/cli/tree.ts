/**
 * `dmgw tree get|set|list|export`: the management tree, read and written as the gateway itself (no
 * ACL). While the service runs, through its control socket (design.md section 6: the CLI reads
 * nothing behind the service's back); with `--db FILE`, or when no service answers on the default
 * socket, straight from the SQLite file (offline mode, for a stopped gateway).
 *
 * Secret nodes (AAuthSecret, AAuthData) are never printed, in any format: `<secret>` in text, no
 * value and `"secret": true` in JSON, no Value in TNDS. The database is opened with `create: false`,
 * so a wrong path never leaves a new file behind. Output is written only once the command succeeded.
 */
import { statSync } from "node:fs";
import { resolvePaths } from "../config/paths.js";
import { ErrorCode, GatewayError, isGatewayError } from "../core/errors.js";
import type { WireNode } from "../runtime/control-api.js";
import { wireNode } from "../runtime/control-api.js";
import { connectControl, type ControlConnection, type ControlEnv } from "../runtime/control-client.js";
import { setLeaf, settableFormat, SETTABLE_FORMATS, type SettableFormat } from "../runtime/tree-admin.js";
import { NodeFlag } from "../tree/plugin.js";
import { ROOT_ID, Store, type NodeRow } from "../tree/store.js";
import { nodesToTnds, tndsToXml } from "../tree/tnds.js";
import { DmTree, treeNodeToTnds, type TreeNode } from "../tree/tree.js";
import { NODE_FORMATS } from "../tree/types.js";
import { childPath, parseUri } from "../tree/uri.js";
import { parseCliArgs, usageError, type OptionSpec } from "./args.js";
import { socketPath } from "./control.js";
import { ExitCode } from "./exit-codes.js";
import type { Output } from "./io.js";

export { SETTABLE_FORMATS, type SettableFormat } from "../runtime/tree-admin.js";

/** Exit status of a command the tree refused: no such node, or a node that cannot take the value. */
export const EXIT_TREE_REFUSED = 1;

export const TREE_USAGE = `usage: dmgw tree get URI [--db FILE | --socket PATH] [--json]
       dmgw tree set URI VALUE [--format ${SETTABLE_FORMATS.join("|")}] [--db FILE | --socket PATH]
       dmgw tree list URI [--depth N] [--db FILE | --socket PATH] [--json]
       dmgw tree export URI --tnds [--db FILE | --socket PATH] [--json]
  --socket   the running service's control socket (default $DMGW_DATA/runtime/dmgw.sock, else
             $RUNTIME_DIRECTORY/dmgw.sock, else /run/dmgw/dmgw.sock); the tree is the service's
  --db       offline: the database file itself (default, when no service answers on the default
             socket: $DMGW_DATA/state/dmgw.db, else $STATE_DIRECTORY/dmgw.db); never created
  get        a leaf's value, or an interior node's child names, one per line
  set        a leaf's value; a missing node is created (format chr unless --format), an existing one
             keeps its format unless --format; b64 and bin take Base64 and store bytes (Format bin)
  list       path, format and value of the node and its descendants, one line each (tab-separated,
             control characters escaped, bytes as b64:BASE64); --depth 0 is the node alone
  export     the subtree as TNDS XML (application/vnd.syncml.dmtnds+xml)
  --json     get: an object, list: an array, export: {contentType, tnds}; bytes as {"base64": ...}
  secret values are never printed: <secret> in text, "secret": true in JSON, no Value in TNDS
  exit: 0 done, 1 no such node or the node cannot take the value, 64 usage (also a bad URI or value),
        65 the database is corrupt or not dmgw's, 66 the database does not exist, 74 it cannot be used,
        69 --socket given and no service answers on it`;

/** The properties `export --tnds` writes: those TNDS 1.2 section 9.2.1 allows in a file, and Value. */
const EXPORT_PROPERTIES = ["ACL", "Format", "Title", "TStamp", "Type", "VerNo", "Value"] as const;
const NO_LIMITS = { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 } as const;
const SECRET_TEXT = "<secret>";

/** The environment variables that locate the default database and control socket. */
export interface TreeCliEnv extends ControlEnv {
  readonly DMGW_DATA?: string | undefined;
  readonly STATE_DIRECTORY?: string | undefined;
}

/**
 * Runs `dmgw tree ARGS`. Returns the exit status; a failure of the database, the service or the tree
 * is one line on stderr (`dmgw: ...`) and nothing on stdout.
 *
 * @throws GatewayError(Cli_Usage) for a bad command line (the caller prints it and exits 64).
 */
export async function runTree(
  args: readonly string[],
  stdout: Output,
  stderr: Output,
  env: TreeCliEnv = process.env,
): Promise<number> {
  try {
    stdout.write(await treeCommand(args, env));
    return ExitCode.Ok;
  } catch (e) {
    const status = isGatewayError(e) ? exitStatusOf(e.code) : undefined;
    if (status === undefined || !isGatewayError(e)) throw e;
    stderr.write(`dmgw: ${e.message}\n`);
    return status;
  }
}

/** The GatewayErrors this command reports itself, and their exit statuses (sysexits). */
const EXIT_STATUS: ReadonlyMap<ErrorCode, number> = new Map([
  [ErrorCode.Store_Missing, ExitCode.NoInput],
  [ErrorCode.Store_Corrupt, ExitCode.DataError],
  [ErrorCode.Store_Foreign, ExitCode.DataError],
  [ErrorCode.Store_TooNew, ExitCode.DataError],
  [ErrorCode.Store_Unavailable, ExitCode.IoError],
  [ErrorCode.Tree_NotFound, EXIT_TREE_REFUSED],
  [ErrorCode.Tree_Conflict, EXIT_TREE_REFUSED],
  // Through the service: the same outcomes, under the control socket's codes.
  [ErrorCode.Control_NotFound, EXIT_TREE_REFUSED],
  [ErrorCode.Control_Refused, EXIT_TREE_REFUSED],
  [ErrorCode.Control_BadRequest, ExitCode.Usage],
  [ErrorCode.Control_Unavailable, ExitCode.Unavailable],
  [ErrorCode.Control_Protocol, ExitCode.Unavailable],
]);

/** The exit status of a GatewayError this command reports itself; undefined for the caller's. */
export function exitStatusOf(code: ErrorCode): number | undefined {
  return EXIT_STATUS.get(code);
}

/** Where the command reads and writes: the running service, or the database file. */
interface TreeBackend {
  get(uri: string): Promise<WireNode>;
  list(uri: string, depth: number): Promise<WireNode[]>;
  set(uri: string, value: string, format: SettableFormat | undefined): Promise<void>;
  close(): void;
}

/** Runs the command and returns what goes to stdout. */
async function treeCommand(args: readonly string[], env: TreeCliEnv): Promise<string> {
  const [verb, ...rest] = args;
  const where = { db: { type: "string" }, socket: { type: "string" }, json: { type: "boolean" } } as const;
  switch (verb) {
    case "get": {
      const { values, positionals } = parse(rest, where);
      const [uri] = exactly(positionals, ["URI"]);
      return withBackend(values, env, async (b) => renderGet(await b.get(uri), values.json === true));
    }
    case "set": {
      const { values, positionals } = parse(rest, { ...where, format: { type: "string" } });
      const format = settableFormatOption(values.format);
      // `set URI --format null` needs no VALUE.
      const [uri, value] =
        format === "null" && positionals.length === 1
          ? [positionals[0] ?? "", ""]
          : exactly(positionals, ["URI", "VALUE"]);
      return withBackend(values, env, async (b) => {
        await b.set(uri, value, format);
        return "";
      });
    }
    case "list": {
      const { values, positionals } = parse(rest, { ...where, depth: { type: "string" } });
      const [uri] = exactly(positionals, ["URI"]);
      const depth = depthOption(values.depth);
      return withBackend(values, env, async (b) =>
        renderList(await b.list(uri, depth), values.json === true),
      );
    }
    case "export": {
      const { values, positionals } = parse(rest, { ...where, tnds: { type: "boolean" } });
      const [uri] = exactly(positionals, ["URI"]);
      if (values.tnds !== true) throw usage("export needs --tnds (the only export format so far)");
      return withBackend(values, env, (b) => exportTnds(b, uri, values.json === true));
    }
    case "help":
    case "--help":
    case "-h":
      return `${TREE_USAGE}\n`;
    case undefined:
      throw usage("missing subcommand");
    default:
      throw usage(`unknown subcommand "${verb}"`);
  }
}

/**
 * `--db FILE`: the file, offline. Otherwise the running service through the control socket
 * (`--socket`, else the default path); when no service answers there and no `--socket` was given,
 * the default database file (a stopped gateway's tree).
 */
async function withBackend(
  where: { readonly db?: string | undefined; readonly socket?: string | undefined },
  env: TreeCliEnv,
  fn: (backend: TreeBackend) => Promise<string>,
): Promise<string> {
  if (where.db !== undefined && where.socket !== undefined) {
    throw usage("give --db FILE (offline) or --socket PATH (the service), not both");
  }
  if (where.db !== undefined) return fn(fileBackend(dbPath(where.db, env)));
  const path = socketPath(where.socket, env);
  let connection: ControlConnection;
  try {
    connection = await connectControl(path);
  } catch (e) {
    // No service: the file is the tree (only when nothing runs, not when the socket refused us).
    const why = isGatewayError(e, ErrorCode.Control_Unavailable) ? e.context?.["reason"] : undefined;
    if (where.socket !== undefined || (why !== "ENOENT" && why !== "ECONNREFUSED")) throw e;
    return fn(fileBackend(dbPath(undefined, env)));
  }
  const backend = socketBackend(connection);
  try {
    return await fn(backend);
  } finally {
    backend.close();
  }
}

function socketBackend(c: ControlConnection): TreeBackend {
  // The service is ours: its answers have the shapes control-api.ts gives them.
  return {
    get: async (uri) => (await c.request("tree.get", { uri })) as WireNode,
    list: async (uri, depth) =>
      (await c.request("tree.list", { uri, ...(Number.isFinite(depth) && { depth }) })) as WireNode[],
    set: async (uri, value, format) => {
      await c.request("tree.set", { uri, value, ...(format !== undefined && { format }) });
    },
    close: () => {
      c.close();
    },
  };
}

/** The database file, opened for each call (never created) and closed after it. */
function fileBackend(path: string): TreeBackend {
  return {
    get: (uri) =>
      Promise.resolve(
        withTree(path, (tree) => {
          const { path: at, row } = existing(tree, uri);
          const node = wireOf(show(tree, at, row, 0));
          const children = node.format === "node" ? tree.store.childNames(row.id) : undefined;
          return { ...node, ...(children !== undefined && { children }) };
        }),
      ),
    list: (uri, depth) => Promise.resolve(withTree(path, (tree) => subtree(tree, uri, depth).map(wireOf))),
    set: (uri, value, format) => {
      withTree(path, (tree) => {
        const outcome = setLeaf(tree, uri, value, format, NO_LIMITS);
        if (outcome.ok) return;
        if (outcome.kind === "input") throw lineError(outcome.message);
        throw new GatewayError(outcome.message, ErrorCode.Tree_Conflict, { context: { uri } });
      });
      return Promise.resolve();
    },
    close: () => undefined,
  };
}

// ---------------------------------------------------------------- the database

/**
 * `--db`, else the service's database as config/paths.ts places it: `$DMGW_DATA/state/dmgw.db`, else
 * `$STATE_DIRECTORY/dmgw.db` (its first path, as systemd sets it); with neither set, a usage error.
 */
function dbPath(option: string | undefined, env: TreeCliEnv): string {
  if (option !== undefined) {
    if (option === "") throw usage("--db needs a file name");
    return option;
  }
  const data = env.DMGW_DATA !== undefined && env.DMGW_DATA !== "";
  const state = env.STATE_DIRECTORY?.split(":")[0];
  if (!data && (state === undefined || state === "")) {
    throw usage("no database: give --db FILE, or set DMGW_DATA or STATE_DIRECTORY");
  }
  return resolvePaths({ DMGW_DATA: env.DMGW_DATA, STATE_DIRECTORY: env.STATE_DIRECTORY }).db;
}

/**
 * Opens the database (never creating it), runs `fn` on its tree and closes it. An empty file is
 * refused here, because Store.open (rightly, for the service's first start) takes it as a new
 * database and would turn it into one; a directory gets a plainer message than EISDIR.
 */
function withTree<T>(path: string, fn: (tree: DmTree) => T): T {
  let size: number | undefined;
  try {
    const st = statSync(path);
    if (!st.isFile()) {
      throw new GatewayError(`database ${path} is not a file`, ErrorCode.Store_Unavailable, {
        context: { path },
      });
    }
    size = st.size;
  } catch (e) {
    if (isGatewayError(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") {
      throw new GatewayError(
        `cannot open database ${path}: ${code ?? String(e)}`,
        ErrorCode.Store_Unavailable,
        {
          cause: e,
          context: { path },
        },
      );
    }
    // Missing: Store.open says so (Store_Missing) without creating it.
  }
  if (size === 0) {
    throw new GatewayError(`database ${path} is empty, not a dmgw database`, ErrorCode.Store_Corrupt, {
      context: { path },
    });
  }
  const store = Store.open(path, { create: false });
  try {
    return fn(new DmTree(store));
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------- reading

/** A node as the CLI shows it: the tree's view, with a secret value removed. */
interface Shown {
  readonly node: TreeNode;
  readonly secret: boolean;
  readonly depth: number;
}

interface Located {
  readonly path: string;
  readonly segments: readonly string[];
  readonly row: NodeRow | undefined;
  /** The deepest existing row on the way (the node's own when it exists). */
  readonly deepest: NodeRow;
}

/** A node URI of the command line (no `?prop=`/`?list=`), in canonical form. */
function nodeUri(text: string): { path: string; segments: readonly string[] } {
  const parsed = parseUri(text, NO_LIMITS);
  if (!parsed.ok) throw lineError(`invalid URI "${text}": ${parsed.reason}`);
  if (parsed.uri.query !== undefined) {
    throw lineError(`URI "${text}" has a query: give a node URI (no ?prop= or ?list=)`);
  }
  return parsed.uri;
}

function locate(tree: DmTree, text: string): Located {
  const { path, segments } = nodeUri(text);
  const root = tree.store.nodeById(ROOT_ID);
  if (root === undefined) {
    throw new GatewayError(`database ${tree.store.path} has no root node`, ErrorCode.Store_Corrupt, {
      context: { path: tree.store.path },
    });
  }
  let current = root;
  for (const name of segments) {
    const next = tree.store.child(current.id, name);
    if (next === undefined) return { path, segments, row: undefined, deepest: current };
    current = next;
  }
  return { path, segments, row: current, deepest: current };
}

function existing(tree: DmTree, text: string): Located & { row: NodeRow } {
  const located = locate(tree, text);
  if (located.row === undefined) {
    throw new GatewayError(`${located.path} not found`, ErrorCode.Tree_NotFound, {
      context: { path: located.path },
    });
  }
  return { ...located, row: located.row };
}

function show(tree: DmTree, path: string, row: NodeRow, depth: number): Shown {
  const node = tree.read(path);
  if (node === undefined) throw new GatewayError(`${path} not found`, ErrorCode.Tree_NotFound);
  const secret = (row.flags & NodeFlag.Secret) !== 0;
  if (!secret) return { node, secret, depth };
  // Drop the value and its size: even a secret's length is not for the terminal.
  const hidden: TreeNode = {
    path: node.path,
    name: node.name,
    format: node.format,
    ...(node.type !== undefined && { type: node.type }),
    ...(node.acl !== undefined && { acl: node.acl }),
    ...(node.title !== undefined && { title: node.title }),
    ...(node.tstamp !== undefined && { tstamp: node.tstamp }),
    ...(node.verNo !== undefined && { verNo: node.verNo }),
  };
  return { node: hidden, secret, depth };
}

/** The node at `text` and its descendants down to `maxDepth` levels below it, parents first. */
function subtree(tree: DmTree, text: string, maxDepth: number): Shown[] {
  const top = existing(tree, text);
  const out = [show(tree, top.path, top.row, 0)];
  const seen = new Map<number, { path: string; depth: number }>([[top.row.id, { path: top.path, depth: 0 }]]);
  if (maxDepth === 0 || NODE_FORMATS[top.row.format] !== "node") return out;
  for (const row of tree.store.subtree(top.row.id)) {
    const parent = seen.get(row.parent);
    if (parent === undefined || parent.depth >= maxDepth) continue;
    const at = { path: childPath(parent.path, row.name), depth: parent.depth + 1 };
    seen.set(row.id, at);
    out.push(show(tree, at.path, row, at.depth));
  }
  return out;
}

/** A node as both modes give it to the renderers (the offline one through the same converter). */
function wireOf(shown: Shown): WireNode {
  return wireNode(shown.secret ? { ...shown.node, secret: true } : shown.node);
}

function renderGet(node: WireNode, json: boolean): string {
  if (json) return toJson(node);
  if (node.children !== undefined) return node.children.map((c) => `${c}\n`).join("");
  if (node.secret === true) return `${SECRET_TEXT}\n`;
  const value = node.value;
  return `${value === undefined ? "" : typeof value === "string" ? value : `b64:${value.base64}`}\n`;
}

function renderList(nodes: readonly WireNode[], json: boolean): string {
  if (json) return toJson(nodes);
  return nodes.map(listLine).join("");
}

function listLine(n: WireNode): string {
  if (n.format === "node") return `${n.path}\t${n.format}\n`;
  const value = n.value;
  const text =
    n.secret === true
      ? SECRET_TEXT
      : value === undefined
        ? ""
        : typeof value === "string"
          ? escapeLine(value)
          : `b64:${value.base64}`;
  return `${n.path}\t${n.format}\t${text}\n`;
}

async function exportTnds(backend: TreeBackend, text: string, json: boolean): Promise<string> {
  const shown = await backend.list(text, Number.POSITIVE_INFINITY);
  const top = shown[0];
  // The root itself has no NodeName in TNDS: exporting `.` needs at least one node below it.
  if (top === undefined || (top.path === "." && shown.length === 1)) {
    throw new GatewayError("the tree is empty: nothing to export", ErrorCode.Tree_NotFound);
  }
  const nodes = shown.map((n) => treeNodeToTnds(treeNodeOf(n)));
  const man = await chrValue(backend, "./DevInfo/Man");
  const mod = await chrValue(backend, "./DevInfo/Mod");
  const doc = nodesToTnds(nodes, {
    rootPath: top.path,
    props: { mode: "+", names: EXPORT_PROPERTIES },
    ...(man !== undefined && { man }),
    ...(mod !== undefined && { mod }),
  });
  const xml = Buffer.from(tndsToXml(doc, { indent: "  " })).toString("utf8");
  if (json) return toJson({ contentType: "application/vnd.syncml.dmtnds+xml", tnds: xml });
  return xml.endsWith("\n") ? xml : `${xml}\n`;
}

/** A wire node back as the tree's node (for TNDS); a secret has no value to carry. */
function treeNodeOf(n: WireNode): TreeNode {
  const value = n.value;
  return {
    path: n.path,
    name: n.name,
    format: NODE_FORMATS.find((f) => f === n.format) ?? "chr",
    ...(n.type !== undefined && { type: n.type }),
    ...(value !== undefined && {
      value: typeof value === "string" ? value : new Uint8Array(Buffer.from(value.base64, "base64")),
    }),
    ...(n.acl !== undefined && { acl: n.acl }),
    ...(n.title !== undefined && { title: n.title }),
    ...(n.tstamp !== undefined && { tstamp: n.tstamp }),
    ...(n.verNo !== undefined && { verNo: n.verNo }),
    ...(n.size !== undefined && { size: n.size }),
  };
}

async function chrValue(backend: TreeBackend, path: string): Promise<string | undefined> {
  try {
    const node = await backend.get(path);
    return node.format === "chr" && typeof node.value === "string" ? node.value : undefined;
  } catch (e) {
    if (isGatewayError(e, ErrorCode.Tree_NotFound) || isGatewayError(e, ErrorCode.Control_NotFound))
      return undefined;
    throw e;
  }
}

// ---------------------------------------------------------------- helpers

function parse<T extends OptionSpec>(
  args: readonly string[],
  options: T,
): ReturnType<typeof parseCliArgs<T>> {
  return parseCliArgs(args, options, TREE_USAGE);
}

function exactly<const N extends readonly string[]>(
  positionals: readonly string[],
  names: N,
): { [K in keyof N]: string } {
  if (positionals.length !== names.length) {
    throw usage(`expected ${names.join(" ")}, got ${positionals.length} argument(s)`);
  }
  // Same length as `names`, so each entry is a string.
  return positionals as unknown as { [K in keyof N]: string };
}

function settableFormatOption(text: string | undefined): SettableFormat | undefined {
  if (text === undefined) return undefined;
  const format = settableFormat(text);
  if (format === undefined) throw usage(`--format must be one of ${SETTABLE_FORMATS.join(", ")}`);
  return format;
}

function depthOption(text: string | undefined): number {
  if (text === undefined) return Number.POSITIVE_INFINITY;
  if (!/^\d+$/.test(text))
    throw usage(`--depth takes a number of levels (0 = the node alone), not "${text}"`);
  return Number(text);
}

function escapeLine(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this escapes
  return text.replace(/[\\\u0000-\u001f\u007f]/g, (c) => {
    switch (c) {
      case "\\":
        return "\\\\";
      case "\n":
        return "\\n";
      case "\r":
        return "\\r";
      case "\t":
        return "\\t";
      default:
        return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
    }
  });
}

function toJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function usage(message: string, cause?: unknown): GatewayError {
  return usageError(message, TREE_USAGE, cause);
}

/** A bad URI or value on the command line: exit 64 like a usage error, but one line. */
function lineError(message: string): GatewayError {
  return new GatewayError(message, ErrorCode.Cli_Usage);
}
