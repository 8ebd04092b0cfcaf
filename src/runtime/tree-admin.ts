/**
 * A local administrator's write of a leaf (`dmgw tree set`), shared by the CLI's offline mode (the
 * database file, no service running) and the control socket's `tree.set` (through the running
 * service's tree), so both behave the same: no ACL, a missing node is created (a standard MO's
 * secret stays secret), a computed node (./DMGW) or an interior node is refused.
 *
 * Outcomes are values: a bad URI or value, or a node that cannot take it, is not a gateway failure.
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import { standardPolicyFor } from "../mo/standard.js";
import { NodeFlag, type NodeSpec } from "../tree/plugin.js";
import { ROOT_ID, type NodeRow } from "../tree/store.js";
import type { DmTree } from "../tree/tree.js";
import { NODE_FORMATS, type NodeFormat, type NodeValue, type UriLimits } from "../tree/types.js";
import { parseUri } from "../tree/uri.js";

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

export type SetOutcome =
  | { readonly ok: true; readonly path: string }
  /** `input`: the URI or the value is malformed; `conflict`: the node cannot take a value. */
  | { readonly ok: false; readonly kind: "input" | "conflict"; readonly message: string };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The settable format named `text`; undefined when it is not one. */
export function settableFormat(text: string): SettableFormat | undefined {
  return SETTABLE_FORMATS.find((f) => f === text);
}

/**
 * Sets the leaf at `uri` to `valueText` (Base64 for b64/bin), in one transaction. A missing node is
 * created with `format` (chr by default); an existing one keeps its format unless `format` is given.
 */
export function setLeaf(
  tree: DmTree,
  uri: string,
  valueText: string,
  format: SettableFormat | undefined,
  limits: UriLimits = tree.uriLimits,
): SetOutcome {
  const parsed = parseUri(uri, limits);
  if (!parsed.ok) return input(`invalid URI "${uri}": ${parsed.reason}`);
  if (parsed.uri.query !== undefined) {
    return input(`URI "${uri}" has a query: give a node URI (no ?prop= or ?list=)`);
  }
  const { path, segments } = parsed.uri;
  return tree.transaction((): SetOutcome => {
    if (segments.length === 0) return conflict("the root is an interior node: it has no value");
    const { row, deepest } = locate(tree, segments);
    let nodeFormat: NodeFormat;
    let policy: { secret?: boolean; access?: number } | undefined;
    if (row !== undefined) {
      const current = NODE_FORMATS[row.format] ?? "chr";
      if (current === "node") return conflict(`${path} is an interior node: it has no value`);
      if ((row.flags & NodeFlag.Dynamic) !== 0)
        return conflict(`${path} is computed by its MO: it cannot be set`);
      nodeFormat = format ?? current;
    } else {
      if (NODE_FORMATS[deepest.format] !== "node")
        return conflict(`${path} cannot be created: an ancestor is a leaf`);
      nodeFormat = format ?? "chr";
      // A node the standard MOs keep secret stays secret when the gateway creates it.
      policy = standardPolicyFor(segments);
    }
    const value = parseValue(nodeFormat, valueText);
    if (!value.ok) return value;
    const spec: NodeSpec = {
      path,
      format: value.format,
      value: value.value,
      ...(policy?.secret === true && { secret: true }),
      ...(policy?.access !== undefined && { access: policy.access }),
    };
    tree.write(spec);
    return { ok: true, path };
  });
}

/** The node's row (undefined when missing) and the deepest existing row on the way. */
function locate(tree: DmTree, segments: readonly string[]): { row: NodeRow | undefined; deepest: NodeRow } {
  const root = tree.store.nodeById(ROOT_ID);
  if (root === undefined) throw new GatewayError("the tree has no root node", ErrorCode.Store_Corrupt);
  let current = root;
  for (const name of segments) {
    const next = tree.store.child(current.id, name);
    if (next === undefined) return { row: undefined, deepest: current };
    current = next;
  }
  return { row: current, deepest: current };
}

/**
 * The stored form of a command-line value, as a server's Replace would store it: `b64` and `bin` take
 * Base64 and are stored as bytes with Format bin (TND 7.7.2: b64 is a transfer encoding); int, bool,
 * float and null are checked as the tree checks them.
 */
function parseValue(
  format: NodeFormat,
  text: string,
): { ok: true; format: NodeFormat; value: NodeValue } | { ok: false; kind: "input"; message: string } {
  switch (format) {
    case "b64":
    case "bin": {
      const compact = text.replace(/\s+/g, "");
      if (!BASE64.test(compact)) return input(`a ${format} value is given as Base64; "${text}" is not`);
      return { ok: true, format: "bin", value: Buffer.from(compact, "base64") };
    }
    case "int":
      if (!/^[+-]?\d+$/.test(text.trim())) return input(`"${text}" is not an int`);
      return { ok: true, format, value: text };
    case "bool":
      if (!/^(true|false)$/i.test(text.trim())) return input(`"${text}" is not a bool (true or false)`);
      return { ok: true, format, value: text };
    case "float":
      if (text.trim() === "" || !Number.isFinite(Number(text))) return input(`"${text}" is not a float`);
      return { ok: true, format, value: text };
    case "null":
      if (text !== "") return input("a null node has no value");
      return { ok: true, format, value: "" };
    case "node":
      return input("an interior node has no value");
    case "chr":
    case "date":
    case "time":
    case "xml":
      return { ok: true, format, value: text };
  }
}

function input(message: string): { ok: false; kind: "input"; message: string } {
  return { ok: false, kind: "input", message };
}

function conflict(message: string): SetOutcome {
  return { ok: false, kind: "conflict", message };
}
