/**
 * Codec bench: our SyncML DM codec against reference implementations, on two generated messages.
 *
 *   wbxml-decode  ours: decodeMessage(wbxml, {encoding: "wbxml"})  (bytes -> typed message)
 *                 ref:  libwbxml wbxml_conv_wbxml2xml_withlen      (bytes -> compact XML text)
 *   wbxml-encode  ours: encodeMessage(message, "wbxml")            (typed message -> bytes)
 *                 ref:  libwbxml wbxml_conv_xml2wbxml_withlen      (XML text -> bytes, like xml2wbxml -n -v 1.2)
 *   xml-decode    ours: decodeMessage(xml, {encoding: "xml"})      (bytes -> typed message)
 *                 ref:  fast-xml-parser XMLParser.parse            (bytes -> generic object)
 *
 * JS is timed in this process (common.ts JsTimer), libwbxml in its C harness (libwbxml-harness.c,
 * one child process per round); each side reports the median per-operation time over its batches.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { XMLParser } from "fast-xml-parser";
import type { SyncMLMessage } from "../../src/syncml/index.js";
import {
  formatTable,
  interleave,
  JsTimer,
  round3,
  type BenchContext,
  type BenchReport,
  type Timing,
} from "./common.js";
import { package1Xml, resultsXml } from "./codec-messages.js";
import {
  BUILD_DIR,
  buildHarness,
  firstDifference,
  LibwbxmlTimer,
  xml2wbxml,
  type HarnessTiming,
} from "./libwbxml.js";
import { loadShippedCodec } from "./shipped.js";

const { decodeMessage, encodeMessage } = await loadShippedCodec();

export type CodecOp = "wbxml-decode" | "wbxml-encode" | "xml-decode";

export interface CodecCase {
  readonly name: string;
  readonly op: CodecOp;
  readonly oursUs: number;
  readonly reference: "libwbxml" | "fast-xml-parser";
  readonly referenceUs: number;
  /** oursUs / referenceUs: below 1 means ours is faster. */
  readonly ratio: number;
  /** Input size of the operation (WBXML for wbxml-*, XML for xml-decode). */
  readonly bytes: number;
  /** The fastest batch of each side, for a feel of the noise. */
  readonly oursMinUs: number;
  readonly referenceMinUs: number;
}

export interface CodecReport extends BenchReport {
  readonly bench: "codec";
  readonly cases: readonly CodecCase[];
}

/**
 * Each side of a case is timed in ROUNDS rounds, interleaved with the other side's (common.ts
 * interleave), so that a slow stretch of a shared machine weighs on both alike.
 */
const ROUNDS = 5;
/** Timed milliseconds of one libwbxml round (one harness run of 21 batches, plus its warm-up). */
const ROUND_MS = 200;
/** One JS round: 5 batches of about 40 ms, so 25 batches per side. */
const JS_TIMING = { batchMs: 40, batchesPerRound: 5 } as const;

const UTF8 = new TextDecoder("utf-8", { fatal: true });

interface Fixture {
  readonly name: string;
  readonly xml: Uint8Array;
  readonly wbxml: Uint8Array;
  readonly message: SyncMLMessage;
  readonly xmlPath: string;
  readonly wbxmlPath: string;
  /** `xml2wbxml -n -v 1.2` of the XML, when the tool ran. */
  readonly xml2wbxml?: Uint8Array | undefined;
}

export function run(ctx: BenchContext): CodecReport {
  const harness = buildHarness();
  ctx.log(
    `codec bench: node ${process.version}, fast-xml-parser ${packageVersion("fast-xml-parser")}, libwbxml harness ${
      harness.compiled ? "compiled" : "up to date"
    } (${path.relative(process.cwd(), harness.binary)})`,
  );

  const fixtures: Fixture[] = [];
  for (const [name, xmlText] of [
    ["package1-1k", package1Xml()],
    ["results-64k", resultsXml()],
  ] as const) {
    const f = fixture(name, xmlText);
    ctx.log(`message ${f.name}: XML ${f.xml.length} bytes, WBXML ${f.wbxml.length} bytes`);
    fixtures.push({ ...f, xml2wbxml: crossCheckXml2wbxml(ctx, f) });
  }

  // fast-xml-parser with the options asked for; one parser, reused across calls.
  const fxp = new XMLParser({ ignoreAttributes: false, processEntities: true });
  const cases: CodecCase[] = [];
  for (const f of fixtures) {
    // wbxml-decode. The harness writes libwbxml's XML; it must decode to the same message.
    const decodedXmlPath = path.join(BUILD_DIR, `${f.name}.libwbxml.xml`);
    const libDecode = new LibwbxmlTimer(harness.binary, "decode", f.wbxmlPath, ROUND_MS, decodedXmlPath);
    const ourDecode = new JsTimer(() => decodeMessage(f.wbxml, { encoding: "wbxml" }), JS_TIMING);
    interleave([ourDecode, libDecode], ROUNDS);
    const libXml = new Uint8Array(readFileSync(decodedXmlPath));
    if (!isDeepStrictEqual(decodeMessage(libXml, { encoding: "xml" }).message, f.message)) {
      ctx.warn(`${f.name}: libwbxml's decode of our WBXML reads back as a different message`);
    }
    cases.push(
      codecCase(f, "wbxml-decode", f.wbxml.length, ourDecode.result(), "libwbxml", libDecode.result()),
    );

    // wbxml-encode. Ours starts from the typed message, libwbxml from the XML text.
    const encodedPath = path.join(BUILD_DIR, `${f.name}.libwbxml.wbxml`);
    const libEncode = new LibwbxmlTimer(harness.binary, "encode", f.xmlPath, ROUND_MS, encodedPath);
    const ourEncode = new JsTimer(() => encodeMessage(f.message, "wbxml"), JS_TIMING);
    interleave([ourEncode, libEncode], ROUNDS);
    // The harness must produce what xml2wbxml does (same options); without the tool, what we do.
    const harnessBytes = new Uint8Array(readFileSync(encodedPath));
    const expected = f.xml2wbxml ?? f.wbxml;
    const diff = firstDifference(harnessBytes, expected);
    if (diff !== undefined) {
      const other = f.xml2wbxml === undefined ? "ours" : "xml2wbxml -n -v 1.2";
      ctx.warn(
        `${f.name}: the harness's libwbxml encode differs from ${other} at byte ${diff}${explainDifference(expected, harnessBytes, diff)}`,
      );
    }
    cases.push(
      codecCase(f, "wbxml-encode", f.wbxml.length, ourEncode.result(), "libwbxml", libEncode.result()),
    );

    // xml-decode. Both sides include the UTF-8 decode of the same bytes: decodeMessage does it
    // inside (fatal TextDecoder), fast-xml-parser gets the string from an identical TextDecoder.
    const parsed = fxp.parse(UTF8.decode(f.xml)) as unknown;
    if (typeof parsed !== "object" || parsed === null || !("SyncML" in parsed)) {
      ctx.warn(`${f.name}: fast-xml-parser did not return a SyncML object`);
    }
    const fxpDecode = new JsTimer(() => fxp.parse(UTF8.decode(f.xml)) as unknown, JS_TIMING);
    const ourXmlDecode = new JsTimer(() => decodeMessage(f.xml, { encoding: "xml" }), JS_TIMING);
    interleave([ourXmlDecode, fxpDecode], ROUNDS);
    cases.push(
      codecCase(f, "xml-decode", f.xml.length, ourXmlDecode.result(), "fast-xml-parser", fxpDecode.result()),
    );
  }

  ctx.log("");
  const rows = cases.map((c) => [
    c.name,
    c.op,
    String(c.bytes),
    c.oursUs.toFixed(2),
    c.reference,
    c.referenceUs.toFixed(2),
    c.ratio.toFixed(3),
  ]);
  const table = formatTable(
    ["message", "op", "bytes", "ours us/op", "reference", "ref us/op", "ratio"],
    rows,
    [false, false, true, true, false, true, true],
  );
  for (const line of table) ctx.log(line);
  ctx.log("(median of batches; ratio = ours / reference, below 1 means ours is faster)");
  return { bench: "codec", cases };
}

function fixture(name: string, xmlText: string): Fixture {
  const xml = new TextEncoder().encode(xmlText);
  const message = decodeMessage(xml, { encoding: "xml" }).message;
  const wbxml = encodeMessage(message, "wbxml");
  const xmlPath = path.join(BUILD_DIR, `${name}.xml`);
  const wbxmlPath = path.join(BUILD_DIR, `${name}.wbxml`);
  writeFileSync(xmlPath, xml);
  writeFileSync(wbxmlPath, wbxml);
  if (!isDeepStrictEqual(decodeMessage(wbxml, { encoding: "wbxml" }).message, message)) {
    throw new Error(`${name}: our WBXML does not decode back to the message`);
  }
  return { name, xml, wbxml, message, xmlPath, wbxmlPath };
}

/** Our WBXML should be byte for byte what `xml2wbxml -n -v 1.2` makes of the same XML. */
function crossCheckXml2wbxml(ctx: BenchContext, f: Fixture): Uint8Array | undefined {
  const theirs = xml2wbxml(f.xmlPath, path.join(BUILD_DIR, `${f.name}.xml2wbxml.wbxml`));
  if ("error" in theirs) {
    ctx.warn(`${f.name}: cannot cross-check with xml2wbxml: ${theirs.error}`);
    return undefined;
  }
  const diff = firstDifference(theirs.bytes, f.wbxml);
  if (diff === undefined) {
    ctx.log(`message ${f.name}: our WBXML = xml2wbxml -n -v 1.2 output (${theirs.bytes.length} bytes)`);
  } else {
    ctx.warn(
      `${f.name}: our WBXML (${f.wbxml.length} bytes) differs from xml2wbxml -n -v 1.2 (${theirs.bytes.length} bytes) at byte ${diff}${explainDifference(f.wbxml, theirs.bytes, diff)}`,
    );
  }
  return theirs.bytes;
}

const STR_I = 0x03;
const OPAQUE = 0xc3;

/**
 * The known difference: libwbxml writes the text of a <Data> inside an Add or Replace Item as
 * OPAQUE (a DS-era assumption that such data is a vCard or vCalendar), ours as STR_I.
 */
function explainDifference(ours: Uint8Array, theirs: Uint8Array, at: number): string {
  const a = ours[at];
  const b = theirs[at];
  if (a === STR_I && b === OPAQUE) {
    return ": STR_I where libwbxml writes OPAQUE (it does so for <Data> text inside Add/Replace Items)";
  }
  return `: 0x${a?.toString(16) ?? "end"} vs 0x${b?.toString(16) ?? "end"}`;
}

function codecCase(
  f: Fixture,
  op: CodecOp,
  bytes: number,
  ours: Timing,
  reference: CodecCase["reference"],
  theirs: Timing | HarnessTiming,
): CodecCase {
  return {
    name: f.name,
    op,
    oursUs: round3(ours.medianUs),
    reference,
    referenceUs: round3(theirs.medianUs),
    ratio: round3(ours.medianUs / theirs.medianUs),
    bytes,
    oursMinUs: round3(ours.minUs),
    referenceMinUs: round3(theirs.minUs),
  };
}

function packageVersion(name: string): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join("node_modules", name, "package.json"), "utf8")) as unknown;
    if (typeof pkg === "object" && pkg !== null && "version" in pkg && typeof pkg.version === "string")
      return pkg.version;
  } catch {
    // not found: the version is only informative
  }
  return "?";
}
