/**
 * The generic element tree both wire formats decode into and encode from. It sits between the bytes
 * and the typed model (`model.ts`): XML and WBXML only have to agree on this tree, and the mapping to
 * SyncML commands is written once (`message-from-element.ts`, `message-to-element.ts`).
 *
 * Children are elements, text (`string`, adjacent pieces already joined) or WBXML OPAQUE bytes.
 */
export interface Element {
  readonly name: string;
  /** Namespace URI: from xmlns in XML, from the code page in WBXML. */
  readonly namespace: string;
  readonly children: Node[];
}
export type Node = Element | string | Uint8Array;

export function isElement(node: Node): node is Element {
  return typeof node === "object" && !(node instanceof Uint8Array);
}

/** Bounds every decoder enforces, so hostile input costs bounded time and memory. */
export interface DecodeLimits {
  /** Largest accepted input, in bytes. */
  readonly maxBytes: number;
  /** Deepest element nesting (SyncML root = 1). */
  readonly maxDepth: number;
  /** Most elements in one document, nested documents included. */
  readonly maxElements: number;
}

/**
 * Defaults sized for a gateway: a DM message is bounded by MaxMsgSize (typically 8-64 KB; large
 * objects are chunked), TNDS nesting stays well under 64 levels.
 */
export const DEFAULT_LIMITS: DecodeLimits = {
  maxBytes: 4 * 1024 * 1024,
  maxDepth: 64,
  maxElements: 200_000,
};
