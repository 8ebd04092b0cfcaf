import assert from "node:assert/strict";
import {
  DM_TRANSPORT_NOTIFY_UUID,
  DM_TRANSPORT_SERVICE_UUID,
  DM_TRANSPORT_WRITE_UUID,
  Reassembler,
  decodeEnvelope,
  encodeEnvelope,
  kindOfContentType,
  segment,
  segmentPayloadBytes,
  sigUuid,
} from "../../drivers/ble/segment.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const bytes = (n: number, start = 0): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

describe("ble segment", () => {
  it("payload per segment is ATT_MTU - 3 - 1, clamped to 23..517", () => {
    assert.equal(segmentPayloadBytes(23), 19);
    assert.equal(segmentPayloadBytes(185), 181);
    assert.equal(segmentPayloadBytes(10), 19);
    assert.equal(segmentPayloadBytes(9999), 513);
  });

  it("UUIDs: SIG 16-bit in BlueZ form, the DM transport ones 128-bit and distinct", () => {
    assert.equal(sigUuid(0x180a), "0000180a-0000-1000-8000-00805f9b34fb");
    const ours = [DM_TRANSPORT_SERVICE_UUID, DM_TRANSPORT_WRITE_UUID, DM_TRANSPORT_NOTIFY_UUID];
    assert.equal(new Set(ours).size, 3);
    for (const u of ours)
      assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  const cases: readonly [string, Uint8Array, number, readonly string[]][] = [
    ["empty message", new Uint8Array(0), 23, ["c0"]],
    ["one byte", Uint8Array.of(0xab), 23, ["c0ab"]],
    ["exactly one segment (19 bytes)", bytes(19), 23, [`c0${hex(bytes(19))}`]],
    ["20 bytes: two segments", bytes(20), 23, [`80${hex(bytes(19))}`, `41${hex(bytes(1, 19))}`]],
    [
      "three segments at MTU 24 (20-byte payloads)",
      bytes(45),
      24,
      [`80${hex(bytes(20))}`, `01${hex(bytes(20, 20))}`, `42${hex(bytes(5, 40))}`],
    ],
  ];
  for (const [name, message, mtu, want] of cases) {
    it(`segments byte for byte: ${name}`, () => {
      assert.deepEqual(segment(message, mtu).map(hex), want);
    });
  }

  it("the sequence wraps at 64 and reassembles", () => {
    const message = bytes(19 * 70 + 3);
    const segs = segment(message, 23);
    assert.equal(segs.length, 71);
    assert.equal(segs[63]?.[0], 0x3f);
    assert.equal(segs[64]?.[0], 0x00);
    assert.equal(segs[70]?.[0], 0x40 | 6);
    const r = new Reassembler();
    const out = segs.flatMap((s) => r.push(s).messages);
    assert.equal(out.length, 1);
    assert.deepEqual(out[0], message);
  });

  it("round-trips any size at several MTUs", () => {
    for (const mtu of [23, 50, 185, 247, 517]) {
      for (const n of [0, 1, 18, 19, 20, 181, 1000, 5000]) {
        const m = bytes(n, n);
        const r = new Reassembler();
        const got = segment(m, mtu).flatMap((s) => r.push(s).messages);
        assert.deepEqual(got, [m], `mtu ${mtu} size ${n}`);
      }
    }
  });

  it("a sequence gap discards the message, typed, and the next FIRST starts clean", () => {
    const r = new Reassembler();
    const segs = segment(bytes(60), 23); // 4 segments
    assert.deepEqual(r.push(segs[0] ?? new Uint8Array()).discarded, []);
    const gap = r.push(segs[2] ?? new Uint8Array());
    assert.deepEqual(gap.discarded, [{ reason: "sequence-gap", bytes: 20 + 20 }]);
    assert.deepEqual(r.push(segs[3] ?? new Uint8Array()).discarded, [{ reason: "no-first", bytes: 4 }]);
    const again = segment(Uint8Array.of(1, 2), 23).flatMap((s) => r.push(s).messages);
    assert.deepEqual(again, [Uint8Array.of(1, 2)]);
  });

  it("a FIRST during an open message: interrupted, then the new one", () => {
    const r = new Reassembler();
    r.push(Uint8Array.of(0x80, 1, 2));
    const res = r.push(Uint8Array.of(0xc0, 9));
    assert.deepEqual(res.discarded, [{ reason: "interrupted", bytes: 3 }]);
    assert.deepEqual(res.messages, [Uint8Array.of(9)]);
  });

  it("bounds: too large, empty, FIRST with a non-zero sequence", () => {
    const r = new Reassembler({ maxMessageBytes: 30 });
    const segs = segment(bytes(40), 23);
    r.push(segs[0] ?? new Uint8Array());
    assert.deepEqual(r.push(segs[1] ?? new Uint8Array()).discarded, [
      { reason: "too-large", bytes: 20 + 20 },
    ]);
    assert.equal(r.open, false);
    assert.deepEqual(r.push(new Uint8Array(0)).discarded, [{ reason: "empty", bytes: 0 }]);
    assert.deepEqual(r.push(Uint8Array.of(0xc5, 1)).discarded, [{ reason: "bad-first-sequence", bytes: 2 }]);
  });

  it("envelope: byte-exact encoding and round trip", () => {
    const e = encodeEnvelope({
      kind: "wbxml",
      headers: { "x-syncml-hmac": "a=b" },
      body: Uint8Array.of(2, 0),
    });
    assert.equal(hex(e), `010011${hex(new TextEncoder().encode("x-syncml-hmac:a=b"))}0200`);
    assert.deepEqual(decodeEnvelope(e), {
      ok: true,
      value: { kind: "wbxml", headers: { "x-syncml-hmac": "a=b" }, body: Uint8Array.of(2, 0) },
    });
    assert.equal(hex(encodeEnvelope({ kind: "package0", headers: {}, body: Uint8Array.of(7) })), "00000007");
    assert.deepEqual(decodeEnvelope(Uint8Array.of(9, 0, 0)), { ok: false, reason: "unknown-kind" });
    assert.deepEqual(decodeEnvelope(Uint8Array.of(1, 0, 5, 1)), { ok: false, reason: "short" });
    assert.deepEqual(decodeEnvelope(Uint8Array.of(1, 0, 1, 0x41)), { ok: false, reason: "bad-headers" });
    assert.equal(kindOfContentType("application/vnd.syncml.dm+xml"), "xml");
    assert.equal(kindOfContentType("application/vnd.syncml.notification"), "package0");
  });
});
