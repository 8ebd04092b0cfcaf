/**
 * LwM2M codecs (drivers/coap): TLV byte-exact against the LwM2M 1.1 Core example (7.4.3.1, Device
 * object instance), SenML JSON, CoRE Link Format, the DM <-> LwM2M mapping, and hostile input as
 * GatewayError(Codec_*).
 */
import assert from "node:assert/strict";
import { formatLinks, parseLinks, registeredObjects } from "../../drivers/coap/link-format.js";
import {
  decodeTlv,
  encodeTlv,
  readTlvInteger,
  readTlvString,
  tlvInteger,
  tlvString,
  type Tlv,
} from "../../drivers/coap/lwm2m-tlv.js";
import { coapCodeToDmStatus, devInfoOf, dmUriToPath } from "../../drivers/coap/mapping.js";
import { decodeSenml, encodeSenml } from "../../drivers/coap/senml.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));

/** LwM2M 1.1 Core 7.4.3.1, "Single Object Instance Request Example" (Read /3/0), TLV payload. */
const DEVICE_INSTANCE_EXAMPLE = hex(`
  C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
  C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
  C8 02 09 33 34 35 30 30 30 31 32 33
  C3 03 31 2E 30
  86 06 41 00 01 41 01 05
  88 07 08 42 00 0E D8 42 01 13 88
  87 08 41 00 7D 42 01 03 84
  C1 09 64
  C1 0A 0F
  83 0B 41 00 00
  C4 0D 51 82 42 8F
  C6 0E 2B 30 32 3A 30 30
  C1 10 55`);

const res = (id: number, value: Uint8Array): Tlv => ({ kind: "resource", id, value });
const multi = (id: number, values: readonly Uint8Array[]): Tlv => ({
  kind: "multipleResource",
  id,
  children: values.map((value, i) => ({ kind: "resourceInstance", id: i, value })),
});

const DEVICE_INSTANCE_TLV: Tlv[] = [
  res(0, tlvString("Open Mobile Alliance")),
  res(1, tlvString("Lightweight M2M Client")),
  res(2, tlvString("345000123")),
  res(3, tlvString("1.0")),
  multi(6, [tlvInteger(1), tlvInteger(5)]),
  multi(7, [tlvInteger(3800), tlvInteger(5000)]),
  multi(8, [tlvInteger(125), tlvInteger(900)]),
  res(9, tlvInteger(100)),
  res(10, tlvInteger(15)),
  multi(11, [tlvInteger(0)]),
  res(13, tlvInteger(1367491215)),
  res(14, tlvString("+02:00")),
  res(16, tlvString("U")),
];

function codecError(fn: () => unknown, code?: ErrorCode): void {
  assert.throws(
    fn,
    (e: unknown) =>
      isGatewayError(e) && e.code.startsWith("Codec_") && (code === undefined || e.code === code),
  );
}

describe("LwM2M TLV", () => {
  it("encodes the Device object instance example of LwM2M 1.1 Core 7.4.3.1 byte for byte", () => {
    assert.deepEqual(
      Buffer.from(encodeTlv(DEVICE_INSTANCE_TLV)).toString("hex"),
      Buffer.from(DEVICE_INSTANCE_EXAMPLE).toString("hex"),
    );
  });

  it("decodes the example back to the same entries", () => {
    assert.deepEqual(decodeTlv(DEVICE_INSTANCE_EXAMPLE), DEVICE_INSTANCE_TLV);
  });

  it("uses 16-bit identifiers and 8/16/24-bit lengths where needed", () => {
    const big = new Uint8Array(70_000).fill(7);
    const entries: Tlv[] = [
      { kind: "objectInstance", id: 300, children: [res(1000, big), res(1, new Uint8Array(200))] },
    ];
    const bytes = encodeTlv(entries);
    assert.equal(bytes[0], 0b00111000); // object instance, 16-bit id, 24-bit length
    assert.deepEqual(decodeTlv(bytes), entries);
  });

  it("reads integers of 1, 2, 4 and 8 bytes, signed", () => {
    assert.equal(readTlvInteger(hex("FF")), -1n);
    assert.equal(readTlvInteger(hex("0ED8")), 3800n);
    assert.equal(readTlvInteger(tlvInteger(-2_000_000_000_000)), -2_000_000_000_000n);
    assert.equal(tlvInteger(127).length, 1);
    assert.equal(tlvInteger(128).length, 2);
  });

  it("refuses truncated, ill-nested and non-UTF-8 input with Codec_* errors", () => {
    codecError(() => decodeTlv(hex("C8 00 14 4F")), ErrorCode.Codec_Truncated);
    codecError(() => decodeTlv(hex("C8")), ErrorCode.Codec_Truncated);
    codecError(() => decodeTlv(hex("83 06 C1 00 01")), ErrorCode.Codec_InvalidStructure); // resource inside a multiple resource
    codecError(() => decodeTlv(hex("41 00 01 00")), ErrorCode.Codec_Truncated);
    codecError(() => decodeTlv(hex("CB 00 01 00")), ErrorCode.Codec_InvalidStructure); // length bits with a length field
    codecError(() => readTlvInteger(hex("000000")), ErrorCode.Codec_InvalidStructure);
    codecError(() => readTlvString(hex("C3 28")), ErrorCode.Codec_InvalidEncoding);
  });

  it("never throws anything but Codec_* errors on random bytes", () => {
    for (let n = 0; n < 2000; n++) {
      const bytes = Uint8Array.from({ length: n % 40 }, () => Math.floor(Math.random() * 256));
      try {
        decodeTlv(bytes);
      } catch (e) {
        assert.ok(isGatewayError(e) && e.code.startsWith("Codec_"), String(e));
      }
    }
  });
});

describe("SenML JSON", () => {
  it("round-trips numbers, strings, booleans, opaque and object links with a base name", () => {
    const records = [
      { name: "/3/0/0", value: "Open Mobile Alliance" },
      { name: "/3/0/9", value: 100 },
      { name: "/1/0/6", value: false },
      { name: "/5/0/0", value: Uint8Array.of(1, 2, 255) },
      { name: "/4/0/1", value: "3:0", objlnk: "3:0" },
    ];
    const bytes = encodeSenml(records);
    const json = JSON.parse(Buffer.from(bytes).toString()) as { bn?: string; vd?: string }[];
    assert.equal(json[0]?.bn, "/");
    assert.equal(json[3]?.vd, "AQL_");
    assert.deepEqual(decodeSenml(bytes), records);
  });

  it("resolves bn across records as RFC 8428 says", () => {
    const text = '[{"bn":"/3/0/","n":"0","vs":"Acme"},{"n":"1","vs":"M1"},{"bn":"/5/0/","n":"3","v":2}]';
    assert.deepEqual(
      decodeSenml(Buffer.from(text)).map((r) => [r.name, r.value]),
      [
        ["/3/0/0", "Acme"],
        ["/3/0/1", "M1"],
        ["/5/0/3", 2],
      ],
    );
  });

  it("refuses hostile packs with Codec_* errors", () => {
    codecError(() => decodeSenml(Buffer.from("{")), ErrorCode.Codec_InvalidEncoding);
    codecError(() => decodeSenml(Buffer.from('{"n":"1"}')), ErrorCode.Codec_InvalidStructure);
    codecError(() => decodeSenml(Buffer.from('[{"n":"x","v":1}]')), ErrorCode.Codec_InvalidStructure);
    codecError(() => decodeSenml(Buffer.from('[{"n":"/3/0/0","v":"1"}]')), ErrorCode.Codec_InvalidStructure);
    codecError(
      () => decodeSenml(Buffer.from('[{"n":"/3/0/0","v":1,"vs":"a"}]')),
      ErrorCode.Codec_InvalidStructure,
    );
    codecError(
      () => decodeSenml(Buffer.from('[{"n":"/3/0/0","vd":"!!"}]')),
      ErrorCode.Codec_InvalidStructure,
    );
    codecError(() => decodeSenml(Buffer.from([0xff, 0xfe])), ErrorCode.Codec_InvalidEncoding);
    codecError(() => decodeSenml(new Uint8Array((1 << 20) + 1)), ErrorCode.Codec_TooLarge);
    const many = `[${Array.from({ length: 10_001 }, () => '{"n":"/1/0/1","v":1}').join(",")}]`;
    codecError(() => decodeSenml(Buffer.from(many)), ErrorCode.Codec_TooManyElements);
  });
});

describe("CoRE Link Format", () => {
  it("parses a registration payload with attributes and quoted values", () => {
    const links = parseLinks('</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</5>;ver=1.1, </3/0/1>;dim=2;obs');
    assert.equal(links.length, 5);
    assert.deepEqual(links[0], { uri: "/", attributes: { rt: "oma.lwm2m", ct: "11543" } });
    assert.deepEqual(links[4], { uri: "/3/0/1", attributes: { dim: "2", obs: true } });
    assert.deepEqual(registeredObjects(links), [[1, 0], [3, 0], [5]]);
  });

  it("formats what it parses", () => {
    const text = '</rd>;rt="core.rd",</3/0/1>;dim=2;obs';
    assert.equal(formatLinks(parseLinks(text)), "</rd>;rt=core.rd,</3/0/1>;dim=2;obs");
    assert.deepEqual(parseLinks(formatLinks(parseLinks(text))), parseLinks(text));
    assert.deepEqual(parseLinks(""), []);
  });

  it("refuses malformed documents with Codec_* errors", () => {
    codecError(() => parseLinks("</1/0"), ErrorCode.Codec_InvalidStructure);
    codecError(() => parseLinks("/1/0"), ErrorCode.Codec_InvalidStructure);
    codecError(() => parseLinks("</1/0>;"), ErrorCode.Codec_InvalidStructure);
    codecError(() => parseLinks('</1/0>;rt="x'), ErrorCode.Codec_InvalidStructure);
    codecError(() => parseLinks("</1/0> </3/0>"), ErrorCode.Codec_InvalidStructure);
    codecError(() => parseLinks("x".repeat(70_000)), ErrorCode.Codec_TooLarge);
    codecError(
      () => parseLinks(Array.from({ length: 4097 }, () => "<1>").join(",")),
      ErrorCode.Codec_TooManyElements,
    );
  });
});

describe("DM <-> LwM2M mapping", () => {
  it("maps DevInfo aliases and numeric paths", () => {
    assert.deepEqual(dmUriToPath("./DevInfo/Man"), [3, 0, 0]);
    assert.deepEqual(dmUriToPath("./DevInfo/Mod"), [3, 0, 1]);
    assert.deepEqual(dmUriToPath("./DevInfo/DevId"), [3, 0, 2]);
    assert.deepEqual(dmUriToPath("./DevInfo/FwV"), [3, 0, 3]);
    assert.deepEqual(dmUriToPath("./3/0/0"), [3, 0, 0]);
    assert.deepEqual(dmUriToPath("3/0/11/0"), [3, 0, 11, 0]);
    assert.deepEqual(dmUriToPath("./5"), [5]);
  });

  it("maps nothing for other URIs (the command answers 404)", () => {
    for (const uri of [
      "./DevInfo/Lang",
      "./Vendor/Setting1",
      "./3/x",
      "./3/0/0/0/0",
      "./70000",
      "./3/-1",
      "./DevInfo",
    ]) {
      assert.equal(dmUriToPath(uri), undefined, uri);
    }
  });

  it("maps CoAP codes to DM statuses", () => {
    const table: [string, number][] = [
      ["2.05", 200],
      ["2.04", 200],
      ["2.01", 200],
      ["2.02", 200],
      ["4.00", 400],
      ["4.01", 425],
      ["4.03", 425],
      ["4.04", 404],
      ["4.05", 405],
      ["4.06", 406],
      ["4.13", 413],
      ["4.15", 415],
      ["4.12", 400],
      ["5.00", 500],
      ["5.03", 500],
      ["garbage", 500],
    ];
    for (const [code, status] of table) assert.equal(coapCodeToDmStatus(code), status, code);
  });

  it("collects DevInfo from /3/0 values", () => {
    const values = new Map([
      ["/3/0/0", "Acme"],
      ["/3/0/3", "1.2"],
      ["/3/0/9", "100"],
    ]);
    assert.deepEqual(devInfoOf(values), { Man: "Acme", FwV: "1.2" });
  });
});
