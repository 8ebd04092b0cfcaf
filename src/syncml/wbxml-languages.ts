/**
 * The WBXML document languages dmgw reads and writes, built once from the token tables of
 * `wbxml-tables.ts` with the lookups both directions need.
 */
import * as tables from "./wbxml-tables.js";

export interface WbxmlLanguage {
  readonly name: string;
  /** Registered numeric public id; undefined when the FPI must travel in the string table. */
  readonly publicId: number | undefined;
  readonly fpi: string;
  readonly rootElement: string;
  /** Code pages by page number. */
  readonly pages: readonly ({ readonly namespace: string } | undefined)[];
  /** Tag names by page number, then token (0x05..0x3F). */
  readonly byToken: readonly (readonly (string | undefined)[] | undefined)[];
  /** The page and token of a tag, by namespace and name. */
  tagFor(namespace: string, name: string): { readonly page: number; readonly token: number } | undefined;
}

function build(table: tables.WbxmlLanguage): WbxmlLanguage {
  const pages: ({ namespace: string } | undefined)[] = [];
  const byToken: (string | undefined)[][] = [];
  const byNamespace = new Map<string, { page: number; tags: Map<string, number> }>();
  for (const cp of table.pages) {
    pages[cp.page] = { namespace: cp.namespace };
    const tokens: (string | undefined)[] = new Array<string | undefined>(64).fill(undefined);
    const tags = new Map<string, number>();
    for (const [name, token] of Object.entries(cp.tags)) {
      tokens[token] = name;
      tags.set(name, token);
    }
    byToken[cp.page] = tokens;
    byNamespace.set(cp.namespace, { page: cp.page, tags });
  }
  return {
    name: table.name,
    publicId: table.publicId,
    fpi: table.fpi,
    rootElement: table.rootElement,
    pages,
    byToken,
    tagFor(namespace, name) {
      const cp = byNamespace.get(namespace);
      const token = cp?.tags.get(name);
      return cp === undefined || token === undefined ? undefined : { page: cp.page, token };
    },
  };
}

export const SYNCML_12 = build(tables.SYNCML12);
export const SYNCML_11 = build(tables.SYNCML11);
export const DEVINF_12 = build(tables.DEVINF12);
export const DEVINF_11 = build(tables.DEVINF11);
export const DMDDF_12 = build(tables.DMDDF12);

const ALL = [SYNCML_12, SYNCML_11, DEVINF_12, DEVINF_11, DMDDF_12] as const;

export function languageByPublicId(id: number): WbxmlLanguage | undefined {
  return ALL.find((l) => l.publicId === id);
}

/** Matches a literal public id; real stacks differ in case and spacing, so compare loosely. */
export function languageByFpi(fpi: string): WbxmlLanguage | undefined {
  const norm = (s: string): string => s.replace(/\s+/g, " ").trim().toLowerCase();
  const want = norm(fpi);
  return ALL.find((l) => norm(l.fpi) === want);
}
