/**
 * `dmgw tree get|set|list|export`: the management tree of a dmgw database, read and written as the
 * gateway itself (no ACL), straight from the SQLite file until the control socket exists (issue #8).
 *
 * Secret nodes (AAuthSecret, AAuthData) are never printed, in any format: `<secret>` in text, no
 * value and `"secret": true` in JSON, no Value in TNDS. The database is opened with `create: false`,
 * so a wrong path never leaves a new file behind. Output is written only once the command succeeded.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, GatewayError, isGatewayError } from "../core/errors.js";
import { standardPolicyFor } from "../mo/standard.js";
import { NodeFlag, type NodeSpec } from "../tree/plugin.js";
import { ROOT_ID, Store, type NodeRow } from "../tree/store.js";
import { nodesToTnds, tndsToXml } from "../tree/tnds.js";
import { DmTree, treeNodeToTnds, type TreeNode } from "../tree/tree.js";
import { NODE_FORMATS, type NodeFormat, type NodeValue } from "../tree/types.js";
import { childPath, parseUri } from "../tree/uri.js";
import { parseCliArgs, usageError, type OptionSpec } from "./args.js";
import { ExitCode } from "./exit-codes.js";
import type { Output } from "./io.js";

/** Exit status of a command the tree refused: no such node, or a node that cannot take the value. */
export const EXIT_TREE_REFUSED = 1;

export const SETTABLE_FORMATS = [
  "chr",
  "int",
  "bool",
  "b64",
  "bin",
  "float",
  "date",
  "time",
  "xml",
  "null",
] as const;
export type SettableFormat = (typeof SETTABLE_FORMATS)[number];

export const TREE_USAGE = `usage: dmgw tree get URI [--db FILE] [--json]
       dmgw tree set URI VALUE [--format ${SETTABLE_FORMATS.join("|")}] [--db FILE]
       dmgw tree list URI [--depth N] [--db FILE] [--json]
       dmgw tree export URI --tnds [--db FILE] [--json]
  --db       the database (default $DMGW_DATA/dmgw.db, else $STATE_DIRECTORY/dmgw.db); never created
  get        a leaf's value, or an interior node's child names, one per line
  set        a leaf's value; a missing node is created (format chr unless --format), an existing one
             keeps its format unless --format; b64 and bin take Base64 and store bytes (Format bin)
  list       path, format and value of the node and its descendants, one line each (tab-separated,
             control characters escaped, bytes as b64:BASE64); --depth 0 is the node alone
  export     the subtree as TNDS XML (application/vnd.syncml.dmtnds+xml)
  --json     get: an object, list: an array, export: {contentType, tnds}; bytes as {"base64": ...}
  secret values are never printed: <secret> in text, "secret": true in JSON, no Value in TNDS
  exit: 0 done, 1 no such node or the node cannot take the value, 64 usage (also a bad URI or value),
        65 the database is corrupt or not dmgw's, 66 the database does not exist, 74 it cannot be used`;

/** The properties `export --tnds` writes: those TNDS 1.2 section 9.2.1 allows in a file, and Value. */
const EXPORT_PROPERTIES = ["ACL", "Format", "Title", "TStamp", "Type", "VerNo", "Value"] as const;
const NO_LIMITS = { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 } as const;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const SECRET_TEXT = "<secret>";

/** The environment variables that locate the default database. */
export interface TreeCliEnv {
  readonly DMGW_DATA?: string | undefined;
  readonly STATE_DIRECTORY?: string | undefined;
}

/**
 * Runs `dmgw tree ARGS`. Returns the exit status; a failure of the database or the tree is one line
 * on stderr (`dmgw: ...`) and nothing on stdout.
 *
 * @throws GatewayError(Cli_Usage) for a bad command line (the caller prints it and exits 64).
 */
export function runTree(
  args: readonly string[],
  stdout: Output,
  stderr: Output,
  env: TreeCliEnv = process.env,
): number {
  try {
    stdout.write(treeCommand(args, env));
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
]);

/** The exit status of a GatewayError this command reports itself; undefined for the caller's. */
export function exitStatusOf(code: ErrorCode): number | undefined {
  return EXIT_STATUS.get(code);
}

/** Runs the command and returns what goes to stdout. */
function treeCommand(args: readonly string[], env: TreeCliEnv): string {
  const [verb, ...rest] = args;
  switch (verb) {
    case "get": {
      const { values, positionals } = parse(rest, { db: { type: "string" }, json: { type: "boolean" } });
      const [uri] = exactly(positionals, ["URI"]);
      return withTree(dbPath(values.db, env), (tree) => get(tree, uri, values.json === true));
    }
    case "set": {
      const { values, positionals } = parse(rest, {
        db: { type: "string" },
        json: { type: "boolean" },
        format: { type: "string" },
      });
      const format = settableFormat(values.format);
      // `set URI --format null` needs no VALUE.
      const [uri, value] =
        format === "null" && positionals.length === 1
          ? [positionals[0] ?? "", ""]
          : exactly(positionals, ["URI", "VALUE"]);
      return withTree(dbPath(values.db, env), (tree) => {
        set(tree, uri, value, format);
        return "";
      });
    }
    case "list": {
      const { values, positionals } = parse(rest, {
        db: { type: "string" },
        json: { type: "boolean" },
        depth: { type: "string" },
      });
      const [uri] = exactly(positionals, ["URI"]);
      const depth = depthOption(values.depth);
      return withTree(dbPath(values.db, env), (tree) => list(tree, uri, depth, values.json === true));
    }
    case "export": {
      const { values, positionals } = parse(rest, {
        db: { type: "string" },
        json: { type: "boolean" },
        tnds: { type: "boolean" },
      });
      const [uri] = exactly(positionals, ["URI"]);
      if (values.tnds !== true) throw usage("export needs --tnds (the only export format so far)");
      return withTree(dbPath(values.db, env), (tree) => exportTnds(tree, uri, values.json === true));
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

// ---------------------------------------------------------------- the database

/** `--db`, else `$DMGW_DATA/dmgw.db`, else `$STATE_DIRECTORY/dmgw.db` (its first path, as systemd sets it). */
function dbPath(option: string | undefined, env: TreeCliEnv): string {
  if (option !== undefined) {
    if (option === "") throw usage("--db needs a file name");
    return option;
  }
  if (env.DMGW_DATA !== undefined && env.DMGW_DATA !== "") return join(env.DMGW_DATA, "dmgw.db");
  const state = env.STATE_DIRECTORY?.split(":")[0];
  if (state !== undefined && state !== "") return join(state, "dmgw.db");
  throw usage("no database: give --db FILE, or set DMGW_DATA or STATE_DIRECTORY");
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

function get(tree: DmTree, text: string, json: boolean): string {
  const { path, row } = existing(tree, text);
  const shown = show(tree, path, row, 0);
  const interior = shown.node.format === "node";
  const children = interior ? tree.store.childNames(row.id) : undefined;
  if (json) return toJson({ ...jsonNode(shown), ...(children !== undefined && { children }) });
  if (children !== undefined) return children.map((c) => `${c}\n`).join("");
  if (shown.secret) return `${SECRET_TEXT}\n`;
  const value = shown.node.value;
  return `${value === undefined ? "" : typeof value === "string" ? value : `b64:${base64(value)}`}\n`;
}

function list(tree: DmTree, text: string, maxDepth: number, json: boolean): string {
  const nodes = subtree(tree, text, maxDepth);
  if (json) return toJson(nodes.map(jsonNode));
  return nodes.map(listLine).join("");
}

function listLine(shown: Shown): string {
  const { path, format, value } = shown.node;
  if (format === "node") return `${path}\t${format}\n`;
  const text = shown.secret
    ? SECRET_TEXT
    : value === undefined
      ? ""
      : typeof value === "string"
        ? escapeLine(value)
        : `b64:${base64(value)}`;
  return `${path}\t${format}\t${text}\n`;
}

function exportTnds(tree: DmTree, text: string, json: boolean): string {
  const shown = subtree(tree, text, Number.POSITIVE_INFINITY);
  const top = shown[0];
  // The root itself has no NodeName in TNDS: exporting `.` needs at least one node below it.
  if (top === undefined || (top.node.path === "." && shown.length === 1)) {
    throw new GatewayError("the tree is empty: nothing to export", ErrorCode.Tree_NotFound);
  }
  const nodes = shown.map((s) => treeNodeToTnds(s.node));
  const man = chrValue(tree, "./DevInfo/Man");
  const mod = chrValue(tree, "./DevInfo/Mod");
  const doc = nodesToTnds(nodes, {
    rootPath: top.node.path,
    props: { mode: "+", names: EXPORT_PROPERTIES },
    ...(man !== undefined && { man }),
    ...(mod !== undefined && { mod }),
  });
  const xml = Buffer.from(tndsToXml(doc, { indent: "  " })).toString("utf8");
  if (json) return toJson({ contentType: "application/vnd.syncml.dmtnds+xml", tnds: xml });
  return xml.endsWith("\n") ? xml : `${xml}\n`;
}

function chrValue(tree: DmTree, path: string): string | undefined {
  const node = tree.read(path);
  return node?.format === "chr" && typeof node.value === "string" ? node.value : undefined;
}

function jsonNode(shown: Shown): Record<string, unknown> {
  const n = shown.node;
  return {
    path: n.path,
    name: n.name,
    format: n.format,
    ...(n.type !== undefined && { type: n.type }),
    ...(n.format !== "node" && !shown.secret && n.value !== undefined && { value: n.value }),
    ...(shown.secret && { secret: true }),
    ...(n.acl !== undefined && { acl: n.acl }),
    ...(n.title !== undefined && { title: n.title }),
    ...(n.tstamp !== undefined && { tstamp: n.tstamp }),
    ...(n.verNo !== undefined && { verNo: n.verNo }),
    ...(n.size !== undefined && { size: n.size }),
  };
}

// ---------------------------------------------------------------- writing

function set(tree: DmTree, text: string, valueText: string, formatOption: SettableFormat | undefined): void {
  tree.transaction(() => {
    const { path, segments, row, deepest } = locate(tree, text);
    if (segments.length === 0) throw conflict(".", "the root is an interior node: it has no value");
    let format: NodeFormat;
    let policy: { secret?: boolean; access?: number } | undefined;
    if (row !== undefined) {
      const current = NODE_FORMATS[row.format] ?? "chr";
      if (current === "node") throw conflict(path, `${path} is an interior node: it has no value`);
      if ((row.flags & NodeFlag.Dynamic) !== 0) {
        throw conflict(path, `${path} is computed by its MO: it cannot be set`);
      }
      format = formatOption ?? current;
    } else {
      if (NODE_FORMATS[deepest.format] !== "node") {
        throw conflict(path, `${path} cannot be created: an ancestor is a leaf`);
      }
      format = formatOption ?? "chr";
      // A node the standard MOs keep secret stays secret when the gateway creates it.
      policy = standardPolicyFor(segments);
    }
    const value = parseValue(format, valueText);
    const spec: NodeSpec = {
      path,
      format: value.format,
      value: value.value,
      ...(policy?.secret === true && { secret: true }),
      ...(policy?.access !== undefined && { access: policy.access }),
    };
    tree.write(spec);
  });
}

/**
 * The stored form of a command-line value, as a server's Replace would store it: `b64` and `bin` take
 * Base64 and are stored as bytes with Format bin (TND 7.7.2: b64 is a transfer encoding); int, bool,
 * float and null are checked as the tree checks them.
 */
function parseValue(format: NodeFormat, text: string): { format: NodeFormat; value: NodeValue } {
  switch (format) {
    case "b64":
    case "bin": {
      const compact = text.replace(/\s+/g, "");
      if (!BASE64.test(compact)) throw lineError(`a ${format} value is given as Base64; "${text}" is not`);
      return { format: "bin", value: Buffer.from(compact, "base64") };
    }
    case "int":
      if (!/^[+-]?\d+$/.test(text.trim())) throw lineError(`"${text}" is not an int`);
      return { format, value: text };
    case "bool":
      if (!/^(true|false)$/i.test(text.trim())) throw lineError(`"${text}" is not a bool (true or false)`);
      return { format, value: text };
    case "float":
      if (text.trim() === "" || !Number.isFinite(Number(text))) throw lineError(`"${text}" is not a float`);
      return { format, value: text };
    case "null":
      if (text !== "") throw lineError("a null node has no value");
      return { format, value: "" };
    case "node":
      throw lineError("an interior node has no value");
    case "chr":
    case "date":
    case "time":
    case "xml":
      return { format, value: text };
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

function settableFormat(text: string | undefined): SettableFormat | undefined {
  if (text === undefined) return undefined;
  const format = SETTABLE_FORMATS.find((f) => f === text);
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

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function toJson(value: unknown): string {
  return `${JSON.stringify(value, jsonBytes, 2)}\n`;
}

/** JSON.stringify replacer: bytes as `{ "base64": ... }` (as `dmgw codec decode --json` shows them). */
function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { base64: base64(value) } : value;
}

function usage(message: string, cause?: unknown): GatewayError {
  return usageError(message, TREE_USAGE, cause);
}

/** A bad URI or value on the command line: exit 64 like a usage error, but one line. */
function lineError(message: string): GatewayError {
  return new GatewayError(message, ErrorCode.Cli_Usage);
}

function conflict(path: string, message: string): GatewayError {
  return new GatewayError(message, ErrorCode.Tree_Conflict, { context: { path } });
}
