/**
 * fast-check arbitraries for valid SyncML DM messages (src/syncml/model.ts), built so that a message
 * survives encode -> decode unchanged in the wire formats it is meant for:
 *
 * - optional fields are absent, never `undefined`-valued (exactOptionalPropertyTypes);
 * - flags (`noResp`, `moreData`, `sharedMem`, `fieldLevel`) are `true` or absent; `body.final` is a boolean;
 * - `emi`, when present, holds at least one value (an empty list has no wire form);
 * - records have Object.prototype (fast-check may otherwise make null-prototype objects, which
 *   deepStrictEqual tells apart from what the decoder builds);
 * - `opaque` Data only when the message is meant for WBXML alone (the XML encoder refuses binary);
 * - `element` Data is a TNDS MgmtTree, with Meta Type `application/vnd.syncml.dmtnds+xml`, another
 *   Meta or none (in WBXML the nested document names itself by its FPI); its leaves hold any text,
 *   white space alone included, but no white space sits between its elements (that is layout, which
 *   the decoder drops);
 * - Meta Types are never an embedded type spelled otherwise (` ...dmtnds+xml `, `...dmtnds+wbxml`):
 *   WBXML normalises those (see the pending tests in codec-roundtrip.property.test.ts).
 * - SyncML 1.1 in WBXML has no token for Correlator (SyncML page 0) or FieldLevel (MetInf page 1), so
 *   1.1 messages meant for WBXML carry neither.
 *
 * Text is any string XML can carry, with the characters that stress escaping (`&`, `<`, `>`, `]]>`,
 * CR, CRLF, leading/trailing white space, U+FEFF, astral code points) much likelier than chance.
 */
import fc from "fast-check";
import { MIME_TNDS_XML, NS_DMDDF_12 } from "../../src/syncml/constants.js";
import type { Element } from "../../src/syncml/element.js";
import type {
  AlertCommand,
  Chal,
  Command,
  ContainerCommand,
  Cred,
  Data,
  ExecCommand,
  Item,
  ItemCommand,
  Location,
  Meta,
  ResultsCommand,
  StatusCommand,
  SyncHdr,
  SyncMLMessage,
  SyncMLVersion,
  XmlElement,
  XmlNode,
} from "../../src/syncml/model.js";
import { DMDDF12_PAGE2 } from "../../src/syncml/wbxml-tables.js";

/** The wire formats a generated message must round-trip through. */
export type ArbitraryTarget = "xml" | "wbxml" | "both";

export interface MessageArbitraryOptions {
  /** Default "both": no opaque Data and nothing SyncML 1.1 WBXML cannot carry. */
  readonly target?: ArbitraryTarget;
  /** Default: either version. */
  readonly version?: SyncMLVersion;
  /** Deepest Atomic/Sequence nesting (0 = none). Default 2. */
  readonly maxContainerDepth?: number;
  /**
   * Whether a text value may start with U+FEFF. Default true. (A decoder that reads strings with a
   * default TextDecoder strips it: the option exists to isolate such a bug, not to hide it.)
   */
  readonly leadingBom?: boolean;
}

// ---- text ----

/** Characters and sequences that stress XML escaping and the WBXML string forms. */
const SPECIAL_PIECES = [
  "&",
  "<",
  ">",
  "]]>",
  "\r",
  "\n",
  "\r\n",
  "\t",
  " ",
  "  ",
  '"',
  "'",
  "&amp;",
  "&#13;",
  "&lt;",
  "&foo;",
  "<![CDATA[",
  "<!--",
  "-->",
  "<?",
  "?>",
  "MAXDT=15&DR=1",
  "\u007f",
  "\u0085",
  "\u00a0",
  "\u00e9",
  "\u2028",
  "\u20ac",
  "\ud7ff",
  "\ue000",
  "\ufeff",
  "\ufffd",
  "\u{1f600}",
  "\u{10ffff}",
] as const;

function isXmlCodePoint(cp: number): boolean {
  if (cp < 0x20) return cp === 0x09 || cp === 0x0a || cp === 0x0d;
  if (cp >= 0xd800 && cp <= 0xdfff) return false;
  return cp !== 0xfffe && cp !== 0xffff && cp <= 0x10ffff;
}

/** One unit of text: a single code point XML can carry, or a short stressing sequence. */
export const xmlTextUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIAL_PIECES) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 0x80, max: 0xffff })
      .filter(isXmlCodePoint)
      .map((c) => String.fromCodePoint(c)),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
);

/** Any string XML can carry (empty included). */
export function xmlText(
  options: { readonly maxLength?: number; readonly leadingBom?: boolean } = {},
): fc.Arbitrary<string> {
  const text = fc.oneof(
    { weight: 8, arbitrary: fc.string({ unit: xmlTextUnit, maxLength: options.maxLength ?? 12 }) },
    { weight: 1, arbitrary: fc.constantFrom("", " ", "\n", "\r\n", " \t x \r\n", "1.2", "./DevInfo/Mod") },
  );
  return options.leadingBom === false ? text.filter((s) => !s.startsWith("\ufeff")) : text;
}

/** Every code point of `s` is one XML 1.0 can carry (no C0 controls but TAB/LF/CR, no U+FFFE/U+FFFF, no lone surrogates). */
export function isXmlText(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const cp = s.codePointAt(i) ?? 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return false; // a surrogate codePointAt did not pair: lone
    if (!isXmlCodePoint(cp)) return false;
    if (cp > 0xffff) i++;
  }
  return true;
}

// ---- TNDS (element Data) ----

const DMDDF_TAGS: ReadonlySet<string> = new Set(Object.keys(DMDDF12_PAGE2.tags));

function ddf(name: string, children: readonly XmlNode[]): XmlElement {
  if (!DMDDF_TAGS.has(name)) throw new Error(`<${name}> is not on the DM DDF 1.2 WBXML code page`);
  return { name, namespace: NS_DMDDF_12, children };
}

/** Text inside a TNDS leaf: empty (no child at all, as the decoder gives it) or any text. */
function ddfLeafText(leadingBom: boolean): fc.Arbitrary<readonly XmlNode[]> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant([]) },
    {
      weight: 6,
      arbitrary: xmlText({ leadingBom })
        .filter((t) => t.length > 0)
        .map((t) => [t]),
    },
  );
}

function ddfLeaf(name: string, leadingBom: boolean): fc.Arbitrary<XmlElement> {
  return ddfLeafText(leadingBom).map((children) => ddf(name, children));
}

const DF_FORMATS = [
  "b64",
  "bin",
  "bool",
  "chr",
  "int",
  "node",
  "null",
  "xml",
  "date",
  "time",
  "float",
] as const;
const ACCESS_TYPES = ["Add", "Copy", "Delete", "Exec", "Get", "Replace"] as const;

function ddfNode(depth: number, leadingBom: boolean): fc.Arbitrary<XmlElement> {
  const rtProperties = fc
    .record(
      {
        access: fc.subarray([...ACCESS_TYPES]),
        format: fc.constantFrom(...DF_FORMATS),
        type: fc.option(ddfLeaf("MIME", leadingBom), { nil: undefined }),
      },
      { noNullPrototype: true },
    )
    .map(({ access, format, type }) =>
      ddf("RTProperties", [
        ...(access.length > 0
          ? [
              ddf(
                "AccessType",
                access.map((a) => ddf(a, [])),
              ),
            ]
          : []),
        ddf("Format", [ddf(format, [])]),
        ...(type === undefined ? [] : [ddf("Type", [type])]),
      ]),
    );
  const content: fc.Arbitrary<readonly XmlElement[]> =
    depth <= 0
      ? fc.option(ddfLeaf("Value", leadingBom), { nil: undefined }).map((v) => (v === undefined ? [] : [v]))
      : fc.oneof(
          fc
            .option(ddfLeaf("Value", leadingBom), { nil: undefined })
            .map((v) => (v === undefined ? [] : [v])),
          fc.array(ddfNode(depth - 1, leadingBom), { maxLength: 2 }),
        );
  return fc
    .tuple(
      ddfLeaf("NodeName", leadingBom),
      fc.option(ddfLeaf("Path", leadingBom), { nil: undefined }),
      fc.option(rtProperties, { nil: undefined }),
      content,
    )
    .map(([name, path, rt, rest]) =>
      ddf("Node", [name, ...(path === undefined ? [] : [path]), ...(rt === undefined ? [] : [rt]), ...rest]),
    );
}

/** A small TNDS `MgmtTree` (namespace syncml:dmddf1.2), only with tags of the DM DDF WBXML code page. */
export function tndsTree(options: { readonly leadingBom?: boolean } = {}): fc.Arbitrary<XmlElement> {
  const bom = options.leadingBom ?? true;
  return fc
    .tuple(
      fc.option(ddfLeaf("Man", bom), { nil: undefined }),
      fc.option(ddfLeaf("Mod", bom), { nil: undefined }),
      fc.array(ddfNode(2, bom), { minLength: 1, maxLength: 3 }),
    )
    .map(([man, mod, nodes]) =>
      ddf("MgmtTree", [
        ddf("VerDTD", ["1.2"]),
        ...(man === undefined ? [] : [man]),
        ...(mod === undefined ? [] : [mod]),
        ...nodes,
      ]),
    );
}

// ---- the message ----

interface Ctx {
  readonly target: ArbitraryTarget;
  readonly version: SyncMLVersion;
  readonly text: fc.Arbitrary<string>;
  readonly leadingBom: boolean;
}

/** SyncML 1.1 WBXML has no Correlator or FieldLevel token. */
function wbxml11(ctx: Ctx): boolean {
  return ctx.version === "1.1" && ctx.target !== "xml";
}

/** The keys of T that are optional. */
type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
/** The keys of T that are required. */
type RequiredKeys<T> = Exclude<keyof T, OptionalKeys<T>>;

/**
 * A record of T: required keys always present, optional keys present or absent (never undefined),
 * Object.prototype always (deepStrictEqual compares prototypes).
 */
function record<T extends object>(
  model: { readonly [K in keyof T]-?: fc.Arbitrary<Exclude<T[K], undefined>> },
  requiredKeys: readonly RequiredKeys<T>[],
): fc.Arbitrary<T> {
  // fast-check's own typing of optional keys cannot express "absent, never undefined": cast once here.
  const untyped: Record<string, fc.Arbitrary<unknown>> = model;
  const keys: string[] = requiredKeys.filter((k): k is RequiredKeys<T> & string => typeof k === "string");
  return fc.record(untyped, { requiredKeys: keys, noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

/** `o` without `key` (the key absent, not undefined). */
function omit<T extends object, K extends keyof T>(o: T, key: K): Omit<T, K> {
  const out = { ...o };
  Reflect.deleteProperty(out, key);
  return out;
}

/** The embedded document types of src/syncml, both forms; only the canonical `+xml` spellings pass. */
const EMBEDDED_TYPE_FORMS: ReadonlySet<string> = new Set(
  ["dmtnds", "dmddf"]
    .flatMap((t) => [`application/vnd.syncml.${t}+xml`, `application/vnd.syncml.${t}+wbxml`])
    .concat(["application/vnd.syncml-devinf+xml", "application/vnd.syncml-devinf+wbxml"]),
);

function isOtherSpellingOfEmbeddedType(type: string): boolean {
  return (
    EMBEDDED_TYPE_FORMS.has(type.trim().toLowerCase()) &&
    !(EMBEDDED_TYPE_FORMS.has(type) && type.endsWith("+xml"))
  );
}

function metaArb(ctx: Ctx): fc.Arbitrary<Meta> {
  const t = ctx.text;
  const meta = record<Meta>(
    {
      format: t,
      type: fc.oneof(
        { weight: 9, arbitrary: t.filter((x) => !isOtherSpellingOfEmbeddedType(x)) },
        {
          weight: 1,
          arbitrary: fc.constantFrom(MIME_TNDS_XML, "application/vnd.syncml-devinf+xml", "text/plain"),
        },
      ),
      mark: t,
      size: t,
      anchor: record<NonNullable<Meta["anchor"]>>({ last: t, next: t }, []),
      version: t,
      nextNonce: t,
      maxMsgSize: t,
      maxObjSize: t,
      emi: fc.array(t, { minLength: 1, maxLength: 3 }),
      mem: record<NonNullable<Meta["mem"]>>({ sharedMem: fc.constant(true), freeMem: t, freeId: t }, []),
      fieldLevel: fc.constant(true),
    },
    [],
  );
  return wbxml11(ctx) ? meta.map((m) => omit(m, "fieldLevel")) : meta;
}

function locationArb(ctx: Ctx): fc.Arbitrary<Location> {
  return record<Location>({ locUri: ctx.text, locName: ctx.text }, ["locUri"]);
}

function credArb(ctx: Ctx): fc.Arbitrary<Cred> {
  return record<Cred>({ meta: metaArb(ctx), data: ctx.text }, ["data"]);
}

function chalArb(ctx: Ctx): fc.Arbitrary<Chal> {
  return record<Chal>({ meta: metaArb(ctx) }, ["meta"]);
}

function itemArb(ctx: Ctx): fc.Arbitrary<Item> {
  const text: fc.Arbitrary<Data> = fc
    .string({ unit: xmlTextUnit, maxLength: 40 })
    .filter((s) => ctx.leadingBom || !s.startsWith("\ufeff"))
    .map((s) => ({ kind: "text", text: s }));
  const opaque: fc.Arbitrary<Data> = fc
    .uint8Array({ maxLength: 24 })
    .map((bytes) => ({ kind: "opaque", bytes }));
  const plainData = ctx.target === "wbxml" ? fc.oneof(text, opaque) : text;
  const plain = record<Item>(
    {
      target: locationArb(ctx),
      source: locationArb(ctx),
      meta: metaArb(ctx),
      data: plainData,
      moreData: fc.constant(true),
    },
    [],
  );
  const element = fc
    .tuple(
      record<Omit<Item, "meta" | "data">>(
        { target: locationArb(ctx), source: locationArb(ctx), moreData: fc.constant(true) },
        [],
      ),
      fc.option(metaArb(ctx), { nil: undefined }),
      fc.boolean(),
      tndsTree({ leadingBom: ctx.leadingBom }),
    )
    .map(([rest, meta, typed, tree]): Item => ({
      ...rest,
      ...(meta !== undefined && { meta: typed ? { ...meta, type: MIME_TNDS_XML } : meta }),
      data: { kind: "element", element: tree },
    }));
  return fc.oneof({ weight: 4, arbitrary: plain }, { weight: 1, arbitrary: element });
}

function itemsArb(ctx: Ctx): fc.Arbitrary<Item[]> {
  return fc.array(itemArb(ctx), { maxLength: 2 });
}

function refsArb(ctx: Ctx): fc.Arbitrary<string[]> {
  return fc.array(ctx.text, { maxLength: 2 });
}

function commandArb(ctx: Ctx, depth: number): fc.Arbitrary<Command> {
  const t = ctx.text;
  const noResp = fc.constant(true as const);
  const itemCommand: fc.Arbitrary<Command> = fc
    .tuple(
      fc.constantFrom("Add", "Copy", "Delete", "Get", "Replace"),
      record<Omit<ItemCommand, "kind">>(
        { cmdId: t, noResp, cred: credArb(ctx), meta: metaArb(ctx), items: itemsArb(ctx) },
        ["cmdId", "items"],
      ),
    )
    .map(([kind, rest]) => ({ kind, ...rest }));
  const alert: fc.Arbitrary<AlertCommand> = record<Omit<AlertCommand, "kind">>(
    {
      cmdId: t,
      noResp,
      cred: credArb(ctx),
      data: fc.oneof(t, fc.constantFrom("1200", "1201", "1222", "1223", "1226", "1100")),
      correlator: t,
      items: itemsArb(ctx),
    },
    ["cmdId", "items"],
  ).map((rest) => ({ kind: "Alert", ...rest }));
  const exec: fc.Arbitrary<ExecCommand> = record<Omit<ExecCommand, "kind">>(
    { cmdId: t, noResp, cred: credArb(ctx), meta: metaArb(ctx), correlator: t, items: itemsArb(ctx) },
    ["cmdId", "items"],
  ).map((rest) => ({ kind: "Exec", ...rest }));
  const status: fc.Arbitrary<Command> = record<Omit<StatusCommand, "kind">>(
    {
      cmdId: t,
      msgRef: t,
      cmdRef: t,
      cmd: fc.oneof(t, fc.constantFrom("SyncHdr", "Get", "Replace", "Alert", "Exec")),
      targetRefs: refsArb(ctx),
      sourceRefs: refsArb(ctx),
      cred: credArb(ctx),
      chal: chalArb(ctx),
      data: fc.oneof(t, fc.constantFrom("200", "212", "401", "404", "500")),
      items: itemsArb(ctx),
    },
    ["cmdId", "msgRef", "cmdRef", "cmd", "targetRefs", "sourceRefs", "data", "items"],
  ).map((rest) => ({ kind: "Status", ...rest }));
  const results: fc.Arbitrary<Command> = record<Omit<ResultsCommand, "kind">>(
    {
      cmdId: t,
      msgRef: t,
      cmdRef: t,
      meta: metaArb(ctx),
      targetRefs: refsArb(ctx),
      sourceRefs: refsArb(ctx),
      items: itemsArb(ctx),
    },
    ["cmdId", "cmdRef", "targetRefs", "sourceRefs", "items"],
  ).map((rest) => ({ kind: "Results", ...rest }));
  const noCorrelator = wbxml11(ctx);
  const leaves: fc.Arbitrary<Command>[] = [
    itemCommand,
    noCorrelator ? alert.map((c) => omit(c, "correlator")) : alert,
    noCorrelator ? exec.map((c) => omit(c, "correlator")) : exec,
    status,
    results,
  ];
  if (depth <= 0) return fc.oneof(...leaves);
  const container: fc.Arbitrary<Command> = fc
    .tuple(
      fc.constantFrom("Atomic", "Sequence"),
      record<Omit<ContainerCommand, "kind">>(
        {
          cmdId: t,
          noResp,
          meta: metaArb(ctx),
          commands: fc.array(commandArb(ctx, depth - 1), { maxLength: 3 }),
        },
        ["cmdId", "commands"],
      ),
    )
    .map(([kind, rest]) => ({ kind, ...rest }));
  return fc.oneof({ weight: 5, arbitrary: fc.oneof(...leaves) }, { weight: 1, arbitrary: container });
}

function hdrArb(ctx: Ctx): fc.Arbitrary<SyncHdr> {
  const t = ctx.text;
  return record<Omit<SyncHdr, "verDTD" | "verProto">>(
    {
      sessionId: t,
      msgId: t,
      target: locationArb(ctx),
      source: locationArb(ctx),
      respUri: t,
      noResp: fc.constant(true),
      cred: credArb(ctx),
      meta: metaArb(ctx),
    },
    ["sessionId", "msgId", "target", "source"],
  ).map((rest) => ({ verDTD: ctx.version, verProto: ctx.version === "1.1" ? "DM/1.1" : "DM/1.2", ...rest }));
}

function messageOfVersion(
  target: ArbitraryTarget,
  version: SyncMLVersion,
  options: MessageArbitraryOptions,
): fc.Arbitrary<SyncMLMessage> {
  const leadingBom = options.leadingBom ?? true;
  const ctx: Ctx = { target, version, text: xmlText({ leadingBom }), leadingBom };
  return fc
    .tuple(
      hdrArb(ctx),
      fc.array(commandArb(ctx, options.maxContainerDepth ?? 2), { maxLength: 4 }),
      fc.boolean(),
    )
    .map(([hdr, commands, final]) => ({ version, hdr, body: { commands, final } }));
}

/** A valid SyncML DM message that round-trips through `options.target` (default: both formats). */
export function syncMLMessage(options: MessageArbitraryOptions = {}): fc.Arbitrary<SyncMLMessage> {
  const target = options.target ?? "both";
  if (options.version !== undefined) return messageOfVersion(target, options.version, options);
  return fc.oneof(messageOfVersion(target, "1.2", options), messageOfVersion(target, "1.1", options));
}

// ---- XML spellings ----

/**
 * An element tree written as XML in one of the many ways that mean the same document, chosen by
 * `seed`: namespaces by default declaration or by prefix (new, reused or shadowing), declared where
 * used or higher up, redundant declarations; text escaped, as character references or in CDATA
 * sections; comments, processing instructions and layout white space where they carry no content;
 * MetInf elements sometimes wrapped in <MetInf>; `<X/>` or `<X></X>`; with or without an XML
 * declaration, a DOCTYPE and a UTF-8 BOM. Every spelling must decode to the same model.
 */
export function xmlSpelling(root: Element, seed: number): Uint8Array {
  let state = seed >>> 0 || 1;
  const rand = (): number => {
    // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x100000000;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
  const out: string[] = [];
  if (rand() < 0.2) out.push("\ufeff");
  if (rand() < 0.7)
    out.push(
      pick([
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<?xml version='1.0'?>",
        '<?xml version="1.0" encoding="utf-8" standalone="yes"?>',
      ]),
    );
  if (rand() < 0.3) out.push(pick(["\n", "\r\n", ""]));
  if (rand() < 0.3) {
    out.push(
      '<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" "http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd">',
    );
  }
  const quote = (v: string): string => (rand() < 0.5 ? `"${escapeXml(v, true)}"` : `'${escapeXml(v, true)}'`);
  const layout = (): string =>
    pick(["", "", " ", "\n  ", "\r\n", "\t", "<!-- layout -->", "<?pi data?>", "\n<!---->\n"]);

  const write = (el: Element, defaultNs: string, prefixes: ReadonlyMap<string, string>): void => {
    const decls: string[] = [];
    let name = el.name;
    let nextDefault = defaultNs;
    const nextPrefixes = new Map(prefixes);
    const bound = [...prefixes].filter(([, ns]) => ns === el.namespace).map(([p]) => p);
    const r = rand();
    if (el.namespace === defaultNs && r < 0.6) {
      // inherit the default namespace
    } else if (bound.length > 0 && r < 0.8) {
      name = `${pick(bound)}:${el.name}`;
    } else if (r < 0.9) {
      decls.push(` xmlns=${quote(el.namespace)}`);
      nextDefault = el.namespace;
    } else {
      const p = pick(["m", "s", "a", "SyncML", "x1", "_p"]);
      decls.push(` xmlns:${p}=${quote(el.namespace)}`);
      nextPrefixes.set(p, el.namespace);
      name = `${p}:${el.name}`;
    }
    if (rand() < 0.1) decls.push(` xmlns:unused=${quote("urn:unused")}`);
    // A redundant redeclaration of the default namespace in force.
    if (!name.includes(":") && decls.length === 0 && nextDefault !== "" && rand() < 0.05)
      decls.push(` xmlns=${quote(nextDefault)}`);
    const children = el.children;
    if (children.length === 0) {
      out.push(rand() < 0.5 ? `<${name}${decls.join("")}/>` : `<${name}${decls.join("")}></${name}>`);
      return;
    }
    out.push(`<${name}${decls.join("")}>`);
    const structured = children.every((c) => typeof c !== "string" && !(c instanceof Uint8Array));
    // MetInf children may sit in a <MetInf> wrapper (same namespace).
    const wrap = el.name === "Meta" && structured && rand() < 0.2;
    if (wrap) out.push(`<MetInf xmlns="syncml:metinf">`);
    for (const c of children) {
      if (structured) out.push(layout());
      if (typeof c === "string") writeText(c);
      else if (c instanceof Uint8Array) throw new Error("XML has no spelling for OPAQUE bytes");
      else write(c, wrap ? "syncml:metinf" : nextDefault, nextPrefixes);
    }
    if (structured) out.push(layout());
    if (wrap) out.push("</MetInf>");
    out.push(`</${name}${rand() < 0.1 ? " " : ""}>`);
  };

  const writeText = (text: string): void => {
    let i = 0;
    while (i < text.length) {
      const take = 1 + Math.floor(rand() * 8);
      const chunk = text.slice(i, i + take);
      // Never cut a surrogate pair.
      const end = /[\ud800-\udbff]$/.test(chunk) ? i + take + 1 : i + take;
      const piece = text.slice(i, end);
      i = end;
      const r = rand();
      if (
        r < 0.15 &&
        !piece.includes("\r") &&
        !piece.includes("]]>") &&
        !piece.endsWith("]") &&
        !piece.endsWith("]]")
      ) {
        out.push(`<![CDATA[${piece}]]>`);
      } else if (r < 0.3) {
        out.push(
          Array.from(piece)
            .map((ch) =>
              rand() < 0.5 ? `&#${ch.codePointAt(0) ?? 0};` : `&#x${(ch.codePointAt(0) ?? 0).toString(16)};`,
            )
            .join(""),
        );
      } else if (r < 0.35 && i < text.length) {
        out.push(escapeXml(piece, false), "<!-- split -->");
      } else {
        out.push(escapeXml(piece, false));
      }
    }
  };

  write(root, "", new Map());
  if (rand() < 0.3) out.push(pick(["\n", "<!-- end -->", "<?end?>", "\r\n  "]));
  return new TextEncoder().encode(out.join(""));
}

function escapeXml(text: string, attribute: boolean): string {
  return text.replace(attribute ? /[&<"'\r\n\t]/g : /[&<>\r]/g, (c) => `&#${c.charCodeAt(0)};`);
}
