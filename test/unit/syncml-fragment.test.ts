/**
 * SyncML DM command fragments (src/syncml/fragment.ts), the FanOutCommands / DevResultXML /
 * DevResultWBXML values of the Fanout MO: round trips (property), byte equality with the message
 * codec's SyncBody, hostile input with its error codes, and libwbxml interop of the WBXML form.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ErrorCode } from "../../src/core/errors.js";
import { isElement, type Element } from "../../src/syncml/element.js";
import {
  DEFAULT_LIMITS,
  DEVINF_12,
  NS_DEVINF,
  NS_SYNCML_12,
  SYNCML_12,
  decodeCommandFragment,
  encodeCommandFragment,
  encodeMessage,
  encodeWbxmlDocument,
  messageToElement,
  type Command,
  type DecodeLimits,
  type Encoding,
  type FragmentContent,
  type FragmentDecodeOptions,
  type SyncHdr,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import { syncMLMessage, xmlSpelling, type ArbitraryTarget } from "../helpers/arbitraries.js";
import { requireLibwbxml, wbxml2xml, xml2wbxml } from "../helpers/libwbxml.js";

const RUNS = 200;
const UTF8 = new TextDecoder();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function check<T>(arb: fc.Arbitrary<T>, predicate: (value: T) => void, numRuns = RUNS): void {
  fc.assert(fc.property(arb, predicate), { numRuns });
}

const COMMAND_KINDS = new Set([
  "Add",
  "Replace",
  "Get",
  "Delete",
  "Exec",
  "Copy",
  "Atomic",
  "Sequence",
  "Alert",
]);

/** The commands of a generated message, kept to one fragment content, CmdIDs renumbered 1, 2, ... */
function toFragment(commands: readonly Command[], content: FragmentContent): Command[] {
  let next = 1;
  const keep = (list: readonly Command[], top: boolean): Command[] =>
    list
      .filter((c) =>
        content === "commands"
          ? COMMAND_KINDS.has(c.kind)
          : top && (c.kind === "Status" || c.kind === "Results"),
      )
      .map((c): Command => {
        const cmdId = String(next++);
        if (c.kind === "Atomic" || c.kind === "Sequence")
          return { ...c, cmdId, commands: keep(c.commands, false) };
        return { ...c, cmdId };
      });
  return keep(commands, true);
}

function fragmentArb(content: FragmentContent, target: ArbitraryTarget): fc.Arbitrary<Command[]> {
  return syncMLMessage({ target })
    .map((m) => toFragment(m.body.commands, content))
    .filter((f) => f.length > 0);
}

function decodeOk(input: string | Uint8Array, options: FragmentDecodeOptions = {}): Command[] {
  const r = decodeCommandFragment(input, options);
  if (!r.ok) throw r.error;
  return r.value;
}

function assertFails(
  input: string | Uint8Array,
  code: ErrorCode,
  options: FragmentDecodeOptions = {},
  mentions?: string,
): void {
  const r = decodeCommandFragment(input, options);
  assert.ok(!r.ok, `expected ${code}, decoded ${JSON.stringify(r.ok && r.value)}`);
  assert.equal(r.error.code, code, r.error.message);
  if (mentions !== undefined) assert.ok(r.error.message.includes(mentions), r.error.message);
}

const limits = (l: Partial<DecodeLimits>): DecodeLimits => ({ ...DEFAULT_LIMITS, ...l });

const GET = "<Get><CmdID>1</CmdID><Item><Target><LocURI>./DevInfo/Mod</LocURI></Target></Item></Get>";
const REPLACE =
  "<Replace><CmdID>2</CmdID><Item><Target><LocURI>./Vendor/x</LocURI></Target><Data>MAXDT=15&DR=1</Data></Item></Replace>";
const STATUS =
  "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>1</CmdRef><Cmd>Get</Cmd><TargetRef>./DevInfo/Mod</TargetRef><Data>200</Data></Status>";
const RESULTS =
  "<Results><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>1</CmdRef><Item><Source><LocURI>./DevInfo/Mod</LocURI></Source><Data>X1</Data></Item></Results>";

/** A fan-out fragment as a server would write it, and the device's replies. */
const FANOUT: Command[] = [
  { kind: "Get", cmdId: "1", items: [{ target: { locUri: "./DevInfo/Mod" } }] },
  {
    kind: "Atomic",
    cmdId: "2",
    commands: [
      {
        kind: "Replace",
        cmdId: "3",
        meta: { format: "chr", type: "text/plain" },
        items: [{ target: { locUri: "./Vendor/x" }, data: { kind: "text", text: "a & b <c>" } }],
      },
      { kind: "Delete", cmdId: "4", items: [{ target: { locUri: "./Vendor/y" } }] },
    ],
  },
  {
    kind: "Sequence",
    cmdId: "5",
    commands: [
      { kind: "Exec", cmdId: "6", correlator: "abc", items: [{ target: { locUri: "./FUMO/Update" } }] },
      { kind: "Alert", cmdId: "7", data: "1223", items: [] },
    ],
  },
];
const REPLIES: Command[] = [
  {
    kind: "Status",
    cmdId: "1",
    msgRef: "1",
    cmdRef: "1",
    cmd: "Get",
    targetRefs: ["./DevInfo/Mod"],
    sourceRefs: [],
    data: "200",
    items: [],
  },
  {
    kind: "Results",
    cmdId: "2",
    msgRef: "1",
    cmdRef: "1",
    meta: { format: "chr", type: "text/plain" },
    targetRefs: [],
    sourceRefs: ["./DevInfo/Mod"],
    items: [{ source: { locUri: "./DevInfo/Mod" }, data: { kind: "text", text: "X1 & co" } }],
  },
];

const HDR: SyncHdr = {
  verDTD: "1.2",
  verProto: "DM/1.2",
  sessionId: "1",
  msgId: "1",
  target: { locUri: "IMEI:1" },
  source: { locUri: "https://server" },
};

function nested(kind: "Atomic" | "Sequence", depth: number): Command {
  let c: Command = { kind: "Get", cmdId: "0", items: [] };
  for (let i = 1; i <= depth; i++) c = { kind, cmdId: String(i), commands: [c] };
  return c;
}

function syncBodyOf(message: SyncMLMessage, encoding: Encoding): Element {
  const body = messageToElement(message, encoding).children.find(
    (c): c is Element => isElement(c) && c.name === "SyncBody",
  );
  assert.ok(body);
  return body;
}

describe("SyncML command fragments", () => {
  describe("round trips (property)", () => {
    for (const content of ["commands", "replies"] as const) {
      it(`${content}: model -> XML -> model is the identity`, () => {
        check(fragmentArb(content, "xml"), (f) => {
          assert.deepStrictEqual(decodeOk(encodeCommandFragment(f, "xml"), { allow: content }), f);
        });
      });

      it(`${content}: model -> WBXML -> model is the identity (opaque Data and TNDS included)`, () => {
        check(fragmentArb(content, "wbxml"), (f) => {
          assert.deepStrictEqual(decodeOk(encodeCommandFragment(f, "wbxml"), { allow: content }), f);
        });
      });

      it(`${content}: the XML text (string input) and the bare commands without <SyncBody> decode the same`, () => {
        check(fragmentArb(content, "xml"), (f) => {
          const xml = UTF8.decode(encodeCommandFragment(f, "xml"));
          const open = `<SyncBody xmlns="${NS_SYNCML_12}">`;
          assert.ok(xml.startsWith(open) && xml.endsWith("</SyncBody>"));
          const bare = xml.slice(open.length, -"</SyncBody>".length);
          assert.deepStrictEqual(decodeOk(xml, { allow: content }), f);
          assert.deepStrictEqual(decodeOk(bare, { allow: content }), f);
          assert.deepStrictEqual(decodeOk(bytes(`<?xml version="1.0"?>\n${bare}\n`), { allow: content }), f);
        });
      });
    }

    it("every XML spelling of the SyncBody (prefixes, CDATA, comments, BOM, declaration, DOCTYPE) decodes", () => {
      check(
        fc.tuple(fragmentArb("commands", "xml"), fc.nat()),
        ([f, seed]) => {
          const spelled = xmlSpelling(
            syncBodyOf({ version: "1.2", hdr: HDR, body: { commands: f, final: false } }, "xml"),
            seed,
          );
          assert.deepStrictEqual(decodeOk(spelled), f, UTF8.decode(spelled));
        },
        150,
      );
    });

    it("XML and WBXML of a fragment for both formats decode to the same commands", () => {
      check(fragmentArb("commands", "both"), (f) => {
        assert.deepStrictEqual(
          decodeOk(encodeCommandFragment(f, "wbxml")),
          decodeOk(encodeCommandFragment(f, "xml")),
        );
      });
    });
  });

  describe("byte equality with the message codec", () => {
    // A fragment is the SyncBody of encodeMessage's output, except that in XML it declares the
    // namespace the SyncML element declares in a message (it stands alone); in WBXML it has its own
    // 5-byte header and starts on code page 0, which the message's SyncBody does too (any SWITCH_PAGE
    // back to page 0 after a SyncHdr Meta or Cred belongs to the message, before the SyncBody token).
    const messages = fc
      .tuple(
        syncMLMessage({ version: "1.2", target: "both" }),
        fc.constantFrom<FragmentContent>("commands", "replies"),
      )
      .map(([m, content]) => ({ hdr: m.hdr, commands: toFragment(m.body.commands, content) }))
      .filter((x) => x.commands.length > 0);

    it("XML: encodeMessage = the empty-body message with the fragment (minus its xmlns) as SyncBody", () => {
      check(messages, ({ hdr, commands }) => {
        const full = UTF8.decode(
          encodeMessage({ version: "1.2", hdr, body: { commands, final: false } }, "xml"),
        );
        const empty = UTF8.decode(
          encodeMessage({ version: "1.2", hdr, body: { commands: [], final: false } }, "xml"),
        );
        const fragment = UTF8.decode(encodeCommandFragment(commands, "xml"));
        const inMessage = fragment.replace(`<SyncBody xmlns="${NS_SYNCML_12}">`, "<SyncBody>");
        assert.equal(
          full,
          empty.replace("<SyncBody/>", () => inMessage),
        );
      });
    });

    it("WBXML: encodeMessage = header + SyncML + SyncHdr + the fragment after its header + END", () => {
      check(messages, ({ hdr, commands }) => {
        const full = encodeMessage({ version: "1.2", hdr, body: { commands, final: false } }, "wbxml");
        const empty = encodeMessage({ version: "1.2", hdr, body: { commands: [], final: false } }, "wbxml");
        const fragment = encodeCommandFragment(commands, "wbxml");
        assert.deepEqual([...fragment.subarray(0, 5)], [0x02, 0xa4, 0x01, 0x6a, 0x00]);
        assert.deepEqual([...empty.subarray(-2)], [0x2b, 0x01]); // bare SyncBody token, END of SyncML
        const expected = Buffer.concat([empty.subarray(0, -2), fragment.subarray(5), Buffer.from([0x01])]);
        assert.equal(Buffer.from(full).toString("hex"), expected.toString("hex"));
      });
    });
  });

  describe("decode", () => {
    it("reads bare commands, a SyncBody, and a SyncML holding only a SyncBody, in either form", () => {
      const expected = decodeOk(`${GET}\n  ${REPLACE}`);
      assert.equal(expected.length, 2);
      assert.deepEqual(expected[1], {
        kind: "Replace",
        cmdId: "2",
        items: [{ target: { locUri: "./Vendor/x" }, data: { kind: "text", text: "MAXDT=15&DR=1" } }],
      });
      for (const input of [
        `<SyncBody>${GET}${REPLACE}</SyncBody>`,
        `<SyncBody xmlns="SYNCML:SYNCML1.1">${GET}${REPLACE}</SyncBody>`,
        `<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE SyncML [<!ENTITY x "]>">]><!-- c -->\n<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody>${GET}${REPLACE}</SyncBody></SyncML>\n<!-- end -->`,
        `\ufeff${GET}${REPLACE}`,
        bytes(`\ufeff<?xml version="1.0"?>${GET}${REPLACE}`),
      ]) {
        assert.deepEqual(decodeOk(input), expected, String(input));
      }
      const wbxml = encodeCommandFragment(expected, "wbxml");
      assert.deepEqual(decodeOk(wbxml), expected);
      const syncmlRoot = encodeWbxmlDocument(
        {
          name: "SyncML",
          namespace: NS_SYNCML_12,
          children: [
            syncBodyOf({ version: "1.2", hdr: HDR, body: { commands: expected, final: false } }, "wbxml"),
          ],
        },
        SYNCML_12,
      );
      assert.deepEqual(decodeOk(syncmlRoot), expected);
    });

    it("honours the XML declaration's charset", () => {
      const latin1 = Buffer.concat([
        Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><Replace><CmdID>1</CmdID><Item><Data>'),
        Buffer.from([0xe9]),
        Buffer.from("</Data></Item></Replace>"),
      ]);
      const [cmd] = decodeOk(new Uint8Array(latin1));
      assert.ok(cmd?.kind === "Replace");
      assert.deepEqual(cmd.items[0]?.data, { kind: "text", text: "\u00e9" });
    });

    it("replies: accepts Status and Results", () => {
      const r = decodeOk(STATUS + RESULTS, { allow: "replies" });
      assert.deepEqual(
        r.map((c) => c.kind),
        ["Status", "Results"],
      );
    });
  });

  describe("hostile input", () => {
    const deepXml = (n: number): string =>
      Array.from({ length: n }, (_, i) => `<Atomic><CmdID>${i + 1}</CmdID>`).join("") + "</Atomic>".repeat(n);
    const cases: {
      readonly name: string;
      readonly input: string | Uint8Array;
      readonly code: ErrorCode;
      readonly options?: FragmentDecodeOptions;
      readonly mentions?: string;
    }[] = [
      { name: "empty string", input: "", code: ErrorCode.Codec_Truncated },
      { name: "empty bytes", input: new Uint8Array(0), code: ErrorCode.Codec_Truncated },
      { name: "white space only (no command)", input: " \n ", code: ErrorCode.Codec_InvalidStructure },
      { name: "empty SyncBody", input: "<SyncBody/>", code: ErrorCode.Codec_InvalidStructure },
      {
        name: "neither XML nor WBXML",
        input: new Uint8Array([0x00, 0x01]),
        code: ErrorCode.Codec_UnknownDocument,
      },
      {
        name: "Status in a command fragment",
        input: GET + STATUS,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<Status>",
      },
      {
        name: "Results in a command fragment",
        input: RESULTS,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<Results>",
      },
      { name: "Final", input: `${GET}<Final/>`, code: ErrorCode.Codec_InvalidStructure, mentions: "<Final>" },
      {
        name: "SyncHdr",
        input: `<SyncHdr/>${GET}`,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<SyncHdr>",
      },
      {
        name: "SyncML with a SyncHdr",
        input: `<SyncML><SyncHdr/><SyncBody>${GET}</SyncBody></SyncML>`,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<SyncHdr>",
      },
      {
        name: "SyncBody in SyncBody",
        input: `<SyncBody><SyncBody>${GET}</SyncBody></SyncBody>`,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<SyncBody>",
      },
      {
        name: "Sync (SyncML, not DM)",
        input: "<Sync><CmdID>1</CmdID></Sync>",
        code: ErrorCode.Codec_UnknownElement,
        mentions: "<Sync>",
      },
      {
        name: "an element in a foreign namespace",
        input: '<x:Add xmlns:x="urn:x"><CmdID>1</CmdID></x:Add>',
        code: ErrorCode.Codec_UnknownElement,
        mentions: "<Add>",
      },
      {
        name: "Status nested in Atomic",
        input: `<Atomic><CmdID>9</CmdID>${STATUS}</Atomic>`,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<Status>",
      },
      {
        name: "Final nested in Sequence",
        input: `<Sequence><CmdID>9</CmdID>${GET}<Final/></Sequence>`,
        code: ErrorCode.Codec_UnknownElement,
        mentions: "<Final>",
      },
      {
        name: "a command in a reply fragment",
        input: STATUS + GET,
        code: ErrorCode.Codec_InvalidStructure,
        options: { allow: "replies" },
        mentions: "<Get>",
      },
      {
        name: "missing CmdID",
        input: "<Get><Item><Target><LocURI>.</LocURI></Target></Item></Get>",
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "CmdID",
      },
      {
        name: "empty CmdID",
        input: "<Get><CmdID> </CmdID></Get>",
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "CmdID",
      },
      { name: "duplicate CmdID", input: GET + GET, code: ErrorCode.Codec_InvalidStructure, mentions: '"1"' },
      {
        name: "duplicate CmdID inside Atomic",
        input: `${GET}<Atomic><CmdID>2</CmdID>${GET}</Atomic>`,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: '"1"',
      },
      {
        name: "duplicate CmdID of a container",
        input: `<Sequence><CmdID>1</CmdID>${GET}</Sequence>`,
        code: ErrorCode.Codec_InvalidStructure,
        mentions: '"1"',
      },
      {
        name: "text between commands",
        input: `${GET} junk ${REPLACE}`,
        code: ErrorCode.Codec_InvalidStructure,
      },
      { name: "unclosed command", input: "<Get><CmdID>1</CmdID>", code: ErrorCode.Codec_MalformedXml },
      {
        name: "closing the wrapper to smuggle a second body",
        input: `${GET}</SyncBody><SyncBody>${STATUS}`,
        code: ErrorCode.Codec_MalformedXml,
      },
      {
        name: "an attribute",
        input: '<Get a="1"><CmdID>1</CmdID></Get>',
        code: ErrorCode.Codec_MalformedXml,
      },
      {
        name: "UTF-16 (refused by its first byte, as decodeMessage does)",
        input: new Uint8Array([0xff, 0xfe, 0x3c, 0x00]),
        code: ErrorCode.Codec_UnknownDocument,
      },
      {
        name: "invalid UTF-8",
        input: new Uint8Array([...bytes("<Get><CmdID>"), 0xc3, 0x28, ...bytes("</CmdID></Get>")]),
        code: ErrorCode.Codec_InvalidEncoding,
      },
      {
        name: "XML over maxBytes (string)",
        input: GET,
        options: { limits: limits({ maxBytes: GET.length - 1 }) },
        code: ErrorCode.Codec_TooLarge,
      },
      {
        name: "XML over maxBytes (bytes)",
        input: bytes(GET),
        options: { limits: limits({ maxBytes: GET.length - 1 }) },
        code: ErrorCode.Codec_TooLarge,
      },
      {
        name: "XML nested deeper than maxDepth (CmdID at maxDepth + 1)",
        input: deepXml(DEFAULT_LIMITS.maxDepth),
        code: ErrorCode.Codec_TooDeep,
      },
      {
        name: "XML with more than maxElements",
        input: GET,
        options: { limits: limits({ maxElements: 4 }) }, // GET has 5
        code: ErrorCode.Codec_TooManyElements,
      },
      {
        name: "WBXML over maxBytes",
        input: encodeCommandFragment(FANOUT, "wbxml"),
        options: { limits: limits({ maxBytes: 20 }) },
        code: ErrorCode.Codec_TooLarge,
      },
      {
        name: "WBXML nested deeper than maxDepth",
        input: encodeCommandFragment([nested("Sequence", DEFAULT_LIMITS.maxDepth)], "wbxml"),
        code: ErrorCode.Codec_TooDeep,
      },
      {
        name: "WBXML with more than maxElements",
        input: encodeCommandFragment(FANOUT, "wbxml"),
        options: { limits: limits({ maxElements: 10 }) },
        code: ErrorCode.Codec_TooManyElements,
      },
      {
        name: "truncated WBXML",
        input: encodeCommandFragment(FANOUT, "wbxml").subarray(0, 30),
        code: ErrorCode.Codec_Truncated,
      },
      {
        name: "WBXML with trailing bytes",
        input: new Uint8Array([...encodeCommandFragment(FANOUT, "wbxml"), 0x6b]),
        code: ErrorCode.Codec_TrailingData,
      },
      {
        name: "WBXML of another language (DevInf)",
        input: encodeWbxmlDocument({ name: "DevInf", namespace: NS_DEVINF, children: [] }, DEVINF_12),
        code: ErrorCode.Codec_UnknownDocument,
      },
      {
        name: "WBXML whose root is a command, not SyncBody",
        input: encodeWbxmlDocument(
          {
            name: "Get",
            namespace: NS_SYNCML_12,
            children: [{ name: "CmdID", namespace: NS_SYNCML_12, children: ["1"] }],
          },
          SYNCML_12,
        ),
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<Get>",
      },
      {
        name: "WBXML replies in a command fragment",
        input: encodeCommandFragment(REPLIES, "wbxml"),
        code: ErrorCode.Codec_InvalidStructure,
        mentions: "<Status>",
      },
      {
        name: "WBXML unknown WBXML version",
        input: new Uint8Array([0x04, 0xa4, 0x01, 0x6a, 0x00]),
        code: ErrorCode.Codec_UnknownDocument,
      },
    ];
    for (const c of cases) {
      it(`${c.name} -> ${c.code}`, () => {
        assertFails(c.input, c.code, c.options, c.mentions);
      });
    }

    it("depth counts from the outermost element written: maxDepth levels are accepted", () => {
      // Bare: maxDepth - 1 containers, their CmdIDs one level deeper: depth maxDepth exactly.
      assert.equal(decodeOk(deepXml(DEFAULT_LIMITS.maxDepth - 1)).length, 1);
    });
  });

  describe("encode", () => {
    it("writes XML as the commands wrapped in a namespaced SyncBody, no declaration", () => {
      assert.equal(
        UTF8.decode(
          encodeCommandFragment([{ kind: "Get", cmdId: "1", items: [{ target: { locUri: "./a" } }] }], "xml"),
        ),
        `<SyncBody xmlns="${NS_SYNCML_12}"><Get><CmdID>1</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Get></SyncBody>`,
      );
    });

    const refused: { readonly name: string; readonly commands: Command[]; readonly encoding: Encoding }[] = [
      { name: "no command", commands: [], encoding: "xml" },
      { name: "commands mixed with replies", commands: [...REPLIES, ...FANOUT], encoding: "wbxml" },
      { name: "replies mixed with commands", commands: [...FANOUT, ...REPLIES], encoding: "xml" },
      { name: "duplicate CmdID", commands: [FANOUT[0] as Command, FANOUT[0] as Command], encoding: "xml" },
      {
        name: "Status nested in Atomic",
        commands: [{ kind: "Atomic", cmdId: "9", commands: [REPLIES[0] as Command] }],
        encoding: "wbxml",
      },
      { name: "empty CmdID", commands: [{ kind: "Get", cmdId: "", items: [] }], encoding: "wbxml" },
      {
        name: "binary Data in XML",
        commands: [
          {
            kind: "Replace",
            cmdId: "1",
            items: [{ data: { kind: "opaque", bytes: new Uint8Array([0xff, 0x00]) } }],
          },
        ],
        encoding: "xml",
      },
    ];
    for (const c of refused) {
      it(`refuses ${c.name} with Codec_EncodeFailed`, () => {
        assert.throws(
          () => encodeCommandFragment(c.commands, c.encoding),
          (e: unknown) => e instanceof Error && "code" in e && e.code === ErrorCode.Codec_EncodeFailed,
        );
      });
    }
  });

  describe("libwbxml interop", () => {
    before(() => {
      requireLibwbxml();
    });

    for (const [name, fragment, allow] of [
      ["fan-out commands", FANOUT, "commands"],
      ["replies", REPLIES, "replies"],
    ] as const) {
      it(`${name}: libwbxml reads our WBXML fragment (wbxml2xml) to XML that decodes to the same commands`, () => {
        const xml = wbxml2xml(encodeCommandFragment(fragment, "wbxml"));
        assert.match(xml.toString("utf8"), /<SyncBody xmlns="SYNCML:SYNCML1\.2">/);
        assert.deepStrictEqual(decodeOk(new Uint8Array(xml), { allow }), fragment);
      });
    }

    it("replies: libwbxml's WBXML of our XML fragment (xml2wbxml) is ours byte for byte", () => {
      assert.equal(
        xml2wbxml(encodeCommandFragment(REPLIES, "xml")).toString("hex"),
        Buffer.from(encodeCommandFragment(REPLIES, "wbxml")).toString("hex"),
      );
    });

    it("commands: libwbxml's WBXML of our XML fragment decodes to the same commands but Replace Data as OPAQUE", () => {
      // libwbxml writes the text Data of Add/Replace Items as OPAQUE (see libwbxml-interop.test.ts).
      const decoded = decodeOk(new Uint8Array(xml2wbxml(encodeCommandFragment(FANOUT, "xml"))));
      const replace = FANOUT[1]?.kind === "Atomic" ? FANOUT[1].commands[0] : undefined;
      assert.ok(replace?.kind === "Replace");
      const expected = structuredClone(FANOUT);
      const got = decoded[1]?.kind === "Atomic" ? decoded[1].commands[0] : undefined;
      assert.ok(got?.kind === "Replace");
      assert.deepEqual(got.items[0]?.data, { kind: "opaque", bytes: bytes("a & b <c>") });
      assert.deepStrictEqual(
        decoded.filter((c) => c.cmdId !== "2"),
        expected.filter((c) => c.cmdId !== "2"),
      );
    });
  });
});
