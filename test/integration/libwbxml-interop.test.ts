/**
 * Interop of our SyncML DM codec with libwbxml (Debian libwbxml2-utils: xml2wbxml / wbxml2xml), the
 * WBXML implementation most DM clients and test tools are built on. For every fixture in
 * test/fixtures/syncml:
 * - our WBXML decodes in libwbxml to the fixture's element tree;
 * - libwbxml's WBXML (`xml2wbxml -n -v 1.2`) decodes in ours to the fixture's model;
 * - our WBXML is libwbxml's byte for byte, except where KNOWN_LIBWBXML_REWRITES says libwbxml
 *   rewrites the message; there the bytes must differ, and must be equal once that rewrite is
 *   applied to our element tree, so that the list holds exactly what the facts require;
 * - our XML output survives xml2wbxml and wbxml2xml without loss.
 * The tools must be installed: a missing tool fails the suite instead of skipping it.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isElement, type Element } from "../../src/syncml/element.js";
import {
  decodeElement,
  decodeMessage,
  encodeMessage,
  encodeWbxmlDocument,
  messageToElement,
  SYNCML_11,
  SYNCML_12,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import { assertElementsEqual, opaqueDataAsText } from "../helpers/element-compare.js";
import { requireLibwbxml, wbxml2xml, xml2wbxml } from "../helpers/libwbxml.js";

const FIXTURE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "syncml");
const FIXTURES = readdirSync(FIXTURE_DIR)
  .filter((f) => f.endsWith(".xml"))
  .sort();

/** A way in which libwbxml's WBXML for a fixture legitimately differs from ours. */
type Rewrite = "add-replace-item-data-opaque";

/** Why each rewrite happens, and our element tree rewritten the same way (to compare the rest byte for byte). */
const REWRITES: Readonly<
  Record<Rewrite, { readonly reason: string; readonly apply: (root: Element) => Element }>
> = {
  // libwbxml 0.11.8, wbxml_tree.c wbxml_tree_node_get_syncml_data_type(): a <Data> whose Item sits
  // in <Add> or <Replace> is taken for a vCard/vCalendar ("vObject") unless the Item's (or else the
  // command's) Meta Type names TNDS or DevInf; wbxml_tree_clb_xml.c then wraps its text in a CDATA
  // node, which wbxml_encoder.c writes as OPAQUE (and inside which it turns every LF into CRLF, so
  // no fixture has a multi-line Add/Replace value). We write the same characters as STR_I. Both are
  // valid WBXML for the same text; our decoder reads libwbxml's form as `opaque` Data.
  "add-replace-item-data-opaque": {
    reason:
      "libwbxml writes the text Data of Add/Replace Items as OPAQUE (its vObject CDATA hack); we write STR_I",
    apply: (root) => itemDataAsOpaque(root, undefined, undefined),
  },
};

/**
 * Fixtures whose WBXML from libwbxml differs from ours, with the rewrites that explain every
 * differing byte. Every fixture with a text value in an Add or Replace Item is here, for the one
 * reason above; a fixture not listed must be byte-identical.
 */
const KNOWN_LIBWBXML_REWRITES: ReadonlyMap<string, readonly Rewrite[]> = new Map<string, readonly Rewrite[]>([
  ["client-generic-alert-correlator.xml", ["add-replace-item-data-opaque"]],
  ["client-largeobject-moredata-chunk1.xml", ["add-replace-item-data-opaque"]],
  ["client-largeobject-moredata-chunk2.xml", ["add-replace-item-data-opaque"]],
  ["client-pkg1-devinfo.xml", ["add-replace-item-data-opaque"]],
  ["client-pkg1-dm112.xml", ["add-replace-item-data-opaque"]],
  ["client-pkg1-md5-cred.xml", ["add-replace-item-data-opaque"]],
  ["client-pkg1-meta-all-metinf.xml", ["add-replace-item-data-opaque"]],
  ["server-atomic-sequence-nested.xml", ["add-replace-item-data-opaque"]],
  ["server-pkg2-all-commands.xml", ["add-replace-item-data-opaque"]],
]);

// Item Meta Types for which libwbxml leaves <Data> alone (embedded documents) or always makes it CDATA.
const LIBWBXML_NORMAL_TYPES = new Set([
  "application/vnd.syncml-devinf+wbxml",
  "application/vnd.syncml-devinf+xml",
  "application/vnd.syncml.dmtnds+wbxml",
  "application/vnd.syncml.dmtnds+xml",
]);
const LIBWBXML_CDATA_TYPES = new Set([
  "text/clear",
  "text/directory;profile=vCard",
  "text/x-vcard",
  "text/x-vcalendar",
]);

function itemDataAsOpaque(
  el: Element,
  parent: Element | undefined,
  grandparent: Element | undefined,
): Element {
  const children = el.children.map((c) => (isElement(c) ? itemDataAsOpaque(c, el, parent) : c));
  if (
    el.name === "Data" &&
    parent?.name === "Item" &&
    grandparent !== undefined &&
    libwbxmlWritesCdata(parent, grandparent) &&
    children.every((c) => typeof c === "string")
  ) {
    const text = children.join("");
    if (text.includes("\n")) {
      throw new Error(
        `libwbxml would also turn LF into CRLF in ${JSON.stringify(text)}: keep Add/Replace values on one line`,
      );
    }
    return { ...el, children: text.length > 0 ? [new TextEncoder().encode(text)] : [] };
  }
  return { ...el, children };
}

function libwbxmlWritesCdata(item: Element, command: Element): boolean {
  const type = metaType(item) ?? metaType(command);
  if (type !== undefined && LIBWBXML_NORMAL_TYPES.has(type)) return false;
  if (type !== undefined && LIBWBXML_CDATA_TYPES.has(type)) return true;
  return command.name === "Add" || command.name === "Replace";
}

/** The text of the first Meta's first Type child, as libwbxml looks it up. */
function metaType(el: Element): string | undefined {
  const meta = el.children.find((c): c is Element => isElement(c) && c.name === "Meta");
  const type = meta?.children.find((c): c is Element => isElement(c) && c.name === "Type");
  const text = type?.children[0];
  return typeof text === "string" ? text : undefined;
}

function languageOf(message: SyncMLMessage): typeof SYNCML_12 {
  return message.version === "1.1" ? SYNCML_11 : SYNCML_12;
}

/** Our XML parser's tree of what wbxml2xml printed; if it is not well-formed XML, says so with the text. */
function parsePrinted(printed: Buffer, what: string): Element {
  try {
    return decodeElement(printed, "xml");
  } catch (e) {
    const shown = JSON.stringify(printed.toString("latin1")).slice(0, 4000);
    assert.fail(`${what}: wbxml2xml printed XML our parser refuses (${String(e)}):\n${shown}`);
  }
}

/** Asserts byte equality; on failure shows the first differing offset and both hex dumps. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const a = Buffer.from(actual);
  const e = Buffer.from(expected);
  if (a.equals(e)) return;
  let at = 0;
  while (at < a.length && at < e.length && a[at] === e[at]) at++;
  const around = (b: Buffer): string => b.subarray(Math.max(0, at - 8), at + 24).toString("hex");
  assert.fail(
    `${what}: ${a.length} vs ${e.length} bytes, first difference at offset ${at}\n` +
      `  ours     ...${around(a)}\n  libwbxml ...${around(e)}\n` +
      `  ours     ${a.toString("hex")}\n  libwbxml ${e.toString("hex")}`,
  );
}

describe("libwbxml interop (xml2wbxml / wbxml2xml)", () => {
  before(() => {
    requireLibwbxml();
  });

  it("has the fixtures, and every listed rewrite names one of them", () => {
    assert.ok(FIXTURES.length >= 13, `only ${FIXTURES.length} fixtures in ${FIXTURE_DIR}`);
    for (const name of KNOWN_LIBWBXML_REWRITES.keys())
      assert.ok(FIXTURES.includes(name), `${name} is listed but missing`);
  });

  for (const name of FIXTURES) {
    describe(name, () => {
      const fixtureXml = readFileSync(path.join(FIXTURE_DIR, name));
      const rewrites = KNOWN_LIBWBXML_REWRITES.get(name) ?? [];
      let cachedLibwbxml: Buffer | undefined;
      const libwbxmlBytes = (): Buffer => (cachedLibwbxml ??= xml2wbxml(fixtureXml));
      const fixtureMessage = (): SyncMLMessage => decodeMessage(fixtureXml, { encoding: "xml" }).message;
      const opaqueValues = rewrites.includes("add-replace-item-data-opaque");
      // libwbxml chose OPAQUE for the Add/Replace values, which we decode as `opaque` Data; the XML
      // form gives `text`. For those fixtures, compare such Data as the text its bytes hold.
      const comparable = (m: SyncMLMessage): SyncMLMessage => (opaqueValues ? opaqueDataAsText(m) : m);
      const explain = rewrites.map((r) => `${r}: ${REWRITES[r].reason}`).join("; ");

      it("our WBXML decodes in libwbxml to the fixture's element tree", () => {
        const ours = encodeMessage(fixtureMessage(), "wbxml");
        const what = `wbxml2xml of our WBXML for ${name}`;
        assertElementsEqual(parsePrinted(wbxml2xml(ours), what), decodeElement(fixtureXml, "xml"), what);
      });

      it("libwbxml's WBXML decodes in ours to the fixture's model", () => {
        const decoded = decodeMessage(libwbxmlBytes(), { encoding: "wbxml" });
        assert.equal(decoded.encoding, "wbxml");
        if (opaqueValues) {
          assert.notDeepStrictEqual(
            decoded.message,
            fixtureMessage(),
            "no OPAQUE Data: drop the rewrite from the list",
          );
        }
        assert.deepStrictEqual(comparable(decoded.message), fixtureMessage());
      });

      if (rewrites.length === 0) {
        it("our WBXML equals libwbxml's byte for byte", () => {
          assertSameBytes(encodeMessage(fixtureMessage(), "wbxml"), libwbxmlBytes(), name);
        });
      } else {
        it(`our WBXML equals libwbxml's once its known rewrites are applied: ${rewrites.join(", ")}`, () => {
          const message = fixtureMessage();
          const ours = encodeMessage(message, "wbxml");
          // The rewrite must be needed: a fixture that comes out byte-identical leaves the list.
          assert.ok(
            !Buffer.from(ours).equals(libwbxmlBytes()),
            `${name} is byte-identical to libwbxml: remove it from the list (${explain})`,
          );
          let tree = messageToElement(message, "wbxml");
          // Same tree, same writer: the emulated bytes differ from ours only by the rewrite.
          assertSameBytes(encodeWbxmlDocument(tree, languageOf(message)), ours, "element tree re-encoded");
          for (const r of rewrites) tree = REWRITES[r].apply(tree);
          assertSameBytes(
            encodeWbxmlDocument(tree, languageOf(message)),
            libwbxmlBytes(),
            `${name} after the known rewrites (${explain})`,
          );
        });
      }

      it("our XML output goes through xml2wbxml and wbxml2xml without loss", () => {
        const message = fixtureMessage();
        const ourXml = encodeMessage(message, "xml");
        const wbxml = xml2wbxml(ourXml);
        const what = `libwbxml round trip of our XML for ${name}`;
        assertElementsEqual(parsePrinted(wbxml2xml(wbxml), what), decodeElement(ourXml, "xml"), what);
        assert.deepStrictEqual(comparable(decodeMessage(wbxml, { encoding: "wbxml" }).message), message);
      });
    });
  }
});
