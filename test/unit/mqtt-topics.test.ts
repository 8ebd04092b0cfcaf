import assert from "node:assert/strict";
import {
  CONTENT_TYPE_DM_WBXML,
  CONTENT_TYPE_DM_XML,
  CONTENT_TYPE_NOTIFICATION,
  MAX_DEVICE_ID_BYTES,
  MAX_STATUS_BYTES,
  checkDeviceId,
  checkPrefix,
  contentKind,
  decodeStatus,
  deviceTopic,
  encodeStatus,
  gatewayFilters,
  gatewayStatusTopic,
  hmacFromUserProperties,
  parseTopic,
  type ContentKind,
  type TopicRefusal,
} from "../../drivers/mqtt/topics.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("mqtt topics", () => {
  describe("deviceTopic", () => {
    const cases: readonly [string, string, "up" | "down" | "status", string][] = [
      ["dmgw", "dev1", "up", "dmgw/dev1/dm/up"],
      ["dmgw", "dev1", "down", "dmgw/dev1/dm/down"],
      ["dmgw", "dev1", "status", "dmgw/dev1/status"],
      ["site1/dmgw", "IMEI:490154203237518", "up", "site1/dmgw/IMEI:490154203237518/dm/up"],
      ["dmgw", "\u00e9t\u00e9-\u{1f600}", "down", "dmgw/\u00e9t\u00e9-\u{1f600}/dm/down"],
    ];
    for (const [prefix, id, channel, topic] of cases) {
      it(`builds ${topic}`, () => {
        assert.deepEqual(deviceTopic(prefix, id, channel), { ok: true, value: topic });
      });
    }

    it("builds topics byte for byte in UTF-8", () => {
      const t = deviceTopic("dmgw", "\u00e9", "up");
      assert.ok(t.ok);
      assert.equal(hex(utf8(t.value)), "646d67772fc3a92f646d2f7570");
    });

    it("refuses an invalid device id with the same refusal as checkDeviceId", () => {
      assert.deepEqual(deviceTopic("dmgw", "a/b", "up"), checkDeviceId("a/b"));
    });

    it("names the gateway's status and subscription filters", () => {
      assert.equal(gatewayStatusTopic("dmgw"), "dmgw/gateway/status");
      assert.deepEqual(gatewayFilters("a/b"), { up: "a/b/+/dm/up", status: "a/b/+/status" });
    });
  });

  describe("checkDeviceId", () => {
    const refused: readonly [string, string, TopicRefusal][] = [
      ["empty", "", "empty"],
      ["plus", "dev+1", "wildcard"],
      ["hash", "dev#", "wildcard"],
      ["slash", "a/b", "separator"],
      ["NUL", "dev\u0000", "nul"],
      ["newline", "dev\n", "control"],
      ["DEL", "dev\u007f", "control"],
      ["C1 control", "dev\u0085", "control"],
      ["lone high surrogate", "dev\ud800", "not-unicode"],
      ["lone low surrogate", "\udc00dev", "not-unicode"],
      ["reserved gateway level", "gateway", "reserved"],
      ["too long (ASCII)", "x".repeat(MAX_DEVICE_ID_BYTES + 1), "too-long"],
      // 129 two-byte characters: 258 UTF-8 bytes, 129 UTF-16 units.
      ["too long (UTF-8 bytes, not characters)", "\u00e9".repeat(129), "too-long"],
    ];
    for (const [name, id, refusal] of refused) {
      it(`refuses ${name}: ${refusal}`, () => {
        const r = checkDeviceId(id);
        assert.ok(!r.ok);
        assert.equal(r.refusal, refusal);
        assert.ok(r.detail.length > 0);
      });
    }

    const accepted = [
      "d",
      "x".repeat(MAX_DEVICE_ID_BYTES),
      "IMEI:1234",
      "$dev",
      "dev 1",
      "Gateway",
      "\u{1f600}",
    ];
    for (const id of accepted) {
      it(`accepts ${JSON.stringify(id.length > 20 ? `${id.slice(0, 8)}... (${id.length})` : id)}`, () => {
        assert.deepEqual(checkDeviceId(id), { ok: true, value: id });
      });
    }
  });

  describe("checkPrefix", () => {
    const cases: readonly [string, TopicRefusal | "ok"][] = [
      ["dmgw", "ok"],
      ["site/1/dmgw", "ok"],
      ["", "empty"],
      ["/dmgw", "empty"],
      ["dmgw/", "empty"],
      ["a//b", "empty"],
      ["$SYS", "reserved"],
      ["dm+gw", "wildcard"],
      ["dmgw/#", "wildcard"],
      ["dm\u0000gw", "nul"],
      ["x".repeat(513), "too-long"],
    ];
    for (const [prefix, expected] of cases) {
      it(`${JSON.stringify(prefix.slice(0, 16))} -> ${expected}`, () => {
        const r = checkPrefix(prefix);
        if (expected === "ok") assert.deepEqual(r, { ok: true, value: prefix });
        else assert.equal(r.ok ? "ok" : r.refusal, expected);
      });
    }
  });

  describe("parseTopic", () => {
    const cases: readonly [string, ReturnType<typeof parseTopic>][] = [
      ["dmgw/dev1/dm/up", { ok: true, value: { kind: "device", deviceId: "dev1", channel: "up" } }],
      ["dmgw/dev1/dm/down", { ok: true, value: { kind: "device", deviceId: "dev1", channel: "down" } }],
      ["dmgw/dev1/status", { ok: true, value: { kind: "device", deviceId: "dev1", channel: "status" } }],
      ["dmgw/gateway/status", { ok: true, value: { kind: "gateway-status" } }],
      ["dmgw/gateway/dm/up", { ok: false, refusal: "reserved", detail: "device id 'gateway' is reserved" }],
      ["other/dev1/dm/up", undefined],
      ["dmgwx/dev1/dm/up", undefined],
      ["dmgw/dev1/dm/sideways", undefined],
      ["dmgw/dev1/dm", undefined],
      ["dmgw/dev1/status/extra", undefined],
      ["dmgw/dev1/dm/up/extra", undefined],
      ["dmgw/dev1", undefined],
      ["dmgw", undefined],
    ];
    for (const [topic, expected] of cases) {
      it(topic, () => {
        assert.deepEqual(parseTopic("dmgw", topic), expected);
      });
    }

    it("reads a multi-level prefix", () => {
      assert.deepEqual(parseTopic("a/b", "a/b/d/dm/up"), {
        ok: true,
        value: { kind: "device", deviceId: "d", channel: "up" },
      });
    });

    it("refuses an empty device level", () => {
      const r = parseTopic("dmgw", "dmgw//dm/up");
      assert.equal(r?.ok, false);
    });

    it("round-trips every channel", () => {
      for (const channel of ["up", "down", "status"] as const) {
        const t = deviceTopic("p/q", "IMEI:1", channel);
        assert.ok(t.ok);
        assert.deepEqual(parseTopic("p/q", t.value), {
          ok: true,
          value: { kind: "device", deviceId: "IMEI:1", channel },
        });
      }
    });
  });

  describe("status payload", () => {
    it("encodes online byte for byte", () => {
      assert.equal(hex(encodeStatus("online")), hex(utf8('{"state":"online"}')));
      assert.equal(hex(encodeStatus("online")), "7b227374617465223a226f6e6c696e65227d");
    });

    it("encodes offline byte for byte", () => {
      assert.equal(hex(encodeStatus("offline")), "7b227374617465223a226f66666c696e65227d");
    });

    const decoded: readonly [string, Uint8Array, "online" | "offline" | "cleared"][] = [
      ["our online", encodeStatus("online"), "online"],
      ["our offline", encodeStatus("offline"), "offline"],
      ["empty payload (retained message cleared)", new Uint8Array(0), "cleared"],
      ["legacy bare online", utf8("online"), "online"],
      ["legacy bare offline with newline", utf8("offline\n"), "offline"],
      ["extra members", utf8('{"state":"online","fw":"1.2","since":1700000000}'), "online"],
      ["whitespace", utf8(' { "state" : "offline" } '), "offline"],
    ];
    for (const [name, payload, state] of decoded) {
      it(`decodes ${name}`, () => {
        assert.deepEqual(decodeStatus(payload), { ok: true, value: state });
      });
    }

    const bad: readonly [string, Uint8Array][] = [
      ["not UTF-8", Uint8Array.from([0xff, 0xfe])],
      ["not JSON", utf8("up")],
      ["JSON array", utf8('["online"]')],
      ["JSON null", utf8("null")],
      ["unknown state", utf8('{"state":"sleeping"}')],
      ["no state", utf8('{"online":true}')],
      ["case differs", utf8('{"state":"ONLINE"}')],
      ["too large", utf8(`{"state":"online","pad":"${"x".repeat(MAX_STATUS_BYTES)}"}`)],
    ];
    for (const [name, payload] of bad) {
      it(`refuses ${name} as a value`, () => {
        const r = decodeStatus(payload);
        assert.ok(!r.ok);
        assert.ok(r.reason.length > 0);
      });
    }
  });

  describe("content types", () => {
    it("are the DM and notification MIME types", () => {
      assert.equal(CONTENT_TYPE_DM_WBXML, "application/vnd.syncml.dm+wbxml");
      assert.equal(CONTENT_TYPE_DM_XML, "application/vnd.syncml.dm+xml");
      assert.equal(CONTENT_TYPE_NOTIFICATION, "application/vnd.syncml.notification");
    });

    const kinds: readonly [string | undefined, ContentKind][] = [
      ["application/vnd.syncml.dm+wbxml", "dm-wbxml"],
      ["application/vnd.syncml.dm+xml", "dm-xml"],
      ["Application/VND.SyncML.DM+XML; charset=utf-8", "dm-xml"],
      ["application/vnd.syncml.notification", "notification"],
      ["application/json", "other"],
      ["", "missing"],
      [" ", "missing"],
      [undefined, "missing"],
    ];
    for (const [ct, kind] of kinds) {
      it(`${JSON.stringify(ct)} -> ${kind}`, () => {
        assert.equal(contentKind(ct), kind);
      });
    }
  });

  describe("hmacFromUserProperties", () => {
    it("reads the property whatever its case", () => {
      assert.equal(
        hmacFromUserProperties({ "X-SyncML-HMAC": "algorithm=MD5, mac=abc" }),
        "algorithm=MD5, mac=abc",
      );
    });
    it("takes the first of a repeated property", () => {
      assert.equal(hmacFromUserProperties({ "x-syncml-hmac": ["a", "b"] }), "a");
    });
    it("is undefined when absent", () => {
      assert.equal(hmacFromUserProperties(undefined), undefined);
      assert.equal(hmacFromUserProperties({ other: "x" }), undefined);
    });
  });
});
