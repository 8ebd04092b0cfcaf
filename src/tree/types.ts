/**
 * Shared vocabulary of the DM management tree (OMA DM 1.2 TND; protocol.md 3.10).
 */

/** Node formats (TND 1.2 section 7.x, the Format property). `node` marks an interior node. */
export const NODE_FORMATS = [
  "b64",
  "bin",
  "bool",
  "chr",
  "int",
  "float",
  "date",
  "time",
  "null",
  "xml",
  "node",
] as const;
export type NodeFormat = (typeof NODE_FORMATS)[number];

/** The DM commands an ACL can grant (there is no Copy entry: Copy needs Get + Add/Replace). */
export const ACL_COMMANDS = ["Add", "Delete", "Exec", "Get", "Replace"] as const;
export type AclCommand = (typeof ACL_COMMANDS)[number];

/** The properties of a node addressed with `?prop=` (TND 1.2 section 7). */
export const NODE_PROPERTIES = ["ACL", "Format", "Name", "Size", "Title", "TStamp", "Type", "VerNo"] as const;
export type NodeProperty = (typeof NODE_PROPERTIES)[number];

/** The tree exchange forms of `Get <uri>?list=` (TND 1.2 section 10). */
export type ListKind = "Struct" | "StructData" | "TNDS";

/** Published URI limits (`./DevDetail/URI/MaxDepth|MaxTotLen|MaxSegLen`); 0 = unlimited. */
export interface UriLimits {
  readonly maxDepth: number;
  readonly maxTotLen: number;
  readonly maxSegLen: number;
}

/** A leaf value as stored: text for text formats, bytes for `bin` (and `b64` once decoded). */
export type NodeValue = string | Uint8Array;
