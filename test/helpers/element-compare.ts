/**
 * Compares generic element trees (src/syncml/element.ts) from different producers (our codec,
 * libwbxml) in a form where only meaningful differences remain:
 * - whitespace-only text beside element children (indentation) is dropped; text in a leaf, even
 *   whitespace, is kept;
 * - OPAQUE bytes that are UTF-8 text become text: libwbxml writes some Data as OPAQUE and prints it
 *   back as CDATA, which is the same character data; other bytes (binary, a nested WBXML document)
 *   stay bytes, compared as hex;
 * - adjacent text pieces are joined.
 * `assertElementsEqual` names the first difference by its path, e.g. `/SyncML/SyncBody/Replace[2]/Item[1]/Data`.
 */
import { AssertionError } from "node:assert";
import { isElement, type Element, type Node } from "../../src/syncml/element.js";
import type { Command, Item, SyncMLMessage } from "../../src/syncml/model.js";

export interface ComparableElement {
  readonly name: string;
  readonly namespace: string;
  readonly children: readonly ComparableNode[];
}

/** Text, or OPAQUE bytes that are not text (as lowercase hex). */
export type ComparableNode = ComparableElement | string | { readonly opaqueHex: string };

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// eslint-disable-next-line no-control-regex -- C0 controls other than TAB, LF and CR are what we look for
const NOT_XML_TEXT = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/**
 * The text `bytes` hold, or undefined when they are not UTF-8 or hold characters XML text cannot
 * (NUL and other C0 controls): such bytes never came from XML character data, so they stay bytes.
 */
export function textOrUndefined(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    return undefined;
  }
  return NOT_XML_TEXT.test(text) ? undefined : text;
}

export function normaliseElement(el: Element): ComparableElement {
  const joined: ComparableNode[] = [];
  for (const child of el.children) {
    const node = normaliseNode(child);
    const last = joined[joined.length - 1];
    if (typeof node === "string" && typeof last === "string") joined[joined.length - 1] = last + node;
    else joined.push(node);
  }
  const hasElements = joined.some(isComparableElement);
  const children = joined.filter(
    (c) => typeof c !== "string" || (c.length > 0 && !(hasElements && isBlank(c))),
  );
  return { name: el.name, namespace: el.namespace, children };
}

function normaliseNode(node: Node): ComparableNode {
  if (typeof node === "string") return node;
  if (node instanceof Uint8Array)
    return textOrUndefined(node) ?? { opaqueHex: Buffer.from(node).toString("hex") };
  if (isElement(node)) return normaliseElement(node);
  throw new TypeError("unexpected node");
}

function isComparableElement(node: ComparableNode): node is ComparableElement {
  return typeof node === "object" && "name" in node;
}

function isBlank(text: string): boolean {
  return /^[ \t\r\n]*$/.test(text);
}

/**
 * Asserts that two element trees are equal after `normaliseElement`. The failure message names the
 * path of the first difference and what differs there.
 */
export function assertElementsEqual(actual: Element, expected: Element, message?: string): void {
  const a = normaliseElement(actual);
  const e = normaliseElement(expected);
  const diff = firstDifference(a, e, `/${e.name}`);
  if (diff === undefined) return;
  throw new AssertionError({
    message: `${message === undefined ? "" : `${message}: `}element trees differ at ${diff}`,
    actual: a,
    expected: e,
    operator: "assertElementsEqual",
  });
}

function firstDifference(a: ComparableElement, e: ComparableElement, at: string): string | undefined {
  if (a.name !== e.name || a.namespace !== e.namespace) {
    return `${at}: element <${a.name}> in "${a.namespace}", expected <${e.name}> in "${e.namespace}"`;
  }
  const seen = new Map<string, number>();
  const n = Math.max(a.children.length, e.children.length);
  for (let i = 0; i < n; i++) {
    const ac = a.children[i];
    const ec = e.children[i];
    const label = ec === undefined ? undefined : describeStep(ec, seen);
    const here = label === undefined ? `${at}/(child ${i + 1})` : `${at}/${label}`;
    if (ac === undefined) return `${here}: missing ${describe(ec)}`;
    if (ec === undefined) return `${here}: unexpected ${describe(ac)}`;
    if (isComparableElement(ec)) {
      if (!isComparableElement(ac)) return `${here}: found ${describe(ac)}, expected ${describe(ec)}`;
      const deeper = firstDifference(ac, ec, here);
      if (deeper !== undefined) return deeper;
    } else if (JSON.stringify(ac) !== JSON.stringify(ec)) {
      return `${here}: found ${describe(ac)}, expected ${describe(ec)}`;
    }
  }
  return undefined;
}

/** `Name[k]` (k counts same-named siblings from 1) for an element, `text()` or `opaque()` otherwise. */
function describeStep(node: ComparableNode, seen: Map<string, number>): string {
  if (!isComparableElement(node)) return typeof node === "string" ? "text()" : "opaque()";
  const k = (seen.get(node.name) ?? 0) + 1;
  seen.set(node.name, k);
  return `${node.name}[${k}]`;
}

function describe(node: ComparableNode | undefined): string {
  if (node === undefined) return "nothing";
  if (typeof node === "string") return `text ${JSON.stringify(node)}`;
  if (isComparableElement(node)) return `element <${node.name}>`;
  return `opaque 0x${node.opaqueHex}`;
}

/**
 * The message with every OPAQUE Item Data that is text (see `textOrUndefined`) turned into text
 * Data. libwbxml's encoder writes the Data of Add/Replace Items as OPAQUE (see the interop test),
 * which our decoder rightly keeps as `opaque`; the XML form of the same message gives `text`.
 * Nothing else changes.
 */
export function opaqueDataAsText(message: SyncMLMessage): SyncMLMessage {
  return { ...message, body: { ...message.body, commands: message.body.commands.map(commandDataAsText) } };
}

function commandDataAsText(c: Command): Command {
  switch (c.kind) {
    case "Atomic":
    case "Sequence":
      return { ...c, commands: c.commands.map(commandDataAsText) };
    case "Add":
    case "Alert":
    case "Copy":
    case "Delete":
    case "Exec":
    case "Get":
    case "Replace":
    case "Results":
    case "Status":
      return { ...c, items: c.items.map(itemDataAsText) };
  }
}

function itemDataAsText(item: Item): Item {
  if (item.data?.kind !== "opaque") return item;
  const text = textOrUndefined(item.data.bytes);
  return text === undefined ? item : { ...item, data: { kind: "text", text } };
}
