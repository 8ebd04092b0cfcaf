import assert from "node:assert/strict";
import fc from "fast-check";
import { ErrorCode } from "../../src/core/errors.js";
import { buildPackage0, parsePackage0, sessionIdText, verifyPackage0 } from "../../src/dm/package0.js";
import {
  APP_ID_SYNCML_DM,
  MAX_WSP_PUSH_HEADER_BYTES,
  WAP_PUSH_PORT,
  WSP_PDU_CONFIRMED_PUSH,
  WSP_PDU_PUSH,
  decodeWspPush,
  encodeWspPush,
  isDmNotificationPush,
  type WspPush,
} from "../../src/syncml/wsp-push.js";
import { MIME_DM_NOTIFICATION } from "../../src/syncml/constants.js";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex").toUpperCase();
const ascii = (s: string): number[] => [...Buffer.from(s, "latin1")];
const textz = (s: string): number[] => [...ascii(s), 0x00];

function decoded(bytes: Uint8Array | number[]): WspPush {
  const r = decodeWspPush(Uint8Array.from(bytes));
  assert.ok(r.ok, `expected a push, got ${r.ok ? "" : r.error.message}`);
  return r.value;
}

function errorOf(bytes: Uint8Array | number[]): ErrorCode {
  const r = decodeWspPush(Uint8Array.from(bytes));
  assert.ok(!r.ok, `expected ${toHex(Uint8Array.from(bytes))} to be refused`);
  return r.error.code;
}

const BODY = [0x11, 0x22, 0x33];

/*
 * A DM notification push, byte by byte from WAP-230-WSP 8.2.4.1 and protocol.md 5.3:
 *   01     TID
 *   06     PDU type Push
 *   03     HeadersLen (uintvar): Content-Type plus headers
 *   C4     Content-Type, short-integer 0x44 = application/vnd.syncml.notification
 *   AF 87  X-Wap-Application-Id (0x2F | 0x80) = short-integer 0x07 = x-wap-application:syncml.dm
 *   ...    body
 */
const DM_PUSH = [0x01, 0x06, 0x03, 0xc4, 0xaf, 0x87, ...BODY];

describe("decodeWspPush", () => {
  it("decodes a DM notification push built from the spec", () => {
    const p = decoded(DM_PUSH);
    assert.equal(p.tid, 0x01);
    assert.equal(p.pduType, WSP_PDU_PUSH);
    assert.equal(p.contentType, MIME_DM_NOTIFICATION);
    assert.equal(p.contentTypeCode, 0x44);
    assert.equal(p.contentTypeParameters.length, 0);
    assert.deepEqual(p.headers, [{ name: "X-Wap-Application-Id", code: 0x2f, value: APP_ID_SYNCML_DM }]);
    assert.equal(p.appId, APP_ID_SYNCML_DM);
    assert.deepEqual([...p.body], BODY);
    assert.equal(isDmNotificationPush(p), true);
  });

  it("accepts an empty body", () => {
    const p = decoded(DM_PUSH.slice(0, 6));
    assert.equal(p.body.length, 0);
  });

  it("decodes a ConfirmedPush (0x07)", () => {
    const p = decoded([0x42, 0x07, 0x03, 0xc4, 0xaf, 0x87]);
    assert.equal(p.pduType, WSP_PDU_CONFIRMED_PUSH);
    assert.equal(p.tid, 0x42);
    assert.equal(isDmNotificationPush(p), true);
  });

  describe("well-known content types", () => {
    const rows: [number, string, boolean][] = [
      [0x44, "application/vnd.syncml.notification", true],
      [0x58, "application/vnd.syncml.dm.notification", true],
      [0x42, "application/vnd.syncml.dm+wbxml", false],
      [0x43, "application/vnd.syncml.dm+xml", false],
      [0x4e, "application/vnd.syncml.ds.notification", false],
      [0x2e, "application/vnd.wap.sic", false],
      [0x7b, "0x7B", false],
    ];
    for (const [code, name, dm] of rows) {
      it(`0x${code.toString(16).toUpperCase()} -> ${name}${dm ? " (a DM notification)" : ""}`, () => {
        const p = decoded([0x00, 0x06, 0x03, 0x80 | code, 0xaf, 0x87]);
        assert.equal(p.contentType, name);
        assert.equal(p.contentTypeCode, code);
        assert.equal(isDmNotificationPush(p), dm);
      });
    }
  });

  it("decodes a textual content type", () => {
    const headers = [...textz("application/vnd.syncml.notification"), 0xaf, 0x87];
    const p = decoded([0x05, 0x06, headers.length, ...headers, ...BODY]);
    assert.equal(p.contentType, "application/vnd.syncml.notification");
    assert.equal(p.contentTypeCode, undefined);
    assert.deepEqual([...p.body], BODY);
    assert.equal(isDmNotificationPush(p), true);
  });

  it("matches a textual content type regardless of case", () => {
    const headers = [...textz("Application/Vnd.SyncML.DM.Notification"), 0xaf, 0x87];
    assert.equal(isDmNotificationPush(decoded([0x05, 0x06, headers.length, ...headers])), true);
  });

  it("decodes a general-form content type with parameters", () => {
    // 03 = Value-length, C4 = media, 81 EA = Charset (well-known parameter 0x01) = utf-8 (0x6A).
    const p = decoded([0x01, 0x06, 0x06, 0x03, 0xc4, 0x81, 0xea, 0xaf, 0x87]);
    assert.equal(p.contentType, MIME_DM_NOTIFICATION);
    assert.equal(toHex(p.contentTypeParameters), "81EA");
    assert.equal(p.appId, APP_ID_SYNCML_DM);
  });

  it("decodes a general-form content type whose media is a long integer or text", () => {
    // 03 = Value-length, 02 03 10 = Long-integer 0x0310.
    const p = decoded([0x01, 0x06, 0x06, 0x03, 0x02, 0x03, 0x10, 0xaf, 0x87]);
    assert.equal(p.contentTypeCode, 0x0310);
    const text = textz("application/x-test");
    const q = decoded([0x01, 0x06, text.length + 1, text.length, ...text]);
    assert.equal(q.contentType, "application/x-test");
    assert.equal(q.contentTypeCode, undefined);
  });

  it("decodes a textual application id", () => {
    const headers = [0xc4, 0xaf, ...textz("x-wap-application:syncml.dm")];
    const p = decoded([0x01, 0x06, headers.length, ...headers]);
    assert.equal(p.appId, APP_ID_SYNCML_DM);
    assert.equal(isDmNotificationPush(p), true);
  });

  it("decodes a textual header name (Application-header)", () => {
    const headers = [0xc4, ...textz("X-Wap-Application-Id"), ...textz("x-wap-application:syncml.dm")];
    const p = decoded([0x01, 0x06, headers.length, ...headers]);
    assert.deepEqual(p.headers, [{ name: "X-Wap-Application-Id", code: undefined, value: APP_ID_SYNCML_DM }]);
    assert.equal(isDmNotificationPush(p), true);
  });

  it("decodes a long-integer application id (0x8000) as a number", () => {
    const p = decoded([0x01, 0x06, 0x05, 0xc4, 0xaf, 0x02, 0x80, 0x00]);
    assert.equal(p.appId, 0x8000);
    assert.equal(isDmNotificationPush(p), false);
  });

  it("keeps other headers: short-integer, text and value-length values", () => {
    // B4 81 = Push-Flag 1; B1 "http://ppg/" = X-Wap-Initiator-URI; D0 02 AB CD = X-Oma-GwMO (0x50), 2 bytes.
    const headers = [0xc4, 0xb4, 0x81, 0xb1, ...textz("http://ppg/"), 0xd0, 0x02, 0xab, 0xcd, 0xaf, 0x87];
    const p = decoded([0x01, 0x06, headers.length, ...headers]);
    assert.deepEqual(
      p.headers.map((h) => [h.name, h.code, h.value instanceof Uint8Array ? toHex(h.value) : h.value]),
      [
        ["Push-Flag", 0x34, 1],
        ["X-Wap-Initiator-URI", 0x31, "http://ppg/"],
        ["X-Oma-GwMO", 0x50, "ABCD"],
        ["X-Wap-Application-Id", 0x2f, APP_ID_SYNCML_DM],
      ],
    );
    assert.equal(isDmNotificationPush(p), true);
  });

  it("reads a two-octet HeadersLen uintvar (130 header bytes)", () => {
    const uri = "http://" + "x".repeat(118);
    const headers = [0xc4, 0xaf, 0x87, 0xb0, ...textz(uri)];
    assert.equal(headers.length, 130);
    // 130 = 0b1_0000010 -> 81 02
    const p = decoded([0x07, 0x06, 0x81, 0x02, ...headers, ...BODY]);
    assert.equal(p.headers.length, 2);
    assert.equal(p.headers[1]?.value, uri);
    assert.deepEqual([...p.body], BODY);
  });

  it("says no to a push without the syncml.dm application id", () => {
    assert.equal(isDmNotificationPush(decoded([0x01, 0x06, 0x01, 0xc4])), false);
    assert.equal(isDmNotificationPush(decoded([0x01, 0x06, 0x03, 0xc4, 0xaf, 0x84])), false);
  });

  describe("published vectors", () => {
    // Quectel SC20 LwM2M client, quectel-app/lwm2m/src/examples/client/lwm2mclient.c
    // (lelezhouhahaha/SC20_Linux_R09_r00320.1 @ 7cd2b8d5, lwm2m_client_handle_wap_sms): the WSP
    // headers it matches, commented "01 TID, 06 push, 03 HeadersLen, C4 content type, AF
    // X-WAP-Application-ID, 87 x-wap-application:syncml.dm".
    it("Quectel wsp_header1: 01 06 03 C4 AF 87 is a DM notification push", () => {
      const p = decoded(hex("01 06 03 C4 AF 87"));
      assert.equal(p.contentType, MIME_DM_NOTIFICATION);
      assert.equal(p.appId, APP_ID_SYNCML_DM);
      assert.equal(isDmNotificationPush(p), true);
    });

    it("Quectel wsp_header3: 01 06 05 1F 01 C4 AF 9A (Length-quote general form, LwM2M app id)", () => {
      const p = decoded(hex("01 06 05 1F 01 C4 AF 9A"));
      assert.equal(p.contentType, MIME_DM_NOTIFICATION);
      assert.equal(p.contentTypeCode, 0x44);
      assert.equal(p.appId, "x-wap-application:lwm2m.dm");
      assert.equal(isDmNotificationPush(p), false);
    });

    // OMA-TS-LightweightM2M Transport, Appendix L "Example of Trigger Message from Server": after
    // the UDH (06 05 04 0B 84 C0 02, port 2948), WSP 01 06 03 C4 AF 9A and a 14-byte CoAP POST /1/0/8.
    it("LwM2M Appendix L trigger: WSP header and the 14-byte CoAP body", () => {
      const coap = "44 02 b6 0b 21 61 fb 63 b1 31 01 30 01 38";
      const p = decoded(hex(`01 06 03 C4 AF 9A ${coap}`));
      assert.equal(toHex(p.body), toHex(hex(coap)));
      assert.equal(p.appId, "x-wap-application:lwm2m.dm");
      assert.equal(isDmNotificationPush(p), false);
      assert.equal(0x0b84, WAP_PUSH_PORT);
    });
  });

  describe("malformed input", () => {
    it("refuses every prefix that cuts the PDU header (Codec_Truncated)", () => {
      for (let n = 0; n < 6; n++) {
        assert.equal(errorOf(DM_PUSH.slice(0, n)), ErrorCode.Codec_Truncated, `prefix of ${n} bytes`);
      }
    });

    it("refuses a HeadersLen uintvar cut short", () => {
      assert.equal(errorOf([0x01, 0x06, 0x81]), ErrorCode.Codec_Truncated);
    });

    it("refuses a HeadersLen past the end, saying how much was there", () => {
      const r = decodeWspPush(Uint8Array.of(0x01, 0x06, 0x05, 0xc4, 0xaf, 0x87));
      assert.ok(!r.ok);
      assert.equal(r.error.code, ErrorCode.Codec_Truncated);
      assert.deepEqual(r.error.context, { offset: 3, headersLen: 5, available: 3 });
    });

    it("refuses a uintvar of more than 5 octets (Codec_IntegerOverflow)", () => {
      assert.equal(
        errorOf([0x01, 0x06, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]),
        ErrorCode.Codec_IntegerOverflow,
      );
    });

    it("refuses a 5-octet uintvar over 32 bits (Codec_IntegerOverflow)", () => {
      // 90 80 80 80 00 = 2^32.
      assert.equal(errorOf([0x01, 0x06, 0x90, 0x80, 0x80, 0x80, 0x00]), ErrorCode.Codec_IntegerOverflow);
    });

    it("refuses a long integer over 32 bits (Codec_IntegerOverflow)", () => {
      assert.equal(
        errorOf([0x01, 0x06, 0x08, 0xc4, 0xaf, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]),
        ErrorCode.Codec_IntegerOverflow,
      );
    });

    it("refuses a textual content type without its NUL (Codec_Truncated)", () => {
      const text = ascii("application/vnd.syncml.notification");
      assert.equal(errorOf([0x01, 0x06, text.length, ...text, 0x00]), ErrorCode.Codec_Truncated);
    });

    it("refuses a header value cut by HeadersLen (Codec_Truncated)", () => {
      assert.equal(errorOf([0x01, 0x06, 0x02, 0xc4, 0xaf, 0x87]), ErrorCode.Codec_Truncated);
    });

    it("refuses a value length overrunning the headers (Codec_InvalidStructure)", () => {
      assert.equal(errorOf([0x01, 0x06, 0x03, 0xc4, 0xd0, 0x05, 0xab]), ErrorCode.Codec_InvalidStructure);
      assert.equal(errorOf([0x01, 0x06, 0x02, 0x05, 0xc4]), ErrorCode.Codec_InvalidStructure);
    });

    it("refuses HeadersLen 0 (no content type; Codec_InvalidStructure)", () => {
      assert.equal(errorOf([0x01, 0x06, 0x00]), ErrorCode.Codec_InvalidStructure);
    });

    it("refuses a PDU type other than Push or ConfirmedPush (Codec_UnknownToken)", () => {
      for (const type of [0x00, 0x01, 0x04, 0x05, 0x08, 0x40, 0x60]) {
        assert.equal(
          errorOf([0x01, type, 0x01, 0xc4]),
          ErrorCode.Codec_UnknownToken,
          `type 0x${type.toString(16)}`,
        );
      }
    });

    it("refuses a header code-page shift (Codec_UnknownToken)", () => {
      assert.equal(errorOf([0x01, 0x06, 0x04, 0xc4, 0x7f, 0x02, 0x81]), ErrorCode.Codec_UnknownToken);
      assert.equal(errorOf([0x01, 0x06, 0x03, 0xc4, 0x02, 0x81]), ErrorCode.Codec_UnknownToken);
    });

    it("refuses text that is not UTF-8 (Codec_InvalidEncoding)", () => {
      assert.equal(
        errorOf([0x01, 0x06, 0x05, 0xc4, 0xaf, 0x61, 0xff, 0x00]),
        ErrorCode.Codec_InvalidEncoding,
      );
    });
  });
});

describe("encodeWspPush", () => {
  it("writes the codes: C4 for the content type, AF 87 for the app id", () => {
    const bytes = encodeWspPush({
      tid: 0x01,
      contentType: "application/vnd.syncml.notification",
      appId: "x-wap-application:syncml.dm",
      body: Uint8Array.from(BODY),
    });
    assert.deepEqual([...bytes], DM_PUSH);
  });

  it("round-trips through decodeWspPush", () => {
    const body = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    const p = decoded(
      encodeWspPush({
        tid: 0xfe,
        pduType: WSP_PDU_CONFIRMED_PUSH,
        contentType: "application/vnd.syncml.dm.notification",
        appId: APP_ID_SYNCML_DM,
        body,
      }),
    );
    assert.equal(p.tid, 0xfe);
    assert.equal(p.pduType, WSP_PDU_CONFIRMED_PUSH);
    assert.equal(p.contentTypeCode, 0x58);
    assert.equal(p.appId, APP_ID_SYNCML_DM);
    assert.deepEqual(p.body, body);
    assert.equal(isDmNotificationPush(p), true);
  });

  it("writes an unknown content type and app id as text, and a numeric app id as an integer", () => {
    const bytes = encodeWspPush({ tid: 2, contentType: "text/x-a", appId: "x-b:c", body: new Uint8Array(0) });
    assert.deepEqual([...bytes], [0x02, 0x06, 0x10, ...textz("text/x-a"), 0xaf, ...textz("x-b:c")]);
    const numeric = encodeWspPush({
      tid: 2,
      contentType: MIME_DM_NOTIFICATION,
      appId: 0x9001,
      body: new Uint8Array(0),
    });
    assert.equal(toHex(numeric), "020605C4AF029001");
    assert.equal(decoded(numeric).appId, 0x9001);
  });

  it("keeps the WSP header of a DM push at 6 bytes (13 with the SMS UDH; the budget is 48)", () => {
    const body = new Uint8Array(100);
    const bytes = encodeWspPush({ tid: 0, contentType: MIME_DM_NOTIFICATION, appId: APP_ID_SYNCML_DM, body });
    // The SMS UDH with 16-bit ports is 7 bytes (06 05 04 0B 84 23 F0).
    assert.equal(bytes.length - body.length, 6);
  });

  it("refuses headers over the 48-byte WDP+WSP budget (Codec_EncodeFailed)", () => {
    const longType = "application/x-" + "a".repeat(MAX_WSP_PUSH_HEADER_BYTES);
    assert.throws(
      () =>
        encodeWspPush({ tid: 0, contentType: longType, appId: APP_ID_SYNCML_DM, body: new Uint8Array(0) }),
      { code: ErrorCode.Codec_EncodeFailed },
    );
  });

  it("refuses a TID outside 0..255, non-ASCII text and a negative app id (Codec_EncodeFailed)", () => {
    const base = { contentType: MIME_DM_NOTIFICATION, appId: APP_ID_SYNCML_DM, body: new Uint8Array(0) };
    assert.throws(() => encodeWspPush({ ...base, tid: 256 }), { code: ErrorCode.Codec_EncodeFailed });
    assert.throws(() => encodeWspPush({ ...base, tid: -1 }), { code: ErrorCode.Codec_EncodeFailed });
    assert.throws(() => encodeWspPush({ ...base, tid: 0, contentType: "text/é" }), {
      code: ErrorCode.Codec_EncodeFailed,
    });
    assert.throws(() => encodeWspPush({ ...base, tid: 0, appId: -1 }), {
      code: ErrorCode.Codec_EncodeFailed,
    });
  });
});

describe("encodeWspPush / decodeWspPush property", () => {
  it("round-trips any TID, PDU type, known content type, app id and body", () => {
    const contentTypes = [
      "application/vnd.syncml.notification",
      "application/vnd.syncml.dm.notification",
      "application/vnd.syncml.dm+wbxml",
      "text/x-custom",
    ];
    const appIds = [APP_ID_SYNCML_DM, "x-wap-application:lwm2m.dm", "x-oma-test:ua", 0x8000, 0x7f];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom(WSP_PDU_PUSH, WSP_PDU_CONFIRMED_PUSH),
        fc.constantFrom(...contentTypes),
        fc.constantFrom(...appIds),
        fc.uint8Array({ maxLength: 200 }),
        (tid, pduType, contentType, appId, body) => {
          const p = decoded(encodeWspPush({ tid, pduType, contentType, appId, body }));
          assert.deepEqual(
            [p.tid, p.pduType, p.contentType, p.appId, toHex(p.body)],
            [tid, pduType, contentType, appId, toHex(body)],
          );
        },
      ),
    );
  });

  it("never throws on arbitrary bytes: a push or a Codec_* error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeWspPush(bytes);
        assert.ok(r.ok || r.error.code.startsWith("Codec_"));
      }),
    );
  });
});

describe("WSP push carrying a Pkg#0, end to end", () => {
  it("decodes the push, parses the Pkg#0 and verifies its digest", () => {
    const pkg0 = buildPackage0(
      {
        version: 11,
        uiMode: "background",
        initiator: "server",
        sessionId: 0x0a1f,
        serverId: "gw-dm",
        vendorSpecific: new Uint8Array(0),
      },
      { serverId: "gw-dm", password: "pw", nonce: Uint8Array.of(1, 2, 3, 4) },
    );
    const push = decoded(
      encodeWspPush({ tid: 9, contentType: MIME_DM_NOTIFICATION, appId: APP_ID_SYNCML_DM, body: pkg0 }),
    );
    assert.equal(isDmNotificationPush(push), true);
    const parsed = parsePackage0(push.body);
    assert.ok(parsed.ok);
    assert.equal(sessionIdText(parsed.notification.sessionId), "A1F");
    const v = verifyPackage0(parsed, { names: ["gw-dm"], password: "pw", nonce: Uint8Array.of(1, 2, 3, 4) });
    assert.ok(v.ok);
    assert.equal(v.nonce, "stored");
  });
});
