import assert from "node:assert/strict";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { ErrorCode } from "../../src/core/errors.js";
import {
  PACKAGE0_MIN_BYTES,
  buildPackage0,
  encodePackage0,
  encodeTrigger,
  package0Digest,
  parsePackage0,
  sessionIdText,
  verifyPackage0,
  type Notification,
  type ParsedPackage0,
  type UiMode,
} from "../../src/dm/package0.js";

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex").toUpperCase();

/** The notification every vector below is built from. */
const NOTIFICATION: Notification = {
  version: 11,
  uiMode: "informative",
  initiator: "server",
  sessionId: 0x00af,
  serverId: "dmsrv",
  vendorSpecific: Uint8Array.of(0xde, 0xad),
};
const PASSWORD = "srvsecret";
/** A raw (non-text) stored nonce, to show the nonce is used as bytes. */
const STORED_NONCE = Uint8Array.of(0x00, 0x01, 0x02, 0x03, 0xfe, 0xff);

/*
 * The trigger, hand-assembled from protocol.md 5.1:
 *   02 E8        0000001011 (version 11) | 10 (informative) | 1 (server) | 000 (future use)
 *   00 00 00     future use, 24 more zero bits (27 in all)
 *   00 AF        session id 0x00AF
 *   05           length-id: 5
 *   64 6D 73 72 76  "dmsrv"
 *   DE AD        vendor-specific
 */
const TRIGGER_HEX = "02E8 000000 00AF 05 646D737276 DEAD";

/*
 * Digests computed with Python's hashlib and base64 (an implementation independent of ours), as
 * MD5(B64(MD5(name:password)) ":" nonce ":" B64(MD5(trigger))). The same script reproduces
 * protocol.md 3.7's syncml:auth-md5 vector (Bruce2 / OhBehave / Nonce -> Zz6EivR3yeaaENcRN6lpAQ==).
 */
const DIGEST = {
  dmsrv: {
    stored: "D64E4577B23D711EFFB1DAB58DF53016",
    zeroBytes: "6339CA0E994544F2F77DED55D2D20D01",
    zeroAscii: "44567AFD7EF254573FE5927860694E1C",
  },
  srvauth: { stored: "A4A0D76069AE2027245340BF42E4FCF2" },
};

function parsed(bytes: Uint8Array): Extract<ParsedPackage0, { ok: true }> {
  const r = parsePackage0(bytes);
  assert.ok(r.ok, `expected a parse, got ${r.ok ? "" : r.error.message}`);
  return r;
}

function parseError(bytes: Uint8Array): ErrorCode {
  const r = parsePackage0(bytes);
  assert.ok(!r.ok, `expected ${toHex(bytes)} to be refused`);
  return r.error.code;
}

/** A digest (any 16 bytes) followed by the given trigger. */
function withDigest(trigger: Uint8Array): Uint8Array {
  return Uint8Array.from([...new Uint8Array(16).fill(0x11), ...trigger]);
}

describe("Pkg#0 encoding", () => {
  it("writes the trigger header word bit by bit", () => {
    assert.equal(toHex(encodeTrigger(NOTIFICATION)), toHex(hex(TRIGGER_HEX)));
  });

  it("builds the exact package: digest with the stored nonce, then the trigger", () => {
    const pkg = buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE });
    assert.equal(toHex(pkg), DIGEST.dmsrv.stored + toHex(hex(TRIGGER_HEX)));
    assert.equal(pkg.length, 16 + 8 + 5 + 2);
  });

  it("computes the digest as MD5(B64(MD5(id:pw)):nonce:B64(MD5(trigger)))", () => {
    const md5 = (b: Uint8Array | string): Buffer => createHash("md5").update(b).digest();
    const trigger = hex(TRIGGER_HEX);
    const expected = md5(
      Buffer.concat([
        Buffer.from(md5("dmsrv:srvsecret").toString("base64")),
        Buffer.from(":"),
        STORED_NONCE,
        Buffer.from(":"),
        Buffer.from(md5(trigger).toString("base64")),
      ]),
    );
    const digest = package0Digest(trigger, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE });
    assert.equal(toHex(digest), toHex(expected));
  });

  it("encodePackage0 puts a given digest in front", () => {
    const digest = hex(DIGEST.dmsrv.zeroBytes);
    assert.equal(
      toHex(encodePackage0(NOTIFICATION, digest)),
      DIGEST.dmsrv.zeroBytes + toHex(hex(TRIGGER_HEX)),
    );
  });

  describe("the first two header octets for each version, ui-mode and initiator", () => {
    const rows: { version: number; uiMode: UiMode; initiator: "client" | "server"; first: string }[] = [
      // 00000010 | 11 uu i 000: the second octet starts with the two low version bits.
      { version: 11, uiMode: "not-specified", initiator: "client", first: "02C0" },
      { version: 11, uiMode: "not-specified", initiator: "server", first: "02C8" },
      { version: 11, uiMode: "background", initiator: "client", first: "02D0" },
      { version: 11, uiMode: "background", initiator: "server", first: "02D8" },
      { version: 11, uiMode: "informative", initiator: "client", first: "02E0" },
      { version: 11, uiMode: "informative", initiator: "server", first: "02E8" },
      { version: 11, uiMode: "user-interaction", initiator: "client", first: "02F0" },
      { version: 11, uiMode: "user-interaction", initiator: "server", first: "02F8" },
      // 00000011 | 00 uu i 000
      { version: 12, uiMode: "background", initiator: "server", first: "0318" },
      // 1111111111 11 1 000
      { version: 0x3ff, uiMode: "user-interaction", initiator: "server", first: "FFF8" },
    ];
    for (const row of rows) {
      it(`version ${row.version}, ${row.uiMode}, ${row.initiator} -> ${row.first}`, () => {
        const t = encodeTrigger({ ...NOTIFICATION, ...row });
        assert.equal(toHex(t.subarray(0, 2)), row.first);
        const back = parsed(withDigest(t)).notification;
        assert.deepEqual(
          [back.version, back.uiMode, back.initiator],
          [row.version, row.uiMode, row.initiator],
        );
      });
    }
  });

  it("writes session id 0xFFFF and a 255-byte server id at the edges of their fields", () => {
    const t = encodeTrigger({ ...NOTIFICATION, sessionId: 0xffff, serverId: "s".repeat(255) });
    assert.equal(toHex(t.subarray(0, 8)), "02E8000000FFFFFF");
    assert.equal(t.length, 8 + 255 + 2);
  });

  describe("refuses what the format cannot carry (Codec_EncodeFailed)", () => {
    const bad: [string, Partial<Notification>][] = [
      ["a version over 10 bits", { version: 1024 }],
      ["a negative version", { version: -1 }],
      ["session id 0", { sessionId: 0 }],
      ["session id 0x10000", { sessionId: 0x10000 }],
      ["a fractional session id", { sessionId: 1.5 }],
      ["a server id of 256 bytes", { serverId: "s".repeat(256) }],
      ["a server id of 128 two-byte characters", { serverId: "é".repeat(128) }],
    ];
    for (const [what, change] of bad) {
      it(what, () => {
        assert.throws(() => encodeTrigger({ ...NOTIFICATION, ...change }), {
          code: ErrorCode.Codec_EncodeFailed,
        });
      });
    }
    it("a digest that is not 16 bytes", () => {
      assert.throws(() => encodePackage0(NOTIFICATION, new Uint8Array(15)), {
        code: ErrorCode.Codec_EncodeFailed,
      });
    });
  });
});

describe("parsePackage0", () => {
  const pkg = buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE });

  it("reads back every field of a built package, vendor-specific bytes included", () => {
    const r = parsed(pkg);
    assert.deepEqual(r.notification, NOTIFICATION);
    assert.equal(toHex(r.digest), DIGEST.dmsrv.stored);
    assert.equal(toHex(r.trigger), toHex(hex(TRIGGER_HEX)));
    assert.equal(r.versionSupported, true);
  });

  it("keeps an empty vendor-specific part empty", () => {
    const r = parsed(withDigest(encodeTrigger({ ...NOTIFICATION, vendorSpecific: new Uint8Array(0) })));
    assert.equal(r.notification.vendorSpecific.length, 0);
    assert.equal(r.notification.serverId, "dmsrv");
  });

  it("returns copies, not views of the input", () => {
    const input = Uint8Array.from(pkg);
    const r = parsed(input);
    input.fill(0);
    assert.equal(toHex(r.notification.vendorSpecific), "DEAD");
    assert.equal(toHex(r.digest), DIGEST.dmsrv.stored);
  });

  it("reads a package that sits at an offset inside a larger buffer", () => {
    const big = new Uint8Array(pkg.length + 7);
    big.set(pkg, 7);
    assert.deepEqual(parsed(big.subarray(7)).notification, NOTIFICATION);
  });

  it("accepts an empty server id (length-id 0)", () => {
    const r = parsed(withDigest(hex("02E8000000 0001 00")));
    assert.equal(r.notification.serverId, "");
    assert.equal(r.notification.sessionId, 1);
  });

  it("decodes a UTF-8 server id", () => {
    const r = parsed(withDigest(encodeTrigger({ ...NOTIFICATION, serverId: "sérveur-ü" })));
    assert.equal(r.notification.serverId, "sérveur-ü");
  });

  it("ignores non-zero future-use bits", () => {
    // 0x02EF: the three future-use bits of the first word set; 0xFFFFFF: the other 24.
    const r = parsed(withDigest(hex("02EF FFFFFF 00AF 05 646D737276")));
    assert.deepEqual(
      [r.notification.version, r.notification.uiMode, r.notification.initiator, r.notification.sessionId],
      [11, "informative", "server", 0xaf],
    );
  });

  describe("versions: 11 and 12 supported, others parsed and flagged", () => {
    for (const [version, supported] of [
      [10, false],
      [11, true],
      [12, true],
      [13, false],
      [0, false],
    ] as const) {
      it(`version ${version} -> versionSupported ${String(supported)}`, () => {
        const r = parsed(withDigest(encodeTrigger({ ...NOTIFICATION, version })));
        assert.equal(r.notification.version, version);
        assert.equal(r.versionSupported, supported);
      });
    }
  });

  it("refuses every prefix shorter than the 24-byte header (Codec_Truncated)", () => {
    for (let n = 0; n < PACKAGE0_MIN_BYTES; n++) {
      assert.equal(parseError(pkg.subarray(0, n)), ErrorCode.Codec_Truncated, `prefix of ${n} bytes`);
    }
  });

  it("refuses every prefix that cuts the server id (Codec_Truncated)", () => {
    for (let n = PACKAGE0_MIN_BYTES; n < PACKAGE0_MIN_BYTES + 5; n++) {
      assert.equal(parseError(pkg.subarray(0, n)), ErrorCode.Codec_Truncated, `prefix of ${n} bytes`);
    }
    // Once the server id is complete, the vendor-specific part may be any length, empty included.
    assert.equal(parsed(pkg.subarray(0, PACKAGE0_MIN_BYTES + 5)).notification.vendorSpecific.length, 0);
    assert.equal(toHex(parsed(pkg.subarray(0, PACKAGE0_MIN_BYTES + 6)).notification.vendorSpecific), "DE");
  });

  it("refuses a length-id past the end and says how much was there", () => {
    const r = parsePackage0(withDigest(hex("02E8000000 00AF FF 646D737276")));
    assert.ok(!r.ok);
    assert.equal(r.error.code, ErrorCode.Codec_Truncated);
    assert.deepEqual(r.error.context, { lengthId: 255, available: 5 });
  });

  it("refuses a server id that is not UTF-8 (Codec_InvalidEncoding)", () => {
    assert.equal(parseError(withDigest(hex("02E8000000 00AF 02 C328"))), ErrorCode.Codec_InvalidEncoding);
    assert.equal(parseError(withDigest(hex("02E8000000 00AF 01 FF"))), ErrorCode.Codec_InvalidEncoding);
  });

  it("refuses session id 0 (Codec_InvalidStructure)", () => {
    assert.equal(parseError(withDigest(hex("02E8000000 0000 00"))), ErrorCode.Codec_InvalidStructure);
  });
});

describe("verifyPackage0", () => {
  const names = ["dmsrv"];

  it("accepts the digest made with the stored nonce", () => {
    const r = parsed(
      buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE }),
    );
    const v = verifyPackage0(r, { names, password: PASSWORD, nonce: STORED_NONCE });
    assert.ok(v.ok);
    assert.equal(v.nonce, "stored");
    assert.equal(v.name, "dmsrv");
    assert.equal(toHex(v.nonceBytes), toHex(STORED_NONCE));
  });

  it("falls back to the nonce as 4 zero bytes", () => {
    const r = parsed(Uint8Array.from([...hex(DIGEST.dmsrv.zeroBytes), ...hex(TRIGGER_HEX)]));
    const v = verifyPackage0(r, { names, password: PASSWORD, nonce: STORED_NONCE });
    assert.ok(v.ok);
    assert.equal(v.nonce, "zero-bytes");
    assert.equal(toHex(v.nonceBytes), "00000000");
  });

  it('falls back to the nonce as the 10-character text "0x00000000" (libdmclient)', () => {
    const r = parsed(Uint8Array.from([...hex(DIGEST.dmsrv.zeroAscii), ...hex(TRIGGER_HEX)]));
    const v = verifyPackage0(r, { names, password: PASSWORD, nonce: STORED_NONCE });
    assert.ok(v.ok);
    assert.equal(v.nonce, "zero-ascii");
    assert.equal(Buffer.from(v.nonceBytes).toString("latin1"), "0x00000000");
  });

  it("tries the fallbacks when no nonce is stored", () => {
    const r = parsed(Uint8Array.from([...hex(DIGEST.dmsrv.zeroBytes), ...hex(TRIGGER_HEX)]));
    const v = verifyPackage0(r, { names, password: PASSWORD, nonce: undefined });
    assert.ok(v.ok);
    assert.equal(v.nonce, "zero-bytes");
  });

  it("prefers the stored nonce when both it and a fallback would be tried", () => {
    const r = parsed(
      buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: new Uint8Array(4) }),
    );
    // The stored nonce here equals the zero-bytes fallback, so the result says "stored".
    const v = verifyPackage0(r, { names, password: PASSWORD, nonce: new Uint8Array(4) });
    assert.ok(v.ok);
    assert.equal(v.nonce, "stored");
  });

  it("matches on the AAuthName when it differs from the ServerID", () => {
    const r = parsed(Uint8Array.from([...hex(DIGEST.srvauth.stored), ...hex(TRIGGER_HEX)]));
    assert.equal(r.notification.serverId, "dmsrv");
    const v = verifyPackage0(r, { names: ["dmsrv", "srvauth"], password: PASSWORD, nonce: STORED_NONCE });
    assert.ok(v.ok);
    assert.equal(v.name, "srvauth");
    assert.equal(v.nonce, "stored");
    assert.equal(verifyPackage0(r, { names: ["dmsrv"], password: PASSWORD, nonce: STORED_NONCE }).ok, false);
  });

  it("fails with a wrong password, whichever nonce", () => {
    for (const nonce of [STORED_NONCE, new Uint8Array(4), undefined]) {
      const r = parsed(
        buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE }),
      );
      const v = verifyPackage0(r, { names, password: "wrong", nonce });
      assert.deepEqual(v, { ok: false, reason: "digest-mismatch" });
    }
  });

  it("fails with a wrong stored nonce when the server used it (no fallback matches)", () => {
    const r = parsed(
      buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE }),
    );
    const v = verifyPackage0(r, { names, password: PASSWORD, nonce: Uint8Array.of(9, 9, 9) });
    assert.equal(v.ok, false);
  });

  it("fails when one trigger byte changed in transit", () => {
    const pkg = buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE });
    const tampered = Uint8Array.from(pkg);
    const last = tampered.length - 1;
    tampered[last] = tampered[last]! ^ 0x01;
    assert.equal(verifyPackage0(parsed(pkg), { names, password: PASSWORD, nonce: STORED_NONCE }).ok, true);
    assert.equal(
      verifyPackage0(parsed(tampered), { names, password: PASSWORD, nonce: STORED_NONCE }).ok,
      false,
    );
  });

  it("fails with no names to try, and on a digest of the wrong length", () => {
    const r = parsed(
      buildPackage0(NOTIFICATION, { serverId: "dmsrv", password: PASSWORD, nonce: STORED_NONCE }),
    );
    assert.equal(verifyPackage0(r, { names: [], password: PASSWORD, nonce: STORED_NONCE }).ok, false);
    const short = { digest: r.digest.subarray(0, 15), trigger: r.trigger };
    assert.equal(verifyPackage0(short, { names, password: PASSWORD, nonce: STORED_NONCE }).ok, false);
  });
});

describe("Pkg#0 property", () => {
  const notification = fc.record({
    version: fc.integer({ min: 0, max: 0x3ff }),
    uiMode: fc.constantFrom<UiMode>("not-specified", "background", "informative", "user-interaction"),
    initiator: fc.constantFrom<"client" | "server">("client", "server"),
    sessionId: fc.integer({ min: 1, max: 0xffff }),
    serverId: fc.string({ unit: "grapheme", maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= 255),
    vendorSpecific: fc.uint8Array({ maxLength: 40 }),
  });

  it("build -> parse gives the notification back, and the digest verifies", () => {
    fc.assert(
      fc.property(notification, fc.string(), fc.uint8Array({ maxLength: 24 }), (n, password, nonce) => {
        const r = parsed(buildPackage0(n, { serverId: n.serverId, password, nonce }));
        assert.deepEqual(r.notification, { ...n }); // fc.record objects have a null prototype
        const v = verifyPackage0(r, { names: [n.serverId], password, nonce });
        assert.ok(v.ok);
      }),
    );
  });

  it("never throws on arbitrary bytes: a notification or a Codec_* error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const r = parsePackage0(bytes);
        assert.ok(r.ok || r.error.code.startsWith("Codec_"));
      }),
    );
  });
});

describe("sessionIdText", () => {
  const rows: [number, string][] = [
    [0x0001, "1"],
    [0x000a, "A"],
    [0x000f, "F"],
    [0x0010, "10"],
    [0x00af, "AF"],
    [0x0100, "100"],
    [0x0abc, "ABC"],
    [0x1000, "1000"],
    [0x1234, "1234"],
    [0xabcd, "ABCD"],
    [0xffff, "FFFF"],
  ];
  for (const [id, text] of rows) {
    it(`0x${id.toString(16).padStart(4, "0")} -> "${text}"`, () => {
      assert.equal(sessionIdText(id), text);
    });
  }

  it("maps a parsed session id (0x00AF in the vector) to its Pkg#1 SessionID", () => {
    assert.equal(sessionIdText(parsed(withDigest(hex(TRIGGER_HEX))).notification.sessionId), "AF");
  });

  for (const bad of [0, -1, 0x10000, 1.5, Number.NaN]) {
    it(`throws RangeError for ${String(bad)}`, () => {
      assert.throws(() => sessionIdText(bad), RangeError);
    });
  }
});
