/**
 * Builds the hostile inputs of test/fixtures/malformed/ (what each one tests is in its name and in
 * test/unit/codec-hostile.test.ts, which reads the files). The folder only grows: this script writes
 * files that are missing and refuses to change one that exists with other bytes.
 *
 *   node --import tsx test/fuzz/malformed-fixtures.ts
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const MALFORMED_DIR = fileURLToPath(new URL("../fixtures/malformed/", import.meta.url));

// ---- WBXML building blocks (SyncML 1.2 code page 0 unless noted) ----

const END = 0x01;
const ENTITY = 0x02;
const STR_I = 0x03;
const LITERAL = 0x04;
const OPAQUE = 0xc3;
const STR_T = 0x83;
const SWITCH_PAGE = 0x00;

/** Tag tokens of SyncML 1.2 page 0 and MetInf page 1 (src/syncml/wbxml-tables.ts). */
const T = {
  Alert: 0x06,
  CmdID: 0x0b,
  Data: 0x0f,
  Final: 0x12,
  Item: 0x14,
  LocURI: 0x17,
  Map: 0x18,
  Meta: 0x1a,
  MsgID: 0x1b,
  SessionID: 0x25,
  Atomic: 0x08,
  Source: 0x27,
  Sync: 0x2a,
  SyncBody: 0x2b,
  SyncHdr: 0x2c,
  SyncML: 0x2d,
  Target: 0x2e,
  VerDTD: 0x31,
  VerProto: 0x32,
  // MetInf, page 1
  Type: 0x13,
} as const;

const FPI_12 = "-//SYNCML//DTD SyncML 1.2//EN";

function utf8(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

/** mb_u_int32: 7 bits a byte, most significant first, high bit on all but the last. */
export function mbUint32(value: number): number[] {
  const out = [value % 128];
  let v = Math.floor(value / 128);
  while (v > 0) {
    out.unshift((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  return out;
}

function str(s: string): number[] {
  return [STR_I, ...utf8(s), 0x00];
}

/** A tag with content: token | 0x40, the content, END. */
function el(token: number, ...content: number[][]): number[] {
  return [token | 0x40, ...content.flat(), END];
}

function leaf(token: number, text: string): number[] {
  return el(token, str(text));
}

/** WBXML 1.2, SyncML 1.2 (public id 0x1201), UTF-8, empty string table. */
const HEADER = [0x02, ...mbUint32(0x1201), 106, 0x00];

function hdr(version = "1.2", sessionId: number[] = leaf(T.SessionID, "1")): number[] {
  return el(
    T.SyncHdr,
    leaf(T.VerDTD, version),
    leaf(T.VerProto, `DM/${version}`),
    sessionId,
    leaf(T.MsgID, "1"),
    el(T.Target, leaf(T.LocURI, "IMEI:1")),
    el(T.Source, leaf(T.LocURI, "http://srv")),
  );
}

/** The token body of a message: SyncML(SyncHdr, SyncBody(commands..., final)). */
function body(commands: number[][] = [], final: number[] = [T.Final], header: number[] = hdr()): number[] {
  return el(T.SyncML, header, el(T.SyncBody, ...commands, final));
}

/** An Alert 1201 command. */
const ALERT = el(T.Alert, leaf(T.CmdID, "1"), leaf(T.Data, "1201"));

function wbxml(...parts: number[][]): Uint8Array {
  return Uint8Array.from(parts.flat());
}

/** A whole WBXML message with the default header. */
function message(commands: number[][] = [ALERT], final: number[] = [T.Final]): Uint8Array {
  return wbxml(HEADER, body(commands, final));
}

// ---- XML building blocks ----

function xmlHdr(version = "1.2"): string {
  return (
    `<SyncHdr><VerDTD>${version}</VerDTD><VerProto>DM/${version}</VerProto><SessionID>1</SessionID>` +
    `<MsgID>1</MsgID><Target><LocURI>IMEI:1</LocURI></Target><Source><LocURI>http://srv</LocURI></Source></SyncHdr>`
  );
}

function xmlMessage(
  commands = "",
  options: { hdr?: string; final?: string; xmlns?: string; decl?: string } = {},
): string {
  const xmlns = options.xmlns ?? ' xmlns="SYNCML:SYNCML1.2"';
  return (
    (options.decl ?? '<?xml version="1.0" encoding="UTF-8"?>') +
    `<SyncML${xmlns}>${options.hdr ?? xmlHdr()}<SyncBody>${commands}${options.final ?? "<Final/>"}</SyncBody></SyncML>`
  );
}

function xml(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

const XML_ALERT = "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>";

function nested(open: string, close: string, depth: number, inner: string): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

/** An Alert whose Data is `refs` STR_T references to one string of `tableLength - 1` bytes. */
function strTAmplification(tableLength: number, refs: number): Uint8Array {
  const table = [...new Array<number>(tableLength - 1).fill(0x41), 0x00];
  const data = [T.Data | 0x40, ...new Array<number>(refs).fill(0).flatMap(() => [STR_T, 0x00]), END];
  return wbxml(
    [0x02, 0xa4, 0x01, 106, ...mbUint32(tableLength)],
    table,
    body([el(T.Alert, leaf(T.CmdID, "1"), data)]),
  );
}

/** A Replace of one Item: Meta Type TNDS WBXML, Data a nested DM DDF document with `nodes` Nodes. */
function nestedTnds(nodes: number): Uint8Array {
  const fpi = "-//OMA//DTD-DM-DDF 1.2//EN";
  const DDF = { MgmtTree: 0x20, Node: 0x24, NodeName: 0x26, VerDTD: 0x37 } as const;
  const tree = wbxml(
    [0x02, 0x00, 0x00, 106, ...mbUint32(fpi.length + 1)],
    utf8(fpi),
    [0x00, SWITCH_PAGE, 2],
    el(
      DDF.MgmtTree,
      leaf(DDF.VerDTD, "1.2"),
      ...new Array<number>(nodes).fill(0).map(() => el(DDF.Node, leaf(DDF.NodeName, "x"))),
    ),
  );
  const item = el(
    T.Item,
    el(T.Meta, [SWITCH_PAGE, 1], leaf(T.Type, "application/vnd.syncml.dmtnds+wbxml"), [SWITCH_PAGE, 0]),
    [T.Data | 0x40, OPAQUE, ...mbUint32(tree.length), ...tree, END],
  );
  return message([el(0x20 /* Replace */, leaf(T.CmdID, "1"), item)]);
}

// ---- the fixtures ----

/** Every fixture by file name. */
export function buildMalformedFixtures(): Map<string, Uint8Array> {
  const f = new Map<string, Uint8Array>();
  const add = (name: string, bytes: Uint8Array): void => {
    if (f.has(name)) throw new Error(`duplicate fixture ${name}`);
    f.set(name, bytes);
  };

  // Limits (the tests pass small limits; the inputs themselves are well-formed).
  add("limit-valid-message.wbxml", message());
  add("limit-valid-message.xml", xml(xmlMessage(XML_ALERT)));
  // 70 nested Atomics (SyncML = depth 1, SyncBody = 2): over the default maxDepth of 64.
  add(
    "limit-too-deep-atomic.wbxml",
    wbxml(
      HEADER,
      [T.SyncML | 0x40],
      hdr(),
      [T.SyncBody | 0x40],
      new Array<number>(70).fill(T.Atomic | 0x40),
      new Array<number>(72).fill(END),
    ),
  );
  add("limit-too-deep-atomic.xml", xml(xmlMessage(nested("<Atomic>", "</Atomic>", 70, ""))));
  // Deep nesting inside one leaf: 100 MetInf wrappers.
  add(
    "limit-too-deep-metinf.wbxml",
    wbxml(
      HEADER,
      [T.SyncML | 0x40],
      [T.SyncHdr | 0x40, T.Meta | 0x40, SWITCH_PAGE, 1],
      new Array<number>(100).fill(0x0e | 0x40),
      new Array<number>(100).fill(END),
      [SWITCH_PAGE, 0, END, END, END],
    ),
  );

  // mb_u_int32.
  add(
    "mbuint32-6-bytes-public-id.wbxml",
    wbxml([0x02, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 106, 0x00], body()),
  );
  add("mbuint32-2pow32-public-id.wbxml", wbxml([0x02, 0x90, 0x80, 0x80, 0x80, 0x00, 106, 0x00], body()));
  add("mbuint32-2pow32-strtbl-length.wbxml", wbxml([0x02, 0xa4, 0x01, 106, 0x90, 0x80, 0x80, 0x80, 0x00]));
  add(
    "mbuint32-6-bytes-opaque-length.wbxml",
    message([
      el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, OPAQUE, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, END]),
    ]),
  );
  add("mbuint32-cut-public-id.wbxml", wbxml([0x02, 0x81]));

  // Truncation.
  add("empty.bin", new Uint8Array(0));
  add("truncated-header-only.wbxml", wbxml(HEADER));
  add("truncated-no-charset.wbxml", wbxml([0x02, 0xa4, 0x01]));
  add(
    "truncated-opaque-past-end.wbxml",
    wbxml(HEADER, [T.SyncML | 0x40], hdr(), [T.SyncBody | 0x40, T.Alert | 0x40], leaf(T.CmdID, "1"), [
      T.Data | 0x40,
      OPAQUE,
      100,
      0x31,
      0x32,
      0x33,
    ]),
  );
  add(
    "truncated-opaque-length-2pow32-minus-1.wbxml",
    wbxml(HEADER, [T.SyncML | 0x40], hdr(), [T.SyncBody | 0x40, T.Alert | 0x40], leaf(T.CmdID, "1"), [
      T.Data | 0x40,
      OPAQUE,
      ...mbUint32(0xffffffff),
      0x31,
    ]),
  );
  add("truncated-strtbl-past-end.wbxml", wbxml([0x02, 0xa4, 0x01, 106, 50], utf8("only ten b")));
  add(
    "truncated-str-i-without-nul.wbxml",
    wbxml(HEADER, [T.SyncML | 0x40, T.SyncHdr | 0x40, T.VerDTD | 0x40, STR_I], utf8("1.2")),
  );
  add(
    "truncated-str-t-past-table.wbxml",
    wbxml(
      [0x02, 0xa4, 0x01, 106, 4],
      utf8("1.2"),
      [0],
      body([], [T.Final], el(T.SyncHdr, [T.VerDTD | 0x40, STR_T, 10, END])),
    ),
  );
  add("truncated-inside-element.wbxml", message().subarray(0, message().length - 1));
  add("truncated-switch-page.wbxml", wbxml(HEADER, [T.SyncML | 0x40, SWITCH_PAGE]));

  // Unknown tokens, each where a command would be.
  const token = (name: string, bytes: number[]): void => {
    add(`unknown-token-${name}.wbxml`, message([bytes]));
  };
  token("ext-i-0", [0x40, ...utf8("x"), 0x00]);
  token("ext-t-0", [0x80, 0x00]);
  token("ext-0", [0xc0]);
  token("pi", [0x43, 0x05, 0x01]);
  token("literal-a", [0x84, 0x00]);
  token("literal-ac", [0xc4, 0x00]);
  token("attribute-bit-alert", [T.Alert | 0x80, 0x01]);
  token("attribute-and-content-bits-alert", [T.Alert | 0xc0, 0x01, 0x01]);
  token("reserved-0x30", [0x30]);
  token("unassigned-0x3f", [0x3f | 0x40, END]);
  token("unassigned-metinf-0x3f", [SWITCH_PAGE, 1, 0x3f, SWITCH_PAGE, 0]);
  token("page-7", [SWITCH_PAGE, 7, 0x05]);

  // Charsets and encodings.
  add("charset-utf16-1015.wbxml", wbxml([0x02, 0xa4, 0x01, ...mbUint32(1015), 0x00], body()));
  add("charset-shift-jis-17.wbxml", wbxml([0x02, 0xa4, 0x01, 17, 0x00], body()));
  add(
    "charset-utf16-declared.xml",
    xml(xmlMessage(XML_ALERT, { decl: '<?xml version="1.0" encoding="UTF-16"?>' })),
  );
  add(
    "charset-shift-jis-declared.xml",
    xml(xmlMessage(XML_ALERT, { decl: "<?xml version='1.0' encoding='Shift_JIS'?>" })),
  );
  const utf16 = Buffer.from("\ufeff" + xmlMessage(XML_ALERT, { decl: "" }), "utf16le");
  add("charset-utf16le-bom.xml", new Uint8Array(utf16));
  add(
    "invalid-utf8-str-i.wbxml",
    message([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, STR_I, 0x31, 0xc3, 0x28, 0x00, END])]),
  );
  add(
    "invalid-utf8-overlong-str-i.wbxml",
    message([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, STR_I, 0xc0, 0xaf, 0x00, END])]),
  );
  add(
    "invalid-utf8-surrogate-str-i.wbxml",
    message([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, STR_I, 0xed, 0xa0, 0x80, 0x00, END])]),
  );
  add(
    "invalid-utf8-string-table.wbxml",
    wbxml(
      [0x02, 0xa4, 0x01, 106, 4, 0x41, 0xff, 0x42, 0x00],
      body([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, STR_T, 0, END])]),
    ),
  );
  add(
    "invalid-utf8-opaque-leaf.wbxml",
    message([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, OPAQUE, 2, 0xc3, 0x28, END])]),
  );
  add(
    "invalid-entity-surrogate.wbxml",
    message([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, ENTITY, ...mbUint32(0xd800), END])]),
  );
  add(
    "invalid-entity-above-unicode.wbxml",
    message([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, ENTITY, ...mbUint32(0x110000), END])]),
  );
  add(
    "invalid-utf8.xml",
    Uint8Array.from([
      ...xml(xmlMessage("<Alert><CmdID>1</CmdID><Data>")),
      0x31,
      0xc3,
      0x28,
      ...xml("</Data></Alert><Final/></SyncBody></SyncML>"),
    ]),
  );

  // Versions and document types.
  add("version-0x00.wbxml", wbxml([0x00, 0xa4, 0x01, 106, 0x00], body()));
  add("version-0x04.wbxml", wbxml([0x04, 0xa4, 0x01, 106, 0x00], body()));
  add("verdtd-1.3.xml", xml(xmlMessage(XML_ALERT, { hdr: xmlHdr("1.3") })));
  add("verdtd-2.0.wbxml", wbxml(HEADER, body([ALERT], [T.Final], hdr("2.0"))));
  add("public-id-unknown-0x55.wbxml", wbxml([0x02, 0x55, 106, 0x00], body()));
  const wml = "-//WAPFORUM//DTD WML 1.1//EN";
  add(
    "public-id-literal-wml.wbxml",
    wbxml([0x02, 0x00, 0x00, 106, ...mbUint32(wml.length + 1)], utf8(wml), [0x00], body()),
  );
  add("public-id-literal-index-past-table.wbxml", wbxml([0x02, 0x00, 0x09, 106, 0x02, 0x41, 0x00], body()));
  add(
    "public-id-devinf-1.2.wbxml",
    wbxml([0x02, ...mbUint32(0x1203), 106, 0x00, 0x4a, 0x65, ...str("x"), END, END]),
  );
  add("first-byte-0x7f.bin", Uint8Array.from([0x7f, ...xml("<SyncML/>")]));

  // Trailing data.
  add("trailing-nul.wbxml", wbxml(HEADER, body(), [0x00]));
  add("trailing-second-root.wbxml", wbxml(HEADER, body(), body()));
  add("trailing-end.wbxml", wbxml(HEADER, body(), [END]));

  // Malformed XML.
  add(
    "xml-unclosed-tag.xml",
    xml('<?xml version="1.0"?>\n<SyncML xmlns="SYNCML:SYNCML1.2">\n  <SyncHdr>\n</SyncML>\n'),
  );
  add("xml-mismatched-tag.xml", xml(xmlMessage("<Alert><CmdID>1</Alert>")));
  add("xml-attribute.xml", xml(xmlMessage('<Alert><CmdID id="x">1</CmdID><Data>1201</Data></Alert>')));
  add("xml-undefined-entity.xml", xml(xmlMessage("<Alert><CmdID>1</CmdID><Data>&nbsp;</Data></Alert>")));
  add("xml-unbound-prefix.xml", xml(xmlMessage("<Alert><CmdID>1</CmdID><m:Data>1</m:Data></Alert>")));
  add("xml-char-ref-nul.xml", xml(xmlMessage("<Alert><CmdID>1</CmdID><Data>&#0;</Data></Alert>")));
  add("xml-raw-control-char.xml", xml(xmlMessage("<Alert><CmdID>1</CmdID><Data>\u0001</Data></Alert>")));
  add("xml-raw-uffff.xml", xml(xmlMessage("<Alert><CmdID>1</CmdID><Data>\uffff</Data></Alert>")));
  add(
    "xml-unterminated-cdata.xml",
    xml(xmlMessage("<Alert><CmdID>1</CmdID><Data><![CDATA[x</Data></Alert>")),
  );
  add("xml-unterminated-comment.xml", xml(xmlMessage("<Alert><CmdID>1</CmdID><!-- x </Alert>")));
  add("xml-no-root.xml", xml('<?xml version="1.0"?>\n'));
  add("xml-text-after-root.xml", xml(xmlMessage(XML_ALERT) + "junk"));
  add("xml-second-root.xml", xml(xmlMessage(XML_ALERT) + "<SyncML/>"));
  const laughs =
    '<?xml version="1.0"?>\n<!DOCTYPE SyncML [\n <!ENTITY lol "lol">\n' +
    Array.from(
      { length: 9 },
      (_, i) => ` <!ENTITY lol${i + 1} "${`&lol${i === 0 ? "" : i};`.repeat(10)}">\n`,
    ).join("") +
    "]>\n";
  add(
    "xml-billion-laughs.xml",
    xml(laughs + xmlMessage("<Alert><CmdID>1</CmdID><Data>&lol9;</Data></Alert>", { decl: "" })),
  );
  add(
    "xml-external-entity.xml",
    xml(
      '<?xml version="1.0"?>\n<!DOCTYPE SyncML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n' +
        xmlMessage("<Alert><CmdID>1</CmdID><Data>&xxe;</Data></Alert>", { decl: "" }),
    ),
  );
  add(
    "xml-quadratic-blowup.xml",
    xml(
      `<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY a "${"x".repeat(5000)}">]>` +
        xmlMessage(`<Alert><CmdID>1</CmdID><Data>${"&a;".repeat(2000)}</Data></Alert>`, { decl: "" }),
    ),
  );

  // Elements SyncML DM does not use, or in the wrong place.
  add("unknown-element-sync.xml", xml(xmlMessage("<Sync><CmdID>1</CmdID></Sync>")));
  add("unknown-element-sync.wbxml", message([el(T.Sync, leaf(T.CmdID, "1"))]));
  add("unknown-element-map.wbxml", message([el(T.Map, leaf(T.CmdID, "1"))]));
  add("unknown-element-put.xml", xml(xmlMessage("<Put><CmdID>1</CmdID></Put>")));
  add("unknown-element-root.xml", xml('<?xml version="1.0"?><Foo xmlns="SYNCML:SYNCML1.2"/>'));
  add(
    "unknown-element-in-item.xml",
    xml(xmlMessage("<Alert><CmdID>1</CmdID><Item><Lang>en</Lang></Item></Alert>")),
  );
  add(
    "unknown-element-metinf-in-hdr.xml",
    xml(
      xmlMessage(XML_ALERT, {
        hdr: xmlHdr().replace("</SyncHdr>", '<Type xmlns="syncml:metinf">x</Type></SyncHdr>'),
      }),
    ),
  );
  add(
    "unknown-element-foreign-namespace.xml",
    xml(xmlMessage('<Alert xmlns="urn:other"><CmdID>1</CmdID></Alert>')),
  );

  // Structure.
  add(
    "structure-missing-synchdr.xml",
    xml('<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody><Final/></SyncBody></SyncML>'),
  );
  add("structure-missing-cmdid.xml", xml(xmlMessage("<Alert><Data>1201</Data></Alert>")));
  add("structure-missing-cmdid.wbxml", message([el(T.Alert, leaf(T.Data, "1201"))]));
  add(
    "structure-status-without-data.xml",
    xml(
      xmlMessage("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd></Status>"),
    ),
  );
  add(
    "structure-missing-verdtd.xml",
    xml(xmlMessage(XML_ALERT, { hdr: xmlHdr().replace("<VerDTD>1.2</VerDTD>", "") })),
  );
  add(
    "structure-duplicate-msgid.xml",
    xml(
      xmlMessage(XML_ALERT, {
        hdr: xmlHdr().replace("<MsgID>1</MsgID>", "<MsgID>1</MsgID><MsgID>2</MsgID>"),
      }),
    ),
  );
  add("structure-text-in-container.xml", xml(xmlMessage("hello" + XML_ALERT)));
  add("structure-command-after-final.xml", xml(xmlMessage("<Final/>" + XML_ALERT, { final: "" })));
  add("structure-final-with-text.xml", xml(xmlMessage(XML_ALERT, { final: "<Final>yes</Final>" })));
  add(
    "structure-data-mixes-text-and-element.xml",
    xml(
      xmlMessage(
        '<Replace><CmdID>1</CmdID><Item><Data>x<MgmtTree xmlns="syncml:dmddf1.2"/></Data></Item></Replace>',
      ),
    ),
  );
  add(
    "structure-chal-without-meta.xml",
    xml(
      xmlMessage(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Chal/><Data>401</Data></Status>",
      ),
    ),
  );
  add("structure-end-before-root.wbxml", wbxml(HEADER, [END]));
  add("structure-text-before-root.wbxml", wbxml(HEADER, str("x"), body()));
  add("structure-opaque-before-root.wbxml", wbxml(HEADER, [OPAQUE, 1, 0x41], body()));
  add("structure-element-in-leaf.wbxml", message([el(T.Alert, el(T.CmdID, [T.Final]))]));
  add(
    "structure-literal-tag-not-a-name.wbxml",
    wbxml([0x02, 0xa4, 0x01, 106, 4], utf8("1 x"), [0x00], [T.SyncML | 0x40, LITERAL, 0x00, END]),
  );

  add("structure-final-twice.xml", xml(xmlMessage(XML_ALERT, { final: "<Final/><Final/>" })));
  add(
    "structure-duplicate-type-via-metinf.xml",
    xml(
      xmlMessage(
        '<Get><CmdID>1</CmdID><Meta><Type xmlns="syncml:metinf">a</Type><MetInf xmlns="syncml:metinf"><Type>b</Type></MetInf></Meta></Get>',
      ),
    ),
  );

  // Amplification: STR_T references make text out of proportion to the input.
  add("amplification-str-t-4mb.wbxml", strTAmplification(2000, 2100));
  add("amplification-str-t-range-error.wbxml", strTAmplification(32768, 16400));

  // A nested TNDS document (Meta Type ...dmtnds+wbxml, Data OPAQUE) with 62 elements in a message of 21.
  add("limit-nested-tnds.wbxml", nestedTnds(30));

  // Accepted quirks: these decode.
  add(
    "accept-bare-ampersand.xml",
    xml(
      xmlMessage("<Alert><CmdID>1</CmdID><Data>1100</Data><Item><Data>MAXDT=15&DR=1</Data></Item></Alert>"),
    ),
  );
  add(
    "accept-escaped-ampersand.xml",
    xml(
      xmlMessage(
        "<Alert><CmdID>1</CmdID><Data>1100</Data><Item><Data>MAXDT=15&amp;DR=1</Data></Item></Alert>",
      ),
    ),
  );
  add("accept-no-xmlns.xml", xml(xmlMessage(XML_ALERT, { xmlns: "" })));
  add("accept-utf8-bom.xml", Uint8Array.from([0xef, 0xbb, 0xbf, ...xml(xmlMessage(XML_ALERT))]));
  // Empty SessionID and Final in the three WBXML forms.
  add("accept-empty-bare-token.wbxml", wbxml(HEADER, body([ALERT], [T.Final], hdr("1.2", [T.SessionID]))));
  add(
    "accept-empty-content-end.wbxml",
    wbxml(HEADER, body([ALERT], [T.Final | 0x40, END], hdr("1.2", [T.SessionID | 0x40, END]))),
  );
  add(
    "accept-empty-content-str-i-end.wbxml",
    wbxml(
      HEADER,
      body([ALERT], [T.Final | 0x40, STR_I, 0x00, END], hdr("1.2", [T.SessionID | 0x40, STR_I, 0x00, END])),
    ),
  );
  add(
    "accept-public-id-literal-nul.wbxml",
    wbxml([0x02, 0x00, 0x00, 106, ...mbUint32(FPI_12.length + 1)], utf8(FPI_12), [0x00], body([ALERT])),
  );
  add(
    "accept-public-id-literal-no-nul.wbxml",
    wbxml([0x02, 0x00, 0x00, 106, ...mbUint32(FPI_12.length)], utf8(FPI_12), body([ALERT])),
  );
  const loose = "-//syncml//dtd  SyncML 1.2//en ";
  add(
    "accept-public-id-literal-loose.wbxml",
    wbxml([0x02, 0x00, 0x00, 106, ...mbUint32(loose.length + 1)], utf8(loose), [0x00], body([ALERT])),
  );
  add("accept-public-id-unknown-1.wbxml", wbxml([0x02, 0x01, 106, 0x00], body([ALERT])));
  add("accept-wbxml-1.1.wbxml", wbxml([0x01, ...HEADER.slice(1)], body([ALERT])));
  add("accept-wbxml-1.3.wbxml", wbxml([0x03, ...HEADER.slice(1)], body([ALERT])));
  add("accept-charset-us-ascii.wbxml", wbxml([0x02, 0xa4, 0x01, 3, 0x00], body([ALERT])));
  add(
    "accept-charset-latin1.wbxml",
    wbxml(
      [0x02, 0xa4, 0x01, 4, 0x00],
      body([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, STR_I, 0xe9, 0x00, END])]),
    ),
  );
  add(
    "accept-str-t-and-entity.wbxml",
    wbxml(
      [0x02, 0xa4, 0x01, 106, 5],
      utf8("12"),
      [0x00],
      utf8("0"),
      [0x00],
      body([el(T.Alert, leaf(T.CmdID, "1"), [T.Data | 0x40, STR_T, 0, STR_T, 3, ENTITY, 0x31, END])]),
    ),
  );
  add(
    "accept-metinf-without-switch-page-back.wbxml",
    message([
      el(
        T.Alert,
        leaf(T.CmdID, "1"),
        leaf(T.Data, "1226"),
        el(T.Item, el(T.Meta, [SWITCH_PAGE, 1], leaf(T.Type, "x"), [SWITCH_PAGE, 0]), leaf(T.Data, "d")),
      ),
    ]),
  );
  add(
    "accept-opaque-data.wbxml",
    message([
      el(
        0x20 /* Replace */,
        leaf(T.CmdID, "1"),
        el(T.Item, [T.Data | 0x40, OPAQUE, 4, 0x01, 0x02, 0x03, 0xff, END]),
      ),
    ]),
  );
  add(
    "accept-opaque-two-fragments.wbxml",
    message([
      el(
        0x20 /* Replace */,
        leaf(T.CmdID, "1"),
        el(T.Item, [T.Data | 0x40, OPAQUE, 2, 0x61, 0x62, OPAQUE, 1, 0xff, END]),
      ),
    ]),
  );
  add(
    "accept-inline-tnds-without-type.xml",
    xml(
      xmlMessage(
        '<Add><CmdID>1</CmdID><Item><Target><LocURI>./Vendor</LocURI></Target><Data><MgmtTree xmlns="syncml:dmddf1.2">' +
          "<VerDTD>1.2</VerDTD><Node><NodeName>X</NodeName></Node></MgmtTree></Data></Item></Add>",
      ),
    ),
  );

  add(
    "accept-opaque-after-text.wbxml",
    message([
      el(
        0x20 /* Replace */,
        leaf(T.CmdID, "1"),
        el(T.Item, [T.Data | 0x40, ...str("d"), OPAQUE, 1, 0x41, END]),
      ),
    ]),
  );

  // XML namespaces (Namespaces in XML 1.0).
  const metinfGet = (meta: string, getAttrs = ""): string =>
    `<Get${getAttrs}><CmdID>1</CmdID><Meta>${meta}</Meta></Get>`;
  const withRootAttrs = (attrs: string, commands: string): Uint8Array =>
    xml(xmlMessage(commands, { xmlns: ` xmlns="SYNCML:SYNCML1.2"${attrs}` }));
  add(
    "xml-ns-prefix-bound-to-empty.xml",
    withRootAttrs(' xmlns:m="syncml:metinf"', metinfGet("<m:Type>x</m:Type>", ' xmlns:m=""')),
  );
  add(
    "xml-ns-prefix-out-of-scope.xml",
    xml(
      xmlMessage(metinfGet("<m:Type>x</m:Type>"), {
        hdr: xmlHdr().replace("<SyncHdr>", '<SyncHdr xmlns:m="syncml:metinf">'),
      }),
    ),
  );
  add("xml-ns-duplicate-default.xml", withRootAttrs(' xmlns="SYNCML:SYNCML1.1"', XML_ALERT));
  add("xml-ns-duplicate-prefix.xml", withRootAttrs(' xmlns:m="a" xmlns:m="b"', XML_ALERT));
  add("xml-ns-rebind-xml-prefix.xml", withRootAttrs(' xmlns:xml="urn:other"', XML_ALERT));
  add("xml-ns-declare-xmlns-prefix.xml", withRootAttrs(' xmlns:xmlns="urn:other"', XML_ALERT));
  add(
    "xml-ns-two-colons.xml",
    withRootAttrs(
      ' xmlns:a="SYNCML:SYNCML1.2"',
      XML_ALERT.replace("<Alert>", "<a:b:Alert>").replace("</Alert>", "</a:b:Alert>"),
    ),
  );
  add(
    "accept-xml-ns-prefix-shadowed-and-restored.xml",
    withRootAttrs(
      ' xmlns:m="syncml:metinf"',
      '<Get><CmdID>1</CmdID><Item xmlns:m="urn:other"><Target><LocURI>x</LocURI></Target></Item></Get>' +
        metinfGet("<m:Type>x</m:Type>").replace("<CmdID>1</CmdID>", "<CmdID>2</CmdID>"),
    ),
  );
  add(
    "accept-xml-ns-proto-prefix.xml",
    withRootAttrs(' xmlns:__proto__="syncml:metinf"', metinfGet("<__proto__:Type>x</__proto__:Type>")),
  );
  add(
    "accept-xml-ns-default-undeclared.xml",
    xml(xmlMessage('<Alert xmlns=""><CmdID>1</CmdID><Data>1201</Data></Alert>')),
  );
  return f;
}

/** Writes the fixtures that are missing; throws if one exists with other bytes. Returns the names written. */
export function writeMalformedFixtures(): string[] {
  const written: string[] = [];
  for (const [name, bytes] of buildMalformedFixtures()) {
    const path = MALFORMED_DIR + name;
    if (existsSync(path)) {
      if (!Buffer.from(bytes).equals(readFileSync(path))) {
        throw new Error(`${path} exists with other bytes: fixtures only grow; give the new input a new name`);
      }
      continue;
    }
    writeFileSync(path, bytes);
    written.push(name);
  }
  return written;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const written = writeMalformedFixtures();
  console.log(
    `${written.length} fixture(s) written to ${MALFORMED_DIR}${written.map((n) => `\n  ${n}`).join("")}`,
  );
}
