/**
 * Hostile input for the SyncML DM decoders: each file of test/fixtures/malformed/ (built by
 * test/fuzz/malformed-fixtures.ts) with the exact error code it must fail with, or, for the quirks
 * real devices and servers send, the model it must decode to. Every decode must leave its input as
 * it found it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import {
  DEFAULT_LIMITS,
  decodeMessage,
  encodeMessage,
  tryDecodeMessage,
  type DecodeLimits,
  type Encoding,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import { MALFORMED_DIR } from "../fuzz/malformed-fixtures.js";

function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(MALFORMED_DIR + name));
}

interface Options {
  readonly encoding?: Encoding;
  readonly limits?: Partial<DecodeLimits>;
}

function decodeOptions(o: Options): { encoding?: Encoding; limits: DecodeLimits } {
  return {
    ...(o.encoding !== undefined && { encoding: o.encoding }),
    limits: { ...DEFAULT_LIMITS, ...o.limits },
  };
}

interface HostileCase extends Options {
  readonly file: string;
  readonly code: ErrorCode;
  /** Entries the error's context must hold. */
  readonly context?: Readonly<Record<string, unknown>>;
}

/** Decodes `bytes` expecting `code`; checks both APIs and that the input is unchanged. */
function expectFailure(bytes: Uint8Array, c: Omit<HostileCase, "file">): GatewayError {
  const before = bytes.slice();
  const result = tryDecodeMessage(bytes, decodeOptions(c));
  assert.deepStrictEqual(bytes, before, "decoding changed its input");
  assert.ok(!result.ok, "decoded, but should have failed");
  assert.ok(result.error instanceof GatewayError);
  assert.equal(result.error.code, c.code, result.error.message);
  for (const [key, value] of Object.entries(c.context ?? {})) {
    assert.deepStrictEqual(result.error.context?.[key], value, `context.${key} of ${result.error.message}`);
  }
  assert.throws(
    () => decodeMessage(bytes, decodeOptions(c)),
    (e: unknown) => e instanceof GatewayError && e.code === c.code,
  );
  assert.deepStrictEqual(bytes, before, "decoding changed its input");
  return result.error;
}

function decodeOk(name: string, options: Options = {}): SyncMLMessage {
  const bytes = fixture(name);
  const before = bytes.slice();
  const result = tryDecodeMessage(bytes, decodeOptions(options));
  assert.deepStrictEqual(bytes, before, "decoding changed its input");
  assert.ok(result.ok, result.ok ? "" : `${name}: ${result.error.message}`);
  return result.value.message;
}

function runTable(cases: readonly HostileCase[]): void {
  for (const c of cases) {
    const how = [c.encoding && `as ${c.encoding}`, c.limits && `limits ${JSON.stringify(c.limits)}`]
      .filter(Boolean)
      .join(", ");
    it(`${c.file}${how ? ` (${how})` : ""} -> ${c.code}`, () => {
      expectFailure(fixture(c.file), c);
    });
  }
}

const E = ErrorCode;

describe("SyncML codec: hostile input", () => {
  describe("limits", () => {
    runTable([
      {
        file: "limit-valid-message.wbxml",
        limits: { maxBytes: 32 },
        code: E.Codec_TooLarge,
        context: { size: 82, limit: 32 },
      },
      {
        file: "limit-valid-message.xml",
        limits: { maxBytes: 64 },
        code: E.Codec_TooLarge,
        context: { limit: 64 },
      },
      { file: "limit-too-deep-atomic.wbxml", code: E.Codec_TooDeep, context: { limit: 64 } },
      { file: "limit-too-deep-atomic.xml", code: E.Codec_TooDeep },
      { file: "limit-too-deep-metinf.wbxml", code: E.Codec_TooDeep },
      { file: "limit-valid-message.wbxml", limits: { maxDepth: 3 }, code: E.Codec_TooDeep },
      { file: "limit-valid-message.xml", limits: { maxDepth: 3 }, code: E.Codec_TooDeep },
      {
        file: "limit-valid-message.wbxml",
        limits: { maxElements: 8 },
        code: E.Codec_TooManyElements,
        context: { limit: 8 },
      },
      { file: "limit-valid-message.xml", limits: { maxElements: 8 }, code: E.Codec_TooManyElements },
    ]);

    it("refuses one byte over the default 4 MB before reading any of it (not kept as fixtures)", () => {
      const xml = new Uint8Array(DEFAULT_LIMITS.maxBytes + 1).fill(0x20);
      expectFailure(xml, { code: E.Codec_TooLarge, context: { limit: DEFAULT_LIMITS.maxBytes } });
      const wbxml = new Uint8Array(DEFAULT_LIMITS.maxBytes + 1);
      wbxml.set(fixture("limit-valid-message.wbxml"));
      expectFailure(wbxml, { code: E.Codec_TooLarge, context: { size: DEFAULT_LIMITS.maxBytes + 1 } });
    });

    it("the limits are inclusive: a message at exactly its element count and depth decodes", () => {
      decodeOk("limit-valid-message.wbxml", { limits: { maxElements: 18, maxDepth: 4, maxBytes: 82 } });
      decodeOk("limit-valid-message.xml", { limits: { maxElements: 18, maxDepth: 4 } });
    });
  });

  describe("mb_u_int32", () => {
    runTable([
      { file: "mbuint32-6-bytes-public-id.wbxml", code: E.Codec_IntegerOverflow, context: { offset: 1 } },
      { file: "mbuint32-2pow32-public-id.wbxml", code: E.Codec_IntegerOverflow, context: { offset: 1 } },
      { file: "mbuint32-2pow32-strtbl-length.wbxml", code: E.Codec_IntegerOverflow, context: { offset: 4 } },
      { file: "mbuint32-6-bytes-opaque-length.wbxml", code: E.Codec_IntegerOverflow },
      { file: "mbuint32-cut-public-id.wbxml", code: E.Codec_Truncated },
    ]);
  });

  describe("truncation", () => {
    runTable([
      { file: "empty.bin", code: E.Codec_Truncated },
      { file: "empty.bin", encoding: "wbxml", code: E.Codec_Truncated },
      { file: "truncated-header-only.wbxml", code: E.Codec_Truncated },
      { file: "truncated-no-charset.wbxml", code: E.Codec_Truncated },
      { file: "truncated-opaque-past-end.wbxml", code: E.Codec_Truncated },
      { file: "truncated-opaque-length-2pow32-minus-1.wbxml", code: E.Codec_Truncated },
      { file: "truncated-strtbl-past-end.wbxml", code: E.Codec_Truncated },
      { file: "truncated-str-i-without-nul.wbxml", code: E.Codec_Truncated },
      { file: "truncated-str-t-past-table.wbxml", code: E.Codec_Truncated },
      { file: "truncated-inside-element.wbxml", code: E.Codec_Truncated },
      { file: "truncated-switch-page.wbxml", code: E.Codec_Truncated },
      { file: "public-id-literal-index-past-table.wbxml", code: E.Codec_Truncated },
    ]);
  });

  describe("unknown WBXML tokens", () => {
    runTable(
      [
        "ext-i-0",
        "ext-t-0",
        "ext-0",
        "pi",
        "literal-a",
        "literal-ac",
        "attribute-bit-alert",
        "attribute-and-content-bits-alert",
        "reserved-0x30",
        "unassigned-0x3f",
        "unassigned-metinf-0x3f",
        "page-7",
      ].map((t) => ({ file: `unknown-token-${t}.wbxml`, code: E.Codec_UnknownToken })),
    );
  });

  describe("charsets and encodings", () => {
    runTable([
      { file: "charset-utf16-1015.wbxml", code: E.Codec_UnsupportedCharset, context: { charset: 1015 } },
      { file: "charset-shift-jis-17.wbxml", code: E.Codec_UnsupportedCharset, context: { charset: 17 } },
      { file: "charset-utf16-declared.xml", code: E.Codec_UnsupportedCharset },
      { file: "charset-shift-jis-declared.xml", code: E.Codec_UnsupportedCharset },
      // A UTF-16 BOM is neither WBXML nor XML to detection; told it is XML, the charset is refused.
      { file: "charset-utf16le-bom.xml", code: E.Codec_UnknownDocument },
      { file: "charset-utf16le-bom.xml", encoding: "xml", code: E.Codec_UnsupportedCharset },
      { file: "invalid-utf8-str-i.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-utf8-overlong-str-i.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-utf8-surrogate-str-i.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-utf8-string-table.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-utf8-opaque-leaf.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-entity-surrogate.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-entity-above-unicode.wbxml", code: E.Codec_InvalidEncoding },
      { file: "invalid-utf8.xml", code: E.Codec_InvalidEncoding },
    ]);
  });

  describe("versions and document types", () => {
    runTable([
      // Detection knows WBXML by a first byte of 0x01..0x03, so other versions are no document at all...
      { file: "version-0x00.wbxml", code: E.Codec_UnknownDocument },
      { file: "version-0x04.wbxml", code: E.Codec_UnknownDocument },
      // ...and an unsupported WBXML version once the transport said WBXML.
      {
        file: "version-0x00.wbxml",
        encoding: "wbxml",
        code: E.Codec_UnsupportedVersion,
        context: { version: 0 },
      },
      {
        file: "version-0x04.wbxml",
        encoding: "wbxml",
        code: E.Codec_UnsupportedVersion,
        context: { version: 4 },
      },
      { file: "verdtd-1.3.xml", code: E.Codec_UnsupportedVersion },
      { file: "verdtd-2.0.wbxml", code: E.Codec_UnsupportedVersion },
      { file: "public-id-unknown-0x55.wbxml", code: E.Codec_UnknownDocument, context: { publicId: 0x55 } },
      {
        file: "public-id-literal-wml.wbxml",
        code: E.Codec_UnknownDocument,
        context: { publicId: "-//WAPFORUM//DTD WML 1.1//EN" },
      },
      { file: "public-id-devinf-1.2.wbxml", code: E.Codec_UnknownElement },
      { file: "first-byte-0x7f.bin", code: E.Codec_UnknownDocument, context: { firstByte: 0x7f } },
    ]);
  });

  describe("trailing data", () => {
    runTable([
      { file: "trailing-nul.wbxml", code: E.Codec_TrailingData, context: { offset: 67 } },
      { file: "trailing-second-root.wbxml", code: E.Codec_TrailingData, context: { offset: 67 } },
      { file: "trailing-end.wbxml", code: E.Codec_TrailingData, context: { offset: 67 } },
    ]);
  });

  describe("malformed XML", () => {
    runTable([
      { file: "xml-unclosed-tag.xml", code: E.Codec_MalformedXml, context: { line: 4, column: 9 } },
      { file: "xml-mismatched-tag.xml", code: E.Codec_MalformedXml, context: { line: 1, column: 294 } },
      { file: "xml-attribute.xml", code: E.Codec_MalformedXml, context: { line: 1 } },
      { file: "xml-undefined-entity.xml", code: E.Codec_MalformedXml, context: { line: 1 } },
      { file: "xml-unbound-prefix.xml", code: E.Codec_MalformedXml },
      { file: "xml-char-ref-nul.xml", code: E.Codec_MalformedXml },
      { file: "xml-raw-control-char.xml", code: E.Codec_MalformedXml },
      { file: "xml-raw-uffff.xml", code: E.Codec_MalformedXml },
      { file: "xml-unterminated-cdata.xml", code: E.Codec_MalformedXml },
      { file: "xml-unterminated-comment.xml", code: E.Codec_MalformedXml },
      { file: "xml-no-root.xml", code: E.Codec_MalformedXml },
      { file: "xml-text-after-root.xml", code: E.Codec_MalformedXml },
      { file: "xml-second-root.xml", code: E.Codec_MalformedXml },
      { file: "xml-external-entity.xml", code: E.Codec_MalformedXml },
    ]);

    // Namespaces in XML 1.0.
    runTable([
      { file: "xml-ns-prefix-bound-to-empty.xml", code: E.Codec_MalformedXml },
      { file: "xml-ns-prefix-out-of-scope.xml", code: E.Codec_MalformedXml },
      { file: "xml-ns-duplicate-default.xml", code: E.Codec_MalformedXml },
      { file: "xml-ns-duplicate-prefix.xml", code: E.Codec_MalformedXml },
    ]);

    it("puts the line and column in the message and the context", () => {
      const error = expectFailure(fixture("xml-unclosed-tag.xml"), { code: E.Codec_MalformedXml });
      assert.match(error.message, /line 4, column 9/);
      assert.equal(typeof error.context?.["line"], "number");
      assert.equal(typeof error.context?.["column"], "number");
    });

    for (const file of ["xml-billion-laughs.xml", "xml-quadratic-blowup.xml"]) {
      it(`${file}: fails fast on the entity reference, without expanding the DOCTYPE's entities`, () => {
        const bytes = fixture(file);
        const heap = process.memoryUsage().heapUsed;
        const start = performance.now();
        expectFailure(bytes, { code: E.Codec_MalformedXml });
        const ms = performance.now() - start;
        assert.ok(ms < 100, `took ${ms.toFixed(1)} ms`);
        assert.ok(process.memoryUsage().heapUsed - heap < 32 * 1024 * 1024, "used more than 32 MB of heap");
      });
    }
  });

  describe("elements SyncML DM does not use", () => {
    runTable([
      {
        file: "unknown-element-sync.xml",
        code: E.Codec_UnknownElement,
        context: { element: "Sync", parent: "SyncBody" },
      },
      {
        file: "unknown-element-sync.wbxml",
        code: E.Codec_UnknownElement,
        context: { element: "Sync", parent: "SyncBody" },
      },
      { file: "unknown-element-map.wbxml", code: E.Codec_UnknownElement, context: { element: "Map" } },
      { file: "unknown-element-put.xml", code: E.Codec_UnknownElement, context: { element: "Put" } },
      { file: "unknown-element-root.xml", code: E.Codec_UnknownElement, context: { element: "Foo" } },
      {
        file: "unknown-element-in-item.xml",
        code: E.Codec_UnknownElement,
        context: { element: "Lang", parent: "Item" },
      },
      {
        file: "unknown-element-metinf-in-hdr.xml",
        code: E.Codec_UnknownElement,
        context: { element: "Type" },
      },
      {
        file: "unknown-element-foreign-namespace.xml",
        code: E.Codec_UnknownElement,
        context: { namespace: "urn:other" },
      },
    ]);
  });

  describe("structure", () => {
    runTable([
      {
        file: "structure-missing-synchdr.xml",
        code: E.Codec_InvalidStructure,
        context: { missing: "SyncHdr" },
      },
      { file: "structure-missing-cmdid.xml", code: E.Codec_InvalidStructure, context: { missing: "CmdID" } },
      {
        file: "structure-missing-cmdid.wbxml",
        code: E.Codec_InvalidStructure,
        context: { missing: "CmdID" },
      },
      {
        file: "structure-status-without-data.xml",
        code: E.Codec_InvalidStructure,
        context: { missing: "Data" },
      },
      {
        file: "structure-missing-verdtd.xml",
        code: E.Codec_InvalidStructure,
        context: { missing: "VerDTD" },
      },
      {
        file: "structure-chal-without-meta.xml",
        code: E.Codec_InvalidStructure,
        context: { missing: "Meta" },
      },
      {
        file: "structure-duplicate-msgid.xml",
        code: E.Codec_InvalidStructure,
        context: { element: "MsgID" },
      },
      { file: "structure-text-in-container.xml", code: E.Codec_InvalidStructure },
      { file: "structure-command-after-final.xml", code: E.Codec_InvalidStructure },
      { file: "structure-data-mixes-text-and-element.xml", code: E.Codec_InvalidStructure },
      { file: "structure-end-before-root.wbxml", code: E.Codec_InvalidStructure },
      { file: "structure-text-before-root.wbxml", code: E.Codec_InvalidStructure },
      { file: "structure-opaque-before-root.wbxml", code: E.Codec_InvalidStructure },
      { file: "structure-element-in-leaf.wbxml", code: E.Codec_InvalidStructure },
      { file: "structure-literal-tag-not-a-name.wbxml", code: E.Codec_InvalidStructure },
    ]);
  });

  describe("accepted quirks", () => {
    const reference = (): SyncMLMessage => decodeOk("limit-valid-message.wbxml");

    it("reads an unescaped & in text as a literal &", () => {
      const bare = decodeOk("accept-bare-ampersand.xml");
      const alert = bare.body.commands[0];
      assert.ok(alert?.kind === "Alert");
      assert.deepStrictEqual(alert.items[0]?.data, { kind: "text", text: "MAXDT=15&DR=1" });
      assert.deepStrictEqual(bare, decodeOk("accept-escaped-ampersand.xml"));
    });

    it("decodes the three WBXML forms of an empty element to the same model", () => {
      const bare = decodeOk("accept-empty-bare-token.wbxml");
      assert.equal(bare.hdr.sessionId, "");
      assert.equal(bare.body.final, true);
      assert.deepStrictEqual(decodeOk("accept-empty-content-end.wbxml"), bare);
      assert.deepStrictEqual(decodeOk("accept-empty-content-str-i-end.wbxml"), bare);
    });

    for (const file of [
      "accept-public-id-literal-nul.wbxml",
      "accept-public-id-literal-no-nul.wbxml",
      "accept-public-id-literal-loose.wbxml",
      "accept-public-id-unknown-1.wbxml",
      "accept-wbxml-1.1.wbxml",
      "accept-wbxml-1.3.wbxml",
      "accept-charset-us-ascii.wbxml",
      "accept-no-xmlns.xml",
      "accept-utf8-bom.xml",
      "limit-valid-message.xml",
    ]) {
      it(`${file} decodes to the same message as the plain WBXML form`, () => {
        assert.deepStrictEqual(decodeOk(file), reference());
      });
    }

    it("resolves XML namespace prefixes by scope, whatever the prefix is called", () => {
      const shadowed = decodeOk("accept-xml-ns-prefix-shadowed-and-restored.xml").body.commands[1];
      assert.ok(shadowed?.kind === "Get");
      assert.deepStrictEqual(shadowed.meta, { type: "x" });
      const proto = decodeOk("accept-xml-ns-proto-prefix.xml").body.commands[0];
      assert.ok(proto?.kind === "Get");
      assert.deepStrictEqual(proto.meta, { type: "x" });
      assert.deepStrictEqual(
        decodeOk("accept-xml-ns-default-undeclared.xml"),
        decodeOk("limit-valid-message.xml"),
      );
    });

    it("reads Latin-1 strings, string table references and entities", () => {
      const latin1 = decodeOk("accept-charset-latin1.wbxml").body.commands[0];
      assert.ok(latin1?.kind === "Alert");
      assert.equal(latin1.data, "\u00e9");
      const table = decodeOk("accept-str-t-and-entity.wbxml").body.commands[0];
      assert.ok(table?.kind === "Alert");
      assert.equal(table.data, "1201");
    });

    it("reads MetInf tags after SWITCH_PAGE 1 and SyncML tags after SWITCH_PAGE 0", () => {
      const alert = decodeOk("accept-metinf-without-switch-page-back.wbxml").body.commands[0];
      assert.ok(alert?.kind === "Alert");
      assert.deepStrictEqual(alert.items[0], { meta: { type: "x" }, data: { kind: "text", text: "d" } });
    });

    it("reads OPAQUE Data as opaque bytes, copied out of the input", () => {
      const input = fixture("accept-opaque-data.wbxml");
      const replace = decodeMessage(input).message.body.commands[0];
      assert.ok(replace?.kind === "Replace");
      assert.deepStrictEqual(replace.items[0], {
        data: { kind: "opaque", bytes: Uint8Array.from([0x01, 0x02, 0x03, 0xff]) },
      });
      input.fill(0x55);
      assert.deepStrictEqual(replace.items[0].data, {
        kind: "opaque",
        bytes: Uint8Array.from([0x01, 0x02, 0x03, 0xff]),
      });
    });

    it("reads a nested TNDS document (OPAQUE, Meta Type ...dmtnds+wbxml) as element Data of type ...dmtnds+xml", () => {
      const replace = decodeOk("limit-nested-tnds.wbxml").body.commands[0];
      assert.ok(replace?.kind === "Replace");
      const item = replace.items[0];
      assert.equal(item?.meta?.type, "application/vnd.syncml.dmtnds+xml");
      assert.ok(item.data?.kind === "element");
      assert.equal(item.data.element.name, "MgmtTree");
      assert.equal(item.data.element.namespace, "syncml:dmddf1.2");
      assert.equal(item.data.element.children.length, 31);
    });
  });

  // Found by these tests and fixed in src/syncml: kept as regression tests.
  describe("amplification and cost", () => {
    runTable([
      // 6,263 bytes whose STR_T references expand to 4.2 MB of text.
      { file: "amplification-str-t-4mb.wbxml", code: E.Codec_TooLarge },
      // 65,632 bytes expanding past V8's longest string: once ~1.4 s, ~530 MB, then a RangeError.
      { file: "amplification-str-t-range-error.wbxml", code: E.Codec_TooLarge },
      // A nested WBXML document's elements count against the message's limit, as they do inline in XML.
      { file: "limit-nested-tnds.wbxml", limits: { maxElements: 70 }, code: E.Codec_TooManyElements },
      { file: "limit-nested-tnds.wbxml", limits: { maxElements: 40 }, code: E.Codec_TooManyElements },
    ]);

    it("refuses STR_T amplification fast", () => {
      const start = performance.now();
      expectFailure(fixture("amplification-str-t-range-error.wbxml"), { code: E.Codec_TooLarge });
      const ms = performance.now() - start;
      assert.ok(ms < 250, `took ${ms.toFixed(0)} ms`);
    });

    it("decodes 1,000,000 adjacent empty OPAQUE fragments (2 MB) in bounded time and heap", () => {
      // Once ~1.7 s and ~200 MB of heap. Too large to keep as a fixture: built around
      // limit-valid-message.wbxml's Alert <Data>.
      const head = fixture("limit-valid-message.wbxml");
      const at = head.indexOf(0x4f); // <Data> of the Alert, with content
      const bytes = new Uint8Array(head.length + 2_000_000);
      bytes.set(head.subarray(0, at + 1));
      for (let i = at + 1; i < at + 1 + 2_000_000; i += 2) bytes[i] = 0xc3; // OPAQUE, length 0
      bytes.set(head.subarray(at + 1), at + 1 + 2_000_000);
      const heap = process.memoryUsage().heapUsed;
      const start = performance.now();
      tryDecodeMessage(bytes);
      const ms = performance.now() - start;
      assert.ok(ms < 250, `took ${ms.toFixed(0)} ms`);
      assert.ok(process.memoryUsage().heapUsed - heap < 64 * bytes.length + 8e6, "heap out of proportion");
    });
  });

  describe("duplicates and flags", () => {
    runTable([
      { file: "structure-final-with-text.xml", code: E.Codec_InvalidStructure },
      { file: "structure-final-twice.xml", code: E.Codec_InvalidStructure },
      // <Meta><Type>a</Type><MetInf><Type>b</Type></MetInf></Meta>: once silently { type: "b" }.
      { file: "structure-duplicate-type-via-metinf.xml", code: E.Codec_InvalidStructure },
    ]);
  });

  describe("opaque Data is the model's own", () => {
    it("copies OPAQUE bytes out of a Buffer input (once a view of the caller's buffer)", () => {
      const input = Buffer.from(fixture("accept-opaque-data.wbxml"));
      const replace = decodeMessage(input).message.body.commands[0];
      assert.ok(replace?.kind === "Replace" && replace.items[0]?.data?.kind === "opaque");
      const bytes = replace.items[0].data.bytes;
      input.fill(0x55);
      assert.deepStrictEqual(bytes, Uint8Array.from([0x01, 0x02, 0x03, 0xff]));
    });

    it("joins OPAQUE fragments into one plain Uint8Array (once a Buffer)", () => {
      const replace = decodeOk("accept-opaque-two-fragments.wbxml").body.commands[0];
      assert.ok(replace?.kind === "Replace");
      assert.deepStrictEqual(replace.items[0]?.data, {
        kind: "opaque",
        bytes: Uint8Array.from([0x61, 0x62, 0xff]),
      });
    });
  });

  describe("embedded documents", () => {
    it("inline TNDS Data without a TNDS Meta Type comes back from WBXML as the same element Data", () => {
      // XML decodes the inline MgmtTree as element Data whatever the Type; the WBXML encoder nests it as
      // an OPAQUE DM DDF document. Once, with no Type to say so, it came back as opaque bytes; the
      // nested document names itself (FPI -//OMA//DTD-DM-DDF 1.2//EN). Codec_EncodeFailed would do too.
      const message = decodeOk("accept-inline-tnds-without-type.xml");
      let wbxml: Uint8Array;
      try {
        wbxml = encodeMessage(message, "wbxml");
      } catch (e) {
        assert.ok(e instanceof GatewayError && e.code === E.Codec_EncodeFailed, String(e));
        return;
      }
      assert.deepStrictEqual(decodeMessage(wbxml).message, message);
    });
  });

  /*
   * Bugs found in src/syncml and reported; pending until fixed there. Each names what it expects.
   * Un-skip (it.skip -> it) once the fix lands.
   */
  describe("regressions: codec bugs found by these tests", () => {
    it("BUG: text then OPAQUE in one <Data> gives opaque bytes as a Buffer, not a plain Uint8Array", () => {
      // parseData still joins mixed text/OPAQUE children with Buffer.concat: decode(encode(m)) != m
      // under deepStrictEqual (found by the fuzzer's re-encode check: fuzz-unstable-383a11d0bee9e29b.bin).
      const replace = decodeOk("accept-opaque-after-text.wbxml").body.commands[0];
      assert.ok(replace?.kind === "Replace");
      assert.deepStrictEqual(replace.items[0]?.data, {
        kind: "opaque",
        bytes: Uint8Array.from([0x64, 0x41]),
      });
    });

    it("BUG: 4 MB of bare & costs ~2 s and ~270 MB: the repair makes a 20 MB document", () => {
      // repairBareAmpersands rewrites each bare & as &amp; after the size check, so saxes parses 5x
      // the input; ~0.5 us and ~65 bytes of heap per input byte. Budget: 250 ns/byte, 64x heap.
      // Too large to keep as a fixture: limit-valid-message.xml's Alert Data filled with &.
      const text = new TextDecoder().decode(fixture("limit-valid-message.xml"));
      const filler = "&".repeat(DEFAULT_LIMITS.maxBytes - text.length);
      const bytes = new TextEncoder().encode(text.replace("<Data>1201</Data>", `<Data>${filler}</Data>`));
      const heap = process.memoryUsage().heapUsed;
      const start = performance.now();
      const result = tryDecodeMessage(bytes);
      const ms = performance.now() - start;
      assert.ok(result.ok);
      assert.ok(ms < (250 * bytes.length) / 1e6, `took ${ms.toFixed(0)} ms`);
      assert.ok(process.memoryUsage().heapUsed - heap < 64 * bytes.length + 8e6, "heap out of proportion");
    });

    it("BUG: namespace declarations XML forbids are accepted (saxes' xmlns mode refused them)", () => {
      // Namespaces in XML 1.0, section 3: `xml` may be bound only to its own namespace, `xmlns` never
      // declared, and a QName has at most one colon.
      expectFailure(fixture("xml-ns-rebind-xml-prefix.xml"), { code: E.Codec_MalformedXml }); // today: decodes
      expectFailure(fixture("xml-ns-declare-xmlns-prefix.xml"), { code: E.Codec_MalformedXml }); // today: decodes
      expectFailure(fixture("xml-ns-two-colons.xml"), { code: E.Codec_MalformedXml }); // today: UnknownElement <b:Alert>
    });
  });
});
