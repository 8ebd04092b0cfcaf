import assert from "node:assert/strict";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import {
  IEI_CONCAT_16,
  IEI_PORTS_8,
  WAP_PUSH_PORT,
  bytesToHex,
  decodeDcs,
  decodeSmsDeliver,
  decodeSmsDeliverHex,
  encodeSmsDeliver,
  encodeSmsDeliverHex,
  gsm7ToString,
  hexToBytes,
  packSeptets,
  stringToGsm7,
  tpduMessageType,
  tryDecodeSmsDeliver,
  unpackSeptets,
} from "../../board/modem/sms-pdu.js";

// Vectors from oFono, unit/test-sms.c (e.g. github.com/rilmodem/ofono, VolvoGroup/ofono,
// sailfishos-native/ofono-mirror): `simple_deliver`, `alnum_sender`, `wap_push_1`,
// `sms_charset_default`, `sms_charset_default_ext`; the expected values are the ones that file asserts.
const OFONO_SIMPLE_DELIVER = "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07";
const OFONO_ALNUM_SENDER = "0791447758100650040DD0F334FC1CA6970100008080312170224008D4F29CDE0EA7D9";
const OFONO_WAP_PUSH_1 =
  "0791947122725014440185F039F501801140311480720605040B8423F00106" +
  "246170706C69636174696F6E2F766E642E7761702E6D6D732D6D657373616" +
  "76500AF84B4868C82984F67514B4B42008D9089088045726F74696B009650" +
  "696E2D557073008A808E0240008805810303F48083687474703A2F2F65707" +
  "3332E64652F4F2F5A39495A4F00";
/** oFono `sms_charset_default`: an SMS-SUBMIT whose 128 septets are 0..127 (0x1B replaced by 0x20). */
const OFONO_CHARSET_DEFAULT =
  "0001000B915310101010100000808080604028180E888462C168381E9088" +
  "6442A9582E988C06C4E9783EA09068442A994EA8946AC56AB95EB0986C46" +
  "ABD96EB89C6EC7EBF97EC0A070482C1A8FC8A472C96C3A9FD0A8744AAD5A" +
  "AFD8AC76CBED7ABFE0B0784C2E9BCFE8B47ACD6EBBDFF0B87C4EAFDBEFF8" +
  "BC7ECFEFFBFF";
/** oFono's expected UTF-8 for it. */
const OFONO_CHARSET_DEFAULT_UTF8 =
  "40c2a324c2a5c3a8c3a9c3b9c3acc3b2c3870ac398c3b80dc385c3a5ce945fcea6ce93ce9bcea9cea0cea8cea3ce98ce9e20" +
  "c386c3a6c39fc38920212223c2a425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fc2a1" +
  "4142434445464748494a4b4c4d4e4f505152535455565758595ac384c396c391c39cc2a7c2bf" +
  "6162636465666768696a6b6c6d6e6f707172737475767778797ac3a4c3b6c3b1c3bcc3a0";
/** oFono `sms_charset_default_ext` (SMS-SUBMIT, 21 septets) and its expected text. */
const OFONO_CHARSET_EXT = "0001000B915310101010100000151BC58602DAA036A9CD6BC3DBF436BE0D705306";
const OFONO_CHARSET_EXT_TEXT = "\f^ {}\\[~]|€";

/**
 * Hand-assembled from TS 23.040 9.2.2.1 with the UDH of part 1 of 2 of a concatenated WAP Push as
 * given in the answer "Long Concatenated WAP PUSH over SMS" (StackOverflow q. 3286054, mirrored at
 * codewithsundeep.com/discussion/solution/3286054): `0B 00033F0201 05040B8423F0`.
 */
const HAND_CONCAT_PART1 =
  "00" + // no SMSC
  "44" + // SMS-DELIVER, TP-MMS (no more messages), TP-UDHI
  "0B91" +
  "9471111111F1" + // OA +49171111111
  "00" + // PID
  "04" + // DCS 8-bit data
  "52101021436500" + // SCTS 2025-01-01 12:34:56 +00
  "10" + // UDL 16
  "0B00033F020105040B8423F0" + // UDH from the answer above
  "DEADBEEF"; // user data

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(isGatewayError(e), `expected a GatewayError, got ${String(e)}`);
    return e.code;
  }
  assert.fail("expected a throw");
}

describe("decodeSmsDeliver: published vectors (oFono unit/test-sms.c)", () => {
  it("decodes simple_deliver: international numbers, GSM 7-bit text, negative zone", () => {
    const m = decodeSmsDeliverHex(OFONO_SIMPLE_DELIVER, { tpduLength: 30 });
    assert.deepEqual(m.smsc, { toa: 0x91, ton: 1, npi: 1, value: "+31624000000" });
    assert.deepEqual(m.originator, { toa: 0x91, ton: 1, npi: 1, value: "+31641600986" });
    assert.equal(m.firstOctet, 0x04);
    assert.equal(m.moreMessagesToSend, false);
    assert.equal(m.udhi, false);
    assert.equal(m.pid, 0);
    assert.equal(m.dcs, 0);
    assert.equal(m.coding.alphabet, "gsm7");
    assert.deepEqual(
      { ...m.timestamp },
      {
        year: 2002,
        month: 8,
        day: 26,
        hour: 19,
        minute: 37,
        second: 41,
        offsetMinutes: -60, // oFono: timezone == -4 (quarter hours)
        epochMs: Date.UTC(2002, 7, 26, 20, 37, 41),
      },
    );
    assert.equal(m.udl, 12);
    assert.equal(m.udh, undefined);
    assert.equal(m.text, "How are you?");
  });

  it("decodes alnum_sender: an alphanumeric GSM 7-bit originator", () => {
    const m = decodeSmsDeliverHex(OFONO_ALNUM_SENDER, { tpduLength: 27 });
    assert.equal(m.smsc?.value, "+447785016005");
    assert.deepEqual(m.originator, { toa: 0xd0, ton: 5, npi: 0, value: "sipgate" });
    assert.equal(m.timestamp.offsetMinutes, 60);
    assert.equal(m.timestamp.epochMs, Date.UTC(2008, 7, 13, 11, 7, 22));
    assert.equal(m.udl, 8);
    assert.equal(m.text, "Testmail");
  });

  it("decodes wap_push_1: 8-bit data (DCS 0xF5), UDH IE 0x05 to port 2948 from 9200", () => {
    const m = decodeSmsDeliverHex(OFONO_WAP_PUSH_1, { tpduLength: 128 });
    assert.equal(m.smsc?.value, "+491722270541");
    assert.equal(m.firstOctet, 0x44);
    assert.equal(m.udhi, true);
    assert.deepEqual(m.originator, { toa: 0x85, ton: 0, npi: 5, value: "0" });
    assert.equal(m.pid, 0x39);
    assert.equal(m.dcs, 0xf5);
    assert.deepEqual(m.coding, { alphabet: "8bit", compressed: false, messageClass: 1 });
    assert.equal(m.timestamp.epochMs, Date.UTC(2010, 7, 11, 2, 13, 41));
    assert.equal(m.udl, 114);
    assert.ok(m.udh !== undefined);
    assert.deepEqual(m.udh.ports, { destination: WAP_PUSH_PORT, source: 9200, bits: 16 });
    assert.equal(m.udh.concat, undefined);
    assert.equal(m.udh.elements.length, 1);
    assert.equal(m.text, undefined);
    // The WDP payload is everything after the 7 UDH octets: a WSP Push (TID 01, type 06).
    assert.equal(bytesToHex(m.payload), OFONO_WAP_PUSH_1.slice(2 * (8 + 14 + 7)));
    assert.equal(m.payload.length, 107);
    assert.deepEqual([...m.payload.subarray(0, 2)], [0x01, 0x06]);
    assert.equal(
      Buffer.from(m.payload.subarray(3, 3 + 31)).toString("latin1"),
      "application/vnd.wap.mms-message",
    );
  });

  it("re-encodes simple_deliver and alnum_sender byte for byte (as oFono's test_deliver_encode)", () => {
    const a = encodeSmsDeliverHex({
      smsc: "+31624000000",
      originator: "+31641600986",
      text: "How are you?",
      timestampMs: Date.UTC(2002, 7, 26, 20, 37, 41),
      offsetMinutes: -60,
    });
    assert.equal(a.hex, OFONO_SIMPLE_DELIVER);
    assert.equal(a.tpduLength, 30);
    const b = encodeSmsDeliverHex({
      smsc: "+447785016005",
      originator: "sipgate",
      text: "Testmail",
      timestampMs: Date.UTC(2008, 7, 13, 11, 7, 22),
      offsetMinutes: 60,
    });
    assert.equal(b.hex, OFONO_ALNUM_SENDER);
    assert.equal(b.tpduLength, 27);
  });

  it("unpacks sms_charset_default to septets 0..127 and maps them as oFono does", () => {
    const ud = hexToBytes(OFONO_CHARSET_DEFAULT).subarray(14); // SCA, FO, MR, DA (2 + 6), PID, DCS, UDL
    assert.equal(ud.length, 112);
    const septets = unpackSeptets(ud, 128);
    assert.deepEqual(
      [...septets],
      Array.from({ length: 128 }, (_, i) => (i === 0x1b ? 0x20 : i)),
    );
    assert.equal(gsm7ToString(septets), Buffer.from(OFONO_CHARSET_DEFAULT_UTF8, "hex").toString("utf8"));
    assert.equal(bytesToHex(packSeptets(septets)), bytesToHex(ud));
  });

  it("maps sms_charset_default_ext through the extension table", () => {
    const ud = hexToBytes(OFONO_CHARSET_EXT).subarray(14);
    assert.equal(gsm7ToString(unpackSeptets(ud, 21)), OFONO_CHARSET_EXT_TEXT);
    assert.equal(bytesToHex(packSeptets(stringToGsm7(OFONO_CHARSET_EXT_TEXT))), bytesToHex(ud));
  });
});

describe("decodeSmsDeliver: user data headers", () => {
  it("reads part 1 of 2 with the concatenated WAP Push UDH (8-bit reference, then IE 0x05)", () => {
    const m = decodeSmsDeliverHex(HAND_CONCAT_PART1);
    assert.equal(m.smsc, undefined);
    assert.equal(m.originator.value, "+49171111111");
    assert.deepEqual(m.udh?.concat, { reference: 0x3f, referenceBits: 8, total: 2, sequence: 1 });
    assert.deepEqual(m.udh.ports, { destination: 2948, source: 9200, bits: 16 });
    assert.deepEqual(
      m.udh.elements.map((e) => [e.iei, bytesToHex(e.data)]),
      [
        [0x00, "3F0201"],
        [0x05, "0B8423F0"],
      ],
    );
    assert.equal(bytesToHex(m.payload), "DEADBEEF");
    assert.equal(m.timestamp.epochMs, Date.UTC(2025, 0, 1, 12, 34, 56));
  });

  it("encodeSmsDeliver builds that PDU byte for byte", () => {
    const pdu = encodeSmsDeliver({
      originator: "+49171111111",
      timestampMs: Date.UTC(2025, 0, 1, 12, 34, 56),
      concat: { reference: 0x3f, total: 2, sequence: 1 },
      ports: { destination: 2948, source: 9200 },
      userData: hexToBytes("DEADBEEF"),
    });
    assert.equal(bytesToHex(pdu), HAND_CONCAT_PART1);
  });

  it("reads IE 0x08 (16-bit reference) and IE 0x04 (8-bit ports)", () => {
    const hex =
      "00" +
      "44" +
      "0481" +
      "2143" +
      "00" +
      "04" +
      "52101021436500" +
      "0D" +
      "0A" +
      "080412340302" +
      "0402F0F1" +
      "AABB";
    const m = decodeSmsDeliverHex(hex);
    assert.equal(m.originator.value, "1234");
    assert.deepEqual(m.udh?.concat, { reference: 0x1234, referenceBits: 16, total: 3, sequence: 2 });
    assert.deepEqual(m.udh.ports, { destination: 0xf0, source: 0xf1, bits: 8 });
    assert.equal(bytesToHex(m.payload), "AABB");
    const again = encodeSmsDeliver({
      originator: "1234",
      timestampMs: Date.UTC(2025, 0, 1, 12, 34, 56),
      concat: { reference: 0x1234, referenceBits: 16, total: 3, sequence: 2 },
      ports: { destination: 0xf0, source: 0xf1, bits: 8 },
      userData: hexToBytes("AABB"),
    });
    assert.equal(bytesToHex(again), hex);
    assert.deepEqual([IEI_CONCAT_16, IEI_PORTS_8], [0x08, 0x04]);
  });

  it("skips the fill bits after a UDH in GSM 7-bit text", () => {
    // UDH 05 00 03 01 02 01 is 48 bits; text starts at septet 7, one fill bit: 'A' (0x41) << 1 = 0x82.
    const hex = "00" + "44" + "0481" + "2143" + "00" + "00" + "52101021436500" + "08" + "050003010201" + "82";
    const m = decodeSmsDeliverHex(hex);
    assert.equal(m.text, "A");
    assert.deepEqual(m.udh?.concat, { reference: 1, referenceBits: 8, total: 2, sequence: 1 });
    const again = encodeSmsDeliver({
      originator: "1234",
      timestampMs: Date.UTC(2025, 0, 1, 12, 34, 56),
      concat: { reference: 1, total: 2, sequence: 1 },
      text: "A",
    });
    assert.equal(bytesToHex(again), hex);
  });

  it("decodes UCS2 text", () => {
    const hex = "00" + "04" + "0481" + "2143" + "00" + "08" + "52101021436500" + "06" + "00480069263A";
    assert.equal(decodeSmsDeliverHex(hex).text, "Hi☺");
    assert.equal(
      decodeSmsDeliverHex(bytesToHex(encodeSmsDeliver({ originator: "1234", ucs2Text: "Grüße ☺" }))).text,
      "Grüße ☺",
    );
  });

  it("ignores a concatenation IE whose sequence is 0 or above the total (TS 23.040 9.2.3.24.1)", () => {
    for (const ie of ["00030A0200", "00030A0203"]) {
      const hex = "00" + "44" + "0481" + "2143" + "00" + "04" + "52101021436500" + "07" + "05" + ie + "FF";
      const m = decodeSmsDeliverHex(hex);
      assert.equal(m.udh?.concat, undefined, ie);
      assert.equal(m.udh?.elements.length, 1);
    }
  });

  it("takes the last of repeated port IEs", () => {
    const hex =
      "00" +
      "44" +
      "0481" +
      "2143" +
      "00" +
      "04" +
      "52101021436500" +
      "0D" +
      "0C" +
      "0504000100020504" +
      "0B8423F0";
    assert.deepEqual(decodeSmsDeliverHex(hex).udh?.ports, { destination: 2948, source: 9200, bits: 16 });
  });

  it("keeps unknown IEs", () => {
    const m = decodeSmsDeliver(
      encodeSmsDeliver({
        originator: "1",
        extraElements: [{ iei: 0x24, data: Uint8Array.of(1) }],
        userData: Uint8Array.of(7),
      }),
    );
    assert.deepEqual(
      m.udh?.elements.map((e) => e.iei),
      [0x24],
    );
    assert.equal(m.udh.ports, undefined);
  });
});

describe("decodeSmsDeliver: typed errors", () => {
  it("answers every proper prefix of a valid PDU with Codec_Truncated", () => {
    for (const full of [OFONO_SIMPLE_DELIVER, OFONO_WAP_PUSH_1, HAND_CONCAT_PART1]) {
      const bytes = hexToBytes(full);
      for (let n = 0; n < bytes.length; n++) {
        assert.equal(
          codeOf(() => decodeSmsDeliver(bytes.subarray(0, n))),
          ErrorCode.Codec_Truncated,
          `${n} of ${bytes.length}`,
        );
      }
    }
  });

  const rows: { name: string; hex: string; code: ErrorCode; tpduLength?: number }[] = [
    {
      name: "an octet after the user data",
      hex: OFONO_SIMPLE_DELIVER + "00",
      code: ErrorCode.Codec_TrailingData,
    },
    {
      name: "a TPDU length other than +CMGR's",
      hex: OFONO_SIMPLE_DELIVER,
      tpduLength: 31,
      code: ErrorCode.Codec_InvalidStructure,
    },
    { name: "an SMS-SUBMIT", hex: OFONO_CHARSET_EXT, code: ErrorCode.Codec_InvalidStructure },
    {
      name: "a UDHL beyond the user data",
      hex: "00" + "44" + "0481" + "2143" + "00" + "04" + "52101021436500" + "03" + "0500FF",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "an IE running past the UDH",
      hex: "00" + "44" + "0481" + "2143" + "00" + "04" + "52101021436500" + "05" + "0405040B84",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "IE 0x05 with length 3",
      hex: "00" + "44" + "0481" + "2143" + "00" + "04" + "52101021436500" + "05" + "0405030B84",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "IE 0x00 with length 4",
      hex: "00" + "44" + "0481" + "2143" + "00" + "04" + "52101021436500" + "06" + "050004010201",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "TP-UDHI with no user data",
      hex: "00" + "44" + "0481" + "2143" + "00" + "04" + "52101021436500" + "00",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "an 8-bit UDL above 140",
      hex: "00" + "04" + "0481" + "2143" + "00" + "04" + "52101021436500" + "8D" + "00".repeat(141),
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "a GSM 7-bit UDL above 160",
      hex: "00" + "04" + "0481" + "2143" + "00" + "00" + "52101021436500" + "A1" + "00".repeat(141),
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "an originator of 21 semi-octets",
      hex: "00" + "04" + "1581" + "21".repeat(11) + "00" + "04" + "52101021436500" + "00",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "an SMSC field of 12 octets",
      hex: "0C91" + "11".repeat(11) + "04",
      code: ErrorCode.Codec_InvalidStructure,
    },
    {
      name: "UCS2 with an odd octet count",
      hex: "00" + "04" + "0481" + "2143" + "00" + "08" + "52101021436500" + "03" + "004800",
      code: ErrorCode.Codec_InvalidEncoding,
    },
    { name: "hex with an odd length", hex: "0", code: ErrorCode.Codec_InvalidEncoding },
    { name: "text that is not hex", hex: "0G", code: ErrorCode.Codec_InvalidEncoding },
  ];
  for (const r of rows) {
    it(`refuses ${r.name} with ${r.code}`, () => {
      assert.equal(
        codeOf(() =>
          decodeSmsDeliverHex(r.hex, r.tpduLength === undefined ? {} : { tpduLength: r.tpduLength }),
        ),
        r.code,
      );
    });
  }

  it("names the TP-MTI of a non-DELIVER in the error context", () => {
    const r = tryDecodeSmsDeliver(hexToBytes(OFONO_CHARSET_EXT));
    assert.ok(!r.ok);
    assert.equal(r.error.context?.["mti"], 1);
    assert.equal(tpduMessageType(hexToBytes(OFONO_CHARSET_EXT)), 1);
    assert.equal(tpduMessageType(hexToBytes(OFONO_WAP_PUSH_1)), 0);
    assert.equal(tpduMessageType(Uint8Array.of(0x05)), undefined);
  });

  it("returns the value from tryDecodeSmsDeliver when the PDU is good", () => {
    const r = tryDecodeSmsDeliver(hexToBytes(OFONO_ALNUM_SENDER));
    assert.ok(r.ok);
    assert.equal(r.value.text, "Testmail");
  });

  it("keeps a message whose timestamp is not BCD, without an instant", () => {
    const hex = "00" + "04" + "0481" + "2143" + "00" + "04" + "5210102143F500" + "01" + "AA";
    const m = decodeSmsDeliverHex(hex);
    assert.equal(m.timestamp.epochMs, undefined);
    assert.equal(bytesToHex(m.payload), "AA");
  });
});

describe("decodeDcs (TS 23.038 4)", () => {
  const rows: [number, string, boolean, number | undefined][] = [
    [0x00, "gsm7", false, undefined],
    [0x04, "8bit", false, undefined],
    [0x08, "ucs2", false, undefined],
    [0x0c, "gsm7", false, undefined], // reserved alphabet
    [0x10, "gsm7", false, 0],
    [0x16, "8bit", false, 2],
    [0x24, "8bit", true, undefined],
    [0x44, "8bit", false, undefined], // marked for automatic deletion
    [0xc0, "gsm7", false, undefined],
    [0xe0, "ucs2", false, undefined],
    [0xf0, "gsm7", false, 0],
    [0xf5, "8bit", false, 1],
    [0x80, "gsm7", false, undefined], // reserved group
  ];
  for (const [dcs, alphabet, compressed, messageClass] of rows) {
    it(`0x${dcs.toString(16).padStart(2, "0")} is ${alphabet}${compressed ? " compressed" : ""}, class ${String(messageClass)}`, () => {
      assert.deepEqual(decodeDcs(dcs), { alphabet, compressed, messageClass });
    });
  }
});

describe("encodeSmsDeliver limits", () => {
  it("refuses user data that does not fit one SMS", () => {
    assert.equal(
      codeOf(() => encodeSmsDeliver({ originator: "1", userData: new Uint8Array(141) })),
      ErrorCode.Codec_EncodeFailed,
    );
    assert.equal(
      codeOf(() => encodeSmsDeliver({ originator: "1", text: "x".repeat(161) })),
      ErrorCode.Codec_EncodeFailed,
    );
    assert.doesNotThrow(() => encodeSmsDeliver({ originator: "1", text: "x".repeat(160) }));
  });

  it("refuses text outside the default alphabet and a missing or doubled body", () => {
    assert.equal(
      codeOf(() => encodeSmsDeliver({ originator: "1", text: "☺" })),
      ErrorCode.Codec_EncodeFailed,
    );
    assert.equal(
      codeOf(() => encodeSmsDeliver({ originator: "1" })),
      ErrorCode.Codec_EncodeFailed,
    );
    assert.equal(
      codeOf(() => encodeSmsDeliver({ originator: "1", text: "a", userData: Uint8Array.of(1) })),
      ErrorCode.Codec_EncodeFailed,
    );
  });

  it("round-trips a text of nearly 160 septets with extension characters", () => {
    const text =
      "{[€]}~|^\\".repeat(4) +
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠ";
    const septets = stringToGsm7(text).length;
    assert.ok(septets <= 160, String(septets));
    assert.equal(decodeSmsDeliver(encodeSmsDeliver({ originator: "Gateway", text })).text, text);
  });
});
