import assert from "node:assert/strict";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import {
  BodyAssembler,
  HeaderId,
  NOTIFICATION_TYPE,
  ObexFramer,
  Opcode,
  ResponseCode,
  SYNCML_DM_TARGET,
  bytesHeader,
  decodePacket,
  encodePacket,
  headersFromHttp,
  httpHeader,
  splitBody,
  textHeader,
  tryDecodePacket,
  typeHeader,
  typeOf,
  u32Header,
  byteHeader,
  type ObexPacket,
} from "../../drivers/serial/obex.js";

/** "80 00 07 ..." -> bytes. */
function h(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"));
}
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString("hex");

// Written out by hand from the OBEX 1.3 layout (section 3): opcode, 2-byte length, Connect fields,
// headers (id, 2-byte length for text/byte sequences).
const CONNECT_PLAIN = h("80 0007 10 00 2000");
const CONNECT_DM = h("80 0013 10 00 2000  46 000C 53594E434D4C2D444D"); // Target "SYNCML-DM"
const CONNECT_OK = h("A0 0018 10 00 0400  CB 00000001  4A 000C 53594E434D4C2D444D");

describe("OBEX codec", () => {
  it("the SYNCML-DM target is the 9 ASCII bytes of the binding", () => {
    assert.equal(Buffer.from(SYNCML_DM_TARGET).toString("latin1"), "SYNCML-DM");
  });

  it("encodes Connect byte for byte (plain, and with the SYNCML-DM target)", () => {
    const connect = { version: 0x10, flags: 0, maxPacketLength: 0x2000 };
    assert.equal(hexOf(encodePacket({ code: Opcode.Connect, connect, headers: [] })), hexOf(CONNECT_PLAIN));
    assert.equal(
      hexOf(
        encodePacket({
          code: Opcode.Connect,
          connect,
          headers: [bytesHeader(HeaderId.Target, SYNCML_DM_TARGET)],
        }),
      ),
      hexOf(CONNECT_DM),
    );
  });

  it("decodes the Connect response only when told it answers a Connect", () => {
    const p = decodePacket(CONNECT_OK, { connectResponse: true });
    assert.equal(p.code, ResponseCode.Success);
    assert.deepEqual(p.connect, { version: 0x10, flags: 0, maxPacketLength: 0x400 });
    assert.deepEqual(p.headers[0], { id: HeaderId.ConnectionId, kind: "u32", value: 1 });
    assert.deepEqual(p.headers[1], { id: HeaderId.Who, kind: "bytes", value: SYNCML_DM_TARGET });
    assert.equal(hexOf(encodePacket(p)), hexOf(CONNECT_OK));
    // Read without the context, the Connect fields are taken for a header: malformed.
    assert.equal(tryDecodePacket(CONNECT_OK).ok, false);
  });

  it("encodes every header kind: unicode Name, byte sequence, 1 byte, 4 bytes", () => {
    const p: ObexPacket = {
      code: Opcode.PutFinal,
      headers: [
        u32Header(HeaderId.ConnectionId, 0x01020304),
        textHeader(HeaderId.Name, "dm"),
        typeHeader("a/b"),
        byteHeader(0x97, 1),
        u32Header(HeaderId.Length, 2),
        bytesHeader(HeaderId.EndOfBody, h("CAFE")),
      ],
    };
    const expected = h(
      "82 0024  CB 01020304  01 0009 0064 006D 0000  42 0007 612F6200  97 01  C3 00000002  49 0005 CAFE",
    );
    assert.equal(hexOf(encodePacket(p)), hexOf(expected));
    assert.deepEqual(decodePacket(expected), p);
    assert.equal(typeOf(p), "a/b");
    // An empty Name is 3 bytes, no NUL.
    assert.equal(
      hexOf(encodePacket({ code: Opcode.PutFinal, headers: [textHeader(HeaderId.Name, "")] })),
      "820006010003",
    );
  });

  it("refuses to encode a header whose kind does not match its id, or a packet over the max", () => {
    assert.throws(
      () => encodePacket({ code: 0x82, headers: [{ id: HeaderId.Body, kind: "u32", value: 1 }] }),
      (e: unknown) => e instanceof GatewayError && e.code === ErrorCode.Codec_EncodeFailed,
    );
    assert.throws(
      () => encodePacket({ code: 0x82, headers: [bytesHeader(HeaderId.Body, new Uint8Array(300))] }, 255),
      (e: unknown) => e instanceof GatewayError && e.code === ErrorCode.Codec_EncodeFailed,
    );
  });

  it("malformed packets are typed errors", () => {
    const code = (b: Uint8Array): ErrorCode | undefined => {
      const r = tryDecodePacket(b);
      return r.ok ? undefined : r.error.code;
    };
    assert.equal(code(h("A0 00")), ErrorCode.Codec_Truncated);
    assert.equal(code(h("A0 0002")), ErrorCode.Codec_InvalidStructure);
    assert.equal(code(h("A0 0006 4800")), ErrorCode.Codec_Truncated);
    assert.equal(code(h("A0 0003 00")), ErrorCode.Codec_TrailingData);
    assert.equal(code(h("A0 0006 480002")), ErrorCode.Codec_InvalidStructure);
    assert.equal(code(h("A0 0008 01000500 41")), ErrorCode.Codec_InvalidStructure); // odd unicode
    assert.equal(code(h("A0 0007 CB0000")), ErrorCode.Codec_Truncated);
    assert.equal(code(h("80 0005 1000")), ErrorCode.Codec_InvalidStructure);
  });
});

describe("OBEX framer", () => {
  it("frames packets split at every byte boundary", () => {
    const stream = new Uint8Array([...CONNECT_DM, ...h("A0 0003"), ...h("82 0008 49 0005 CAFE")]);
    for (let cut = 1; cut < stream.length; cut++) {
      const f = new ObexFramer(1024);
      const a = f.push(stream.subarray(0, cut));
      const b = f.push(stream.subarray(cut));
      assert.deepEqual(
        [...a.packets, ...b.packets].map(hexOf),
        [hexOf(CONNECT_DM), "a00003", "820008490005cafe"],
        `cut at ${cut}`,
      );
      assert.equal(a.discarded.length + b.discarded.length, 0);
      assert.equal(f.pending, 0);
    }
  });

  it("drops garbage before, between and after packets and resyncs", () => {
    const f = new ObexFramer(1024);
    const out = f.push(new Uint8Array([...h("0D0A 4154"), ...CONNECT_DM, ...h("00 11"), ...h("A0 0003")]));
    assert.deepEqual(out.packets.map(hexOf), [hexOf(CONNECT_DM), "a00003"]);
    assert.deepEqual(
      out.discarded.map((d) => [hexOf(d.bytes), d.reason]),
      [
        ["0d0a4154", "garbage"],
        ["0011", "garbage"],
      ],
    );
  });

  it("a plausible start with impossible headers is garbage, not a wait", () => {
    const f = new ObexFramer(1024);
    // A final Put announcing 0x10 bytes, then a byte-sequence header of length 2: cannot be.
    const out = f.push(h("82 0010 48 0002 A0 0003"));
    assert.deepEqual(out.packets.map(hexOf), ["a00003"]);
    assert.equal(out.discarded[0]?.reason, "garbage");
    assert.equal(f.pending, 0);
  });

  it("bounds memory: a packet over the max is discarded, a partial packet is held and reset", () => {
    const f = new ObexFramer(255);
    const big = f.push(h("82 0400 48 03FD"));
    assert.equal(big.packets.length, 0);
    assert.ok(big.discarded.some((d) => d.reason === "oversize"));
    const partial = f.push(h("82 0010 48 000D 01 02"));
    assert.equal(partial.packets.length, 0);
    assert.equal(f.pending, 8);
    assert.equal(f.reset()?.reason, "reset");
    assert.equal(f.pending, 0);
    assert.deepEqual(f.push(h("A0 0003")).packets.map(hexOf), ["a00003"]);
  });

  it("random bytes never throw and never grow the buffer past the max", () => {
    const f = new ObexFramer(300);
    let seed = 1;
    for (let i = 0; i < 2000; i++) {
      const chunk = Uint8Array.from(
        { length: 1 + (i % 97) },
        () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24,
      );
      const out = f.push(chunk);
      for (const p of out.packets) assert.ok(p.length <= 300);
      assert.ok(f.pending < 300);
    }
  });
});

describe("OBEX splitter and reassembly", () => {
  it("cuts a DM message into Put packets within the max, and puts it back together", () => {
    const body = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
    const packets = splitBody({
      headers: [
        u32Header(HeaderId.ConnectionId, 7),
        typeHeader("application/vnd.syncml.dm+wbxml"),
        u32Header(HeaderId.Length, 1000),
      ],
      body,
      maxPacketLength: 255,
      moreCode: Opcode.Put,
      lastCode: Opcode.PutFinal,
    });
    const encoded = packets.map((p) => encodePacket(p, 255));
    assert.ok(encoded.every((e) => e.length <= 255));
    assert.ok(encoded.slice(0, -1).every((e) => e[0] === 0x02 && e.length === 255));
    assert.equal(encoded[encoded.length - 1]?.[0], 0x82);
    // The first packet: CB 00000007, Type, Length, then Body.
    assert.equal(hexOf(encoded[0]!.subarray(3, 8)), "cb00000007");
    const a = new BodyAssembler(4096);
    let done;
    for (const e of encoded) {
      const step = a.add(decodePacket(e));
      if (step.kind === "done") done = step.object;
      else assert.equal(step.kind, "more");
    }
    assert.ok(done !== undefined);
    assert.deepEqual(done.body, body);
    assert.equal(done.type, "application/vnd.syncml.dm+wbxml");
  });

  it("an empty body is one End-of-Body packet", () => {
    const packets = splitBody({
      headers: [typeHeader(NOTIFICATION_TYPE)],
      body: new Uint8Array(0),
      maxPacketLength: 255,
      moreCode: 0x02,
      lastCode: 0x82,
    });
    assert.equal(packets.length, 1);
    assert.equal(hexOf(encodePacket(packets[0]!)).slice(-6), "490003");
  });

  it("an object over the bound, or not matching its Length, is a typed error", () => {
    const a = new BodyAssembler(10);
    const over = a.add({ code: 0x82, headers: [bytesHeader(HeaderId.EndOfBody, new Uint8Array(11))] });
    assert.ok(over.kind === "error" && over.error.code === ErrorCode.Codec_TooLarge);
    const mismatch = a.add({
      code: 0x82,
      headers: [u32Header(HeaderId.Length, 5), bytesHeader(HeaderId.EndOfBody, new Uint8Array(4))],
    });
    assert.ok(mismatch.kind === "error" && mismatch.error.code === ErrorCode.Codec_InvalidStructure);
  });

  it("carries DM transport headers in the HTTP header", () => {
    const header = httpHeader({ "x-syncml-hmac": 'algorithm=MD5, username="a", mac=xyz' });
    assert.ok(header !== undefined);
    assert.equal(header.id, HeaderId.Http);
    assert.deepEqual(headersFromHttp([header]), { "x-syncml-hmac": 'algorithm=MD5, username="a", mac=xyz' });
    assert.equal(httpHeader({}), undefined);
  });
});
