import assert from "node:assert/strict";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import {
  decodeMessage,
  detectEncoding,
  encodeMessage,
  encodingForContentType,
  repairBareAmpersands,
  tryDecodeMessage,
  type ItemCommand,
  type SyncMLMessage,
} from "../../src/syncml/index.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function msg(body: string, ns = "SYNCML:SYNCML1.2", ver = "1.2"): string {
  return (
    `<SyncML xmlns="${ns}"><SyncHdr><VerDTD>${ver}</VerDTD><VerProto>DM/${ver}</VerProto>` +
    `<SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>IMEI:1</LocURI></Target>` +
    `<Source><LocURI>http://srv</LocURI></Source></SyncHdr><SyncBody>${body}<Final/></SyncBody></SyncML>`
  );
}

function firstCommand(xml: string): SyncMLMessage["body"]["commands"][number] {
  const c = decodeMessage(enc(xml)).message.body.commands[0];
  assert.ok(c !== undefined, "message has a command");
  return c;
}

function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GatewayError, `expected a GatewayError, got ${String(e)}`);
    return e.code;
  }
  assert.fail("expected an error");
}

describe("SyncML XML decoding", () => {
  it("reads an unescaped & in Alert option text as a literal &", () => {
    const alert = firstCommand(
      msg(
        `<Alert><CmdID>2</CmdID><Data>1101</Data><Item><Data>MAXDT=15&DR=1</Data></Item><Item><Data>Reboot?</Data></Item></Alert>`,
      ),
    );
    assert.ok(alert.kind === "Alert");
    assert.deepEqual(alert.items[0]?.data, { kind: "text", text: "MAXDT=15&DR=1" });
  });

  it("leaves & alone inside CDATA and comments, and keeps well-formed references", () => {
    assert.equal(
      repairBareAmpersands("<a><![CDATA[x&y]]>&amp;&#65;&b</a>"),
      "<a><![CDATA[x&y]]>&amp;&#65;&amp;b</a>",
    );
    assert.equal(repairBareAmpersands("<!-- a&b --><a>c&d</a>"), "<!-- a&b --><a>c&amp;d</a>");
  });

  it("refuses an undefined entity reference with Codec_MalformedXml", () => {
    assert.equal(
      codeOf(() => decodeMessage(enc(msg(`<Get><CmdID>2</CmdID><Item><Data>&bogus;</Data></Item></Get>`)))),
      ErrorCode.Codec_MalformedXml,
    );
  });

  it("preserves Data text exactly: spaces, newlines, CR, entities and CDATA", () => {
    const text = '  line 1\r\n\tline <2> & "3"  ';
    const xml =
      msg(`<Replace><CmdID>2</CmdID><Item><Target><LocURI>./a</LocURI></Target><Data><![CDATA[  line 1]]>&#13;
\tline &lt;2&gt; &amp; "3"  </Data></Item></Replace>`);
    const c = firstCommand(xml) as ItemCommand;
    assert.deepEqual(c.items[0]?.data, { kind: "text", text });
    // And it survives both encodings.
    const m = decodeMessage(enc(xml)).message;
    for (const encoding of ["xml", "wbxml"] as const) {
      const again = decodeMessage(encodeMessage(m, encoding)).message;
      assert.deepEqual(
        (again.body.commands[0] as ItemCommand).items[0]?.data,
        { kind: "text", text },
        encoding,
      );
    }
  });

  it("accepts MetInf declared per element, once by default namespace, or by prefix", () => {
    const forms = [
      `<Meta><Format xmlns="syncml:metinf">int</Format><Type xmlns="syncml:metinf">text/plain</Type></Meta>`,
      `<Meta xmlns="syncml:metinf"><Format>int</Format><Type>text/plain</Type></Meta>`,
      `<Meta xmlns:m="syncml:metinf"><m:Format>int</m:Format><m:Type>text/plain</m:Type></Meta>`,
    ];
    for (const meta of forms) {
      const c = firstCommand(
        msg(
          `<Replace><CmdID>2</CmdID><Item><Target><LocURI>./a</LocURI></Target>${meta}<Data>1</Data></Item></Replace>`,
        ),
      );
      assert.deepEqual((c as ItemCommand).items[0]?.meta, { format: "int", type: "text/plain" }, meta);
    }
  });

  it("reports malformed XML with its line and column", () => {
    const bad = enc(`<SyncML xmlns="SYNCML:SYNCML1.2">\n<SyncHdr>\n  <VerDTD>1.2</Ver>\n</SyncHdr></SyncML>`);
    const r = tryDecodeMessage(bad);
    assert.ok(!r.ok);
    assert.equal(r.error.code, ErrorCode.Codec_MalformedXml);
    const context = r.error.context ?? {};
    assert.equal(context["line"], 3);
    assert.equal(typeof context["column"], "number");
    assert.match(r.error.message, /line 3, column \d+/);
  });

  it("refuses a SyncML element DM does not use with Codec_UnknownElement", () => {
    assert.equal(
      codeOf(() => decodeMessage(enc(msg(`<Sync><CmdID>2</CmdID></Sync>`)))),
      ErrorCode.Codec_UnknownElement,
    );
  });

  it("refuses a Status without its Data with Codec_InvalidStructure", () => {
    const xml = msg(
      `<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd></Status>`,
    );
    assert.equal(
      codeOf(() => decodeMessage(enc(xml))),
      ErrorCode.Codec_InvalidStructure,
    );
  });

  it("takes the version from VerDTD: a DM 1.1.2 message", () => {
    const m = decodeMessage(
      enc(msg(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`, "SYNCML:SYNCML1.1", "1.1")),
    ).message;
    assert.equal(m.version, "1.1");
    const wbxml = encodeMessage(m, "wbxml");
    // WBXML 1.2, public id 0x0FD3 (SyncML 1.1), UTF-8, no string table.
    assert.deepEqual([...wbxml.subarray(0, 5)], [0x02, 0x9f, 0x53, 0x6a, 0x00]);
    assert.deepEqual(decodeMessage(wbxml).message, m);
    assert.match(new TextDecoder().decode(encodeMessage(m, "xml")), /xmlns="SYNCML:SYNCML1\.1"/);
  });

  it("keeps the exact received bytes beside the message (for HMAC)", () => {
    const bytes = enc(msg(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`));
    const d = decodeMessage(bytes);
    assert.equal(d.raw, bytes);
    assert.equal(d.encoding, "xml");
  });
});

describe("SyncML WBXML encoding", () => {
  it("writes the header DM devices send: 02 A4 01 6A 00", () => {
    const m = decodeMessage(enc(msg(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`))).message;
    assert.deepEqual([...encodeMessage(m, "wbxml").subarray(0, 5)], [0x02, 0xa4, 0x01, 0x6a, 0x00]);
  });

  it("writes an empty element as its bare token and binary Data as OPAQUE", () => {
    const m: SyncMLMessage = {
      version: "1.2",
      hdr: {
        verDTD: "1.2",
        verProto: "DM/1.2",
        sessionId: "1",
        msgId: "1",
        target: { locUri: "a" },
        source: { locUri: "b" },
      },
      body: {
        commands: [
          {
            kind: "Replace",
            cmdId: "2",
            items: [
              { target: { locUri: "./x" }, data: { kind: "opaque", bytes: Uint8Array.of(0, 0xff, 0x80) } },
            ],
          },
        ],
        final: true,
      },
    };
    const hex = Buffer.from(encodeMessage(m, "wbxml")).toString("hex");
    assert.ok(hex.includes("4fc30300ff8001"), `OPAQUE Data in ${hex}`); // <Data> OPAQUE len 3 ... END
    assert.ok(hex.endsWith("120101"), `bare <Final/> then END END in ${hex}`);
    assert.equal(
      codeOf(() => encodeMessage(m, "xml")),
      ErrorCode.Codec_EncodeFailed,
    );
  });
});

describe("encoding detection", () => {
  it("tells WBXML from XML by the first byte and refuses anything else", () => {
    assert.equal(detectEncoding(Uint8Array.of(0x02, 0xa4)), "wbxml");
    assert.equal(detectEncoding(enc("<SyncML/>")), "xml");
    assert.equal(detectEncoding(Uint8Array.of(0xef, 0xbb, 0xbf, 0x3c)), "xml");
    assert.equal(
      codeOf(() => detectEncoding(Uint8Array.of(0x7f))),
      ErrorCode.Codec_UnknownDocument,
    );
    assert.equal(
      codeOf(() => detectEncoding(new Uint8Array(0))),
      ErrorCode.Codec_Truncated,
    );
  });

  it("maps DM content types, including the older vnd.syncml+xml", () => {
    assert.equal(encodingForContentType("application/vnd.syncml.dm+wbxml"), "wbxml");
    assert.equal(encodingForContentType("application/vnd.syncml.dm+xml; charset=utf-8"), "xml");
    assert.equal(encodingForContentType("application/vnd.syncml+xml"), "xml");
    assert.equal(encodingForContentType("text/html"), undefined);
  });
});
