import assert from "node:assert/strict";
import { createHash, timingSafeEqual } from "node:crypto";
import {
  AUTH_TYPE_BASIC,
  AUTH_TYPE_MAC,
  AUTH_TYPE_MD5,
  DEFAULT_NONCE_SIZE,
  authAAuthType,
  authMetaType,
  basicDigest,
  buildChal,
  buildCred,
  constantTimeEqual,
  decodeNonce,
  encodeNonce,
  formatHmacHeader,
  hmacMac,
  md5Digest,
  newNonce,
  parseHmacHeader,
  readChal,
  schemeFromAAuthType,
  schemeFromMetaType,
  verifyCred,
  verifyHmac,
  type AAuthType,
  type AuthResult,
  type AuthScheme,
  type Credentials,
  type CredScheme,
  type HmacHeader,
} from "../../src/dm/auth.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";
import type { Chal, Cred } from "../../src/syncml/model.js";

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const md5 = (bytes: Uint8Array): Buffer => createHash("md5").update(bytes).digest();
const concat = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);

/** The worked example of DM Security 1.2 section 5.1.3 and protocol.md 3.7. */
const BRUCE: Credentials = { name: "Bruce2", secret: "OhBehave" };
const NONCE = ascii("Nonce");
/** A nonce that is not text: NUL, 0xFF, a lone continuation byte, an invalid UTF-8 pair, LF, ":". */
const BIN_NONCE = Uint8Array.of(0x00, 0xff, 0x80, 0xc3, 0x28, 0x0a, 0x3a, 0xfe);
const XML_BODY = ascii('<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD></SyncHdr></SyncML>');
/** The opening of a WBXML SyncML 1.2 message (version 1.2, public id 0x1201 style bytes, UTF-8). */
const WBXML_BODY = Uint8Array.of(
  0x02,
  0xa4,
  0x01,
  0x6a,
  0x00,
  0x6d,
  0x6c,
  0x71,
  0xc3,
  0x03,
  0x31,
  0x2e,
  0x32,
);
const WBXML_BODY_FULL = concat(WBXML_BODY, Uint8Array.of(0x00, 0x01, 0x01, 0x01));

function failure(r: AuthResult): Exclude<AuthResult, { ok: true }> {
  assert.ok(!r.ok, `expected a refusal, got ok (${r.ok ? r.scheme : ""})`);
  assert.ok(r.reason.length > 0, "a refusal carries a reason");
  return r;
}

function parsed(text: string): HmacHeader {
  const r = parseHmacHeader(text);
  assert.ok(r.ok, `expected ${JSON.stringify(text)} to parse, got ${r.ok ? "" : `${r.code}: ${r.reason}`}`);
  return r.header;
}

describe("dm/auth: scheme names", () => {
  const rows: { scheme: AuthScheme; type: string; aauth: AAuthType }[] = [
    { scheme: "basic", type: "syncml:auth-basic", aauth: "BASIC" },
    { scheme: "md5", type: "syncml:auth-md5", aauth: "DIGEST" },
    { scheme: "hmac", type: "syncml:auth-MAC", aauth: "HMAC" },
  ];
  for (const row of rows) {
    it(`maps ${row.scheme} to ${row.type} and ${row.aauth} and back`, () => {
      assert.equal(authMetaType(row.scheme), row.type);
      assert.equal(authAAuthType(row.scheme), row.aauth);
      assert.equal(schemeFromMetaType(row.type), row.scheme);
      assert.equal(schemeFromAAuthType(row.aauth), row.scheme);
    });
  }

  it("exports the Meta Type strings of the spec", () => {
    assert.deepEqual(
      [AUTH_TYPE_BASIC, AUTH_TYPE_MD5, AUTH_TYPE_MAC],
      rows.map((r) => r.type),
    );
  });

  it("reads Meta Types and AAuthTypes regardless of case and surrounding space", () => {
    assert.equal(schemeFromMetaType("syncml:auth-mac"), "hmac");
    assert.equal(schemeFromMetaType(" SYNCML:AUTH-MD5 \n"), "md5");
    assert.equal(schemeFromAAuthType("digest"), "md5");
  });

  it("knows no scheme for the other credential types and AAuthTypes", () => {
    for (const t of ["syncml:auth-X509", "syncml:auth-securid", "syncml:auth-none", "", "md5"]) {
      assert.equal(schemeFromMetaType(t), undefined, t);
    }
    for (const t of ["HTTP-BASIC", "HTTP-DIGEST", "X509", "TRANSPORT", "MAC", ""]) {
      assert.equal(schemeFromAAuthType(t), undefined, t);
    }
  });
});

describe("dm/auth: basic and md5 digests", () => {
  it("computes the basic vector of protocol.md 3.7", () => {
    assert.equal(basicDigest(BRUCE), "QnJ1Y2UyOk9oQmVoYXZl");
  });

  it("computes the md5 vector of protocol.md 3.7 (Bruce2 / OhBehave / Nonce)", () => {
    assert.equal(md5Digest(BRUCE, NONCE), "Zz6EivR3yeaaENcRN6lpAQ==");
  });

  it("agrees with an independent step-by-step md5 computation", () => {
    const key = ascii(b64(md5(ascii("Bruce2:OhBehave"))));
    assert.equal(Buffer.from(key).toString("latin1"), "PtEdr8lBQ45IbT1bZIkrOQ==");
    assert.equal(md5Digest(BRUCE, NONCE), b64(md5(concat(key, ascii(":"), NONCE))));
  });

  it("appends a binary nonce as raw octets, not as text", () => {
    // Vector computed independently with Python hashlib/base64.
    assert.equal(md5Digest(BRUCE, BIN_NONCE), "J7aGG3xNlTSpEf+B9eOZ9w==");
    // What a latin1 -> UTF-8 text round trip of the nonce would give: must not be what we send.
    assert.notEqual(md5Digest(BRUCE, BIN_NONCE), "DiiTPkhbt960hsg3jZl3yg==");
  });

  it("hashes non-ASCII names and secrets as UTF-8", () => {
    const cred = { name: "Jürgen", secret: "pässwörd€" };
    assert.equal(basicDigest(cred), "SsO8cmdlbjpww6Rzc3fDtnJk4oKs");
    assert.equal(md5Digest(cred, NONCE), "+qsjc3ZYSIggG0PyHu6kGw==");
  });

  it("gives a different md5 digest for an empty nonce than for a non-empty one", () => {
    const empty = md5Digest(BRUCE, new Uint8Array(0));
    assert.equal(empty, b64(md5(concat(ascii("PtEdr8lBQ45IbT1bZIkrOQ=="), ascii(":")))));
    assert.notEqual(empty, md5Digest(BRUCE, NONCE));
  });

  it("builds a basic Cred with Meta Type and Format b64", () => {
    assert.deepEqual(buildCred("basic", BRUCE), {
      meta: { type: "syncml:auth-basic", format: "b64" },
      data: "QnJ1Y2UyOk9oQmVoYXZl",
    });
  });

  it("builds an md5 Cred with Meta Type and Format b64", () => {
    assert.deepEqual(buildCred("md5", BRUCE, NONCE), {
      meta: { type: "syncml:auth-md5", format: "b64" },
      data: "Zz6EivR3yeaaENcRN6lpAQ==",
    });
  });

  it("refuses to build md5 credentials without a nonce (a programming error)", () => {
    const loose = buildCred as (s: CredScheme, c: Credentials, n?: Uint8Array) => Cred;
    assert.throws(() => loose("md5", BRUCE), { name: "AssertionError" });
  });
});

describe("dm/auth: HMAC (x-syncml-hmac)", () => {
  it("matches an independent step-by-step computation with node:crypto", () => {
    const key = b64(md5(ascii(`${BRUCE.name}:${BRUCE.secret}`)));
    const bodyHash = b64(md5(XML_BODY));
    assert.equal(bodyHash, "CxwYM2vx+UggLGioAOIJew==");
    const expected = b64(md5(concat(ascii(key), ascii(":"), NONCE, ascii(":"), ascii(bodyHash))));
    assert.equal(hmacMac(BRUCE, NONCE, XML_BODY), expected);
  });

  it("matches the vector computed independently with Python hashlib", () => {
    assert.equal(hmacMac(BRUCE, NONCE, XML_BODY), "DNS6Uo6taaMA4wgNMDxQ9Q==");
  });

  it("MACs a WBXML body with a binary nonce byte for byte", () => {
    assert.equal(hmacMac(BRUCE, BIN_NONCE, WBXML_BODY_FULL), "HnYVlcucquf1UHhuSxNDwg==");
  });

  it("changes when one body byte changes", () => {
    const other = Uint8Array.from(XML_BODY);
    other[5] = (other[5] ?? 0) ^ 1;
    assert.notEqual(hmacMac(BRUCE, NONCE, other), hmacMac(BRUCE, NONCE, XML_BODY));
  });

  it('formats the header as algorithm=MD5, username="<name>", mac=<b64>', () => {
    assert.equal(
      formatHmacHeader({ username: "Bruce2", mac: "DNS6Uo6taaMA4wgNMDxQ9Q==" }),
      'algorithm=MD5, username="Bruce2", mac=DNS6Uo6taaMA4wgNMDxQ9Q==',
    );
    assert.equal(
      formatHmacHeader({ algorithm: "MD5", username: "a", mac: "AA==" }),
      'algorithm=MD5, username="a", mac=AA==',
    );
  });

  it("escapes quotes and backslashes in the username, and parses them back", () => {
    const username = 'Robert "Bob" \\ Jordan, Jr.';
    const text = formatHmacHeader({ username, mac: "AA==" });
    assert.equal(text, 'algorithm=MD5, username="Robert \\"Bob\\" \\\\ Jordan, Jr.", mac=AA==');
    assert.deepEqual(parsed(text), { algorithm: "MD5", username, mac: "AA==" });
  });

  it("refuses to format a username with a control character or a mac that is not Base64", () => {
    for (const bad of [
      { username: "evil\r\nSet-Cookie: x", mac: "AA==" },
      { username: "nul\u0000", mac: "AA==" },
      { username: "ok", mac: "not base64!" },
      { username: "ok", mac: "" },
    ]) {
      assert.throws(
        () => formatHmacHeader(bad),
        (e: unknown) => isGatewayError(e, ErrorCode.Codec_EncodeFailed),
        JSON.stringify(bad),
      );
    }
  });
});

describe("dm/auth: parseHmacHeader", () => {
  const MAC = "DNS6Uo6taaMA4wgNMDxQ9Q==";
  const rows: { name: string; text: string; username?: string; mac?: string }[] = [
    { name: "the canonical form", text: `algorithm=MD5, username="Bruce2", mac=${MAC}` },
    { name: "no spaces", text: `algorithm=MD5,username="Bruce2",mac=${MAC}` },
    {
      name: "spaces and tabs everywhere",
      text: ` algorithm = MD5 ,\t username =  "Bruce2" ,  mac =\t${MAC}  `,
    },
    { name: "another order", text: `mac=${MAC}, username="Bruce2", algorithm=MD5` },
    { name: "the algorithm left out (MD5 assumed)", text: `username="Bruce2", mac=${MAC}` },
    { name: "a lower-case algorithm", text: `algorithm=md5, username="Bruce2", mac=${MAC}` },
    { name: "a quoted algorithm", text: `algorithm="MD5", username="Bruce2", mac=${MAC}` },
    { name: "an unquoted username", text: `algorithm=MD5, username=Bruce2, mac=${MAC}` },
    { name: "a quoted mac", text: `algorithm=MD5, username="Bruce2", mac="${MAC}"` },
    { name: "upper-case parameter names", text: `ALGORITHM=MD5, UserName="Bruce2", MAC=${MAC}` },
    {
      name: "extra parameters",
      text: `algorithm=MD5, realm="a, b=c", username="Bruce2", x=1, mac=${MAC}, y="z"`,
    },
    { name: "empty list elements", text: `, algorithm=MD5,, username="Bruce2" , ,mac=${MAC},` },
    { name: "a leading header name", text: `x-syncml-hmac: algorithm=MD5, username="Bruce2", mac=${MAC}` },
    { name: "folded over lines", text: `algorithm=MD5,\r\n username="Bruce2",\r\n\tmac=${MAC}` },
    {
      name: "the example of DM Security 1.2 section 5.1.4.3 (folded, unpadded mac)",
      text: 'x-syncml-hmac: algorithm=MD5, username="Robert Jordan",\nmac=NTI2OTJhMDAwNjYxODkwYmQ3NWUxN2RhN2ZmYmJlMzk',
      username: "Robert Jordan",
      mac: "NTI2OTJhMDAwNjYxODkwYmQ3NWUxN2RhN2ZmYmJlMzk",
    },
  ];
  for (const row of rows) {
    it(`parses ${row.name}`, () => {
      assert.deepEqual(parsed(row.text), {
        algorithm: "MD5",
        username: row.username ?? "Bruce2",
        mac: row.mac ?? MAC,
      });
    });
  }

  const refusals: { name: string; text: string; code: string }[] = [
    { name: "garbage", text: "hello world", code: "malformed" },
    { name: "binary junk", text: "\u0000\u00ff\u0001", code: "malformed" },
    { name: "a parameter without =", text: `username "Bruce2", mac=${MAC}`, code: "malformed" },
    { name: "a value without a name", text: `="Bruce2", mac=${MAC}`, code: "malformed" },
    { name: "an unterminated quote", text: `username="Bruce2, mac=${MAC}`, code: "malformed" },
    { name: "two parameters without a comma", text: `username="Bruce2" mac=${MAC}`, code: "malformed" },
    { name: "an empty unquoted value", text: `algorithm=, username="Bruce2", mac=${MAC}`, code: "malformed" },
    { name: "a repeated mac", text: `username="Bruce2", mac=${MAC}, mac=AAAA`, code: "malformed" },
    {
      name: "a repeated username (two folded headers)",
      text: `username="a", mac=AA==, username="b", mac=AA==`,
      code: "malformed",
    },
    { name: "a mac that is not Base64", text: 'username="Bruce2", mac="$$$$"', code: "malformed" },
    { name: "a mac of impossible length", text: 'username="Bruce2", mac=AAAAA', code: "malformed" },
    { name: "SHA1", text: `algorithm=SHA1, username="Bruce2", mac=${MAC}`, code: "unsupported-algorithm" },
    {
      name: "HMAC-SHA256",
      text: `algorithm="HMAC-SHA256", username="Bruce2", mac=${MAC}`,
      code: "unsupported-algorithm",
    },
    { name: "no username", text: `algorithm=MD5, mac=${MAC}`, code: "missing-username" },
    { name: "an empty username", text: `username="", mac=${MAC}`, code: "missing-username" },
    { name: "no mac", text: 'algorithm=MD5, username="Bruce2"', code: "missing-mac" },
    { name: "an empty quoted mac", text: 'username="Bruce2", mac=""', code: "missing-mac" },
    { name: "an empty header", text: "", code: "missing-username" },
  ];
  for (const row of refusals) {
    it(`refuses ${row.name} (${row.code})`, () => {
      const r = parseHmacHeader(row.text);
      assert.ok(!r.ok, "expected a refusal");
      assert.equal(r.code, row.code);
      assert.ok(r.reason.length > 0);
    });
  }

  it("names the refused algorithm, made printable and short", () => {
    const r = parseHmacHeader(`algorithm="SHA\u0001${"9".repeat(60)}", username="u", mac=AA==`);
    assert.ok(!r.ok && r.code === "unsupported-algorithm");
    assert.ok(r.algorithm !== undefined);
    assert.match(r.algorithm, /^SHA\?9+\.\.\.$/);
    assert.ok(r.algorithm.length <= 35);
  });

  it("round-trips what formatHmacHeader writes", () => {
    for (const username of ["Bruce2", "Robert Jordan", "ünï©ødé", 'q"uo\\te', "a,b=c"]) {
      const mac = hmacMac({ name: username, secret: "s" }, BIN_NONCE, XML_BODY);
      assert.deepEqual(parsed(formatHmacHeader({ username, mac })), { algorithm: "MD5", username, mac });
    }
  });
});

describe("dm/auth: verifyCred", () => {
  it("accepts the right basic credentials", () => {
    assert.deepEqual(verifyCred(buildCred("basic", BRUCE), BRUCE, NONCE), { ok: true, scheme: "basic" });
  });

  it("accepts the right md5 credentials for the nonce it issued", () => {
    assert.deepEqual(verifyCred(buildCred("md5", BRUCE, BIN_NONCE), BRUCE, BIN_NONCE), {
      ok: true,
      scheme: "md5",
    });
  });

  it("accepts the protocol.md md5 vector as received Data", () => {
    const cred: Cred = { meta: { type: "syncml:auth-md5", format: "b64" }, data: "Zz6EivR3yeaaENcRN6lpAQ==" };
    assert.deepEqual(verifyCred(cred, BRUCE, NONCE), { ok: true, scheme: "md5" });
  });

  it("reads a Cred without Meta as basic in b64 (the SyncML defaults)", () => {
    assert.deepEqual(verifyCred({ data: "QnJ1Y2UyOk9oQmVoYXZl" }, BRUCE, NONCE), {
      ok: true,
      scheme: "basic",
    });
  });

  it("tolerates folded Base64, missing padding and a differently cased Type", () => {
    const cred: Cred = {
      meta: { type: "SYNCML:AUTH-MD5", format: "B64" },
      data: " Zz6EivR3yeaa\nENcRN6lpAQ ",
    };
    assert.deepEqual(verifyCred(cred, BRUCE, NONCE), { ok: true, scheme: "md5" });
  });

  it("answers 407 when there are no credentials", () => {
    const r = failure(verifyCred(undefined, BRUCE, NONCE));
    assert.equal(r.status, 407);
    assert.equal(r.code, "missing");
  });

  const wrong: { name: string; cred: Cred; code: string; require?: CredScheme }[] = [
    {
      name: "a wrong basic password",
      cred: buildCred("basic", { name: "Bruce2", secret: "OhBehave!" }),
      code: "mismatch",
    },
    {
      name: "a wrong basic user",
      cred: buildCred("basic", { name: "Bruce3", secret: "OhBehave" }),
      code: "mismatch",
    },
    {
      name: "a wrong md5 password",
      cred: buildCred("md5", { name: "Bruce2", secret: "x" }, NONCE),
      code: "mismatch",
    },
    {
      name: "a wrong md5 user",
      cred: buildCred("md5", { name: "bruce2", secret: "OhBehave" }, NONCE),
      code: "mismatch",
    },
    { name: "a stale nonce", cred: buildCred("md5", BRUCE, ascii("Old")), code: "mismatch" },
    {
      name: "md5 Data of another length",
      cred: { meta: { type: "syncml:auth-md5", format: "b64" }, data: "Zz6EivR3yeaaENcRN6lp" },
      code: "mismatch",
    },
    {
      name: "an empty Data",
      cred: { meta: { type: "syncml:auth-basic", format: "b64" }, data: "" },
      code: "mismatch",
    },
    {
      name: "Data that is not Base64",
      cred: { meta: { type: "syncml:auth-basic", format: "b64" }, data: "Bruce2:OhBehave" },
      code: "malformed",
    },
    {
      name: "a chr Format",
      cred: { meta: { type: "syncml:auth-basic", format: "chr" }, data: "QnJ1Y2UyOk9oQmVoYXZl" },
      code: "unsupported-format",
    },
    {
      name: "an X509 Type",
      cred: { meta: { type: "syncml:auth-X509", format: "b64" }, data: "AA==" },
      code: "unsupported-type",
    },
    {
      name: "syncml:auth-MAC in Cred",
      cred: { meta: { type: "syncml:auth-MAC", format: "b64" }, data: "AA==" },
      code: "unsupported-type",
    },
    {
      name: "basic where md5 was required",
      cred: buildCred("basic", BRUCE),
      code: "wrong-scheme",
      require: "md5",
    },
  ];
  for (const row of wrong) {
    it(`answers 401 (${row.code}) for ${row.name}`, () => {
      const options = row.require === undefined ? {} : { require: row.require };
      const r = failure(verifyCred(row.cred, BRUCE, NONCE, options));
      assert.equal(r.status, 401);
      assert.equal(r.code, row.code);
    });
  }

  it("accepts the required scheme when it is used", () => {
    assert.deepEqual(verifyCred(buildCred("md5", BRUCE, NONCE), BRUCE, NONCE, { require: "md5" }), {
      ok: true,
      scheme: "md5",
    });
  });
});

describe("dm/auth: verifyHmac", () => {
  const header = (cred: Credentials, nonce: Uint8Array, body: Uint8Array): string =>
    formatHmacHeader({ username: cred.name, mac: hmacMac(cred, nonce, body) });

  it("accepts the right MAC", () => {
    assert.deepEqual(
      verifyHmac(header(BRUCE, BIN_NONCE, WBXML_BODY_FULL), BRUCE, BIN_NONCE, WBXML_BODY_FULL),
      {
        ok: true,
        scheme: "hmac",
      },
    );
  });

  it("accepts the independently computed vector in a hand-written header", () => {
    const text = 'username=Bruce2,mac="DNS6Uo6taaMA4wgNMDxQ9Q"';
    assert.deepEqual(verifyHmac(text, BRUCE, NONCE, XML_BODY), { ok: true, scheme: "hmac" });
  });

  it("answers 407 without a header, or with a blank one", () => {
    for (const h of [undefined, "", "  \t"]) {
      const r = failure(verifyHmac(h, BRUCE, NONCE, XML_BODY));
      assert.equal(r.status, 407);
      assert.equal(r.code, "missing");
    }
  });

  const cases: { name: string; text: () => string; code: string }[] = [
    { name: "a body changed after MACing", text: () => header(BRUCE, NONCE, WBXML_BODY), code: "mismatch" },
    { name: "another nonce", text: () => header(BRUCE, ascii("Old"), XML_BODY), code: "mismatch" },
    {
      name: "a wrong secret",
      text: () => header({ name: "Bruce2", secret: "nope" }, NONCE, XML_BODY),
      code: "mismatch",
    },
    { name: "a truncated mac", text: () => 'username="Bruce2", mac=DNS6Uo6taaMA4w', code: "mismatch" },
    {
      name: "another username",
      text: () => header({ name: "Bruce3", secret: "OhBehave" }, NONCE, XML_BODY),
      code: "unknown-user",
    },
    {
      name: "an unsupported algorithm",
      text: () => 'algorithm=SHA1, username="Bruce2", mac=AA==',
      code: "unsupported-algorithm",
    },
    { name: "garbage", text: () => "garbage!", code: "malformed" },
    { name: "no mac", text: () => 'username="Bruce2"', code: "malformed" },
  ];
  for (const row of cases) {
    it(`answers 401 (${row.code}) for ${row.name}`, () => {
      const r = failure(verifyHmac(row.text(), BRUCE, NONCE, XML_BODY));
      assert.equal(r.status, 401);
      assert.equal(r.code, row.code);
    });
  }
});

describe("dm/auth: challenges", () => {
  it("builds an md5 challenge with NextNonce = B64(nonce)", () => {
    assert.deepEqual(buildChal("md5", NONCE), {
      meta: { type: "syncml:auth-md5", format: "b64", nextNonce: "Tm9uY2U=" },
    });
  });

  it("builds a basic challenge without a nonce", () => {
    assert.deepEqual(buildChal("basic"), { meta: { type: "syncml:auth-basic", format: "b64" } });
  });

  it("refuses to build an md5 or HMAC challenge without a nonce (a programming error)", () => {
    const loose = buildChal as (s: AuthScheme, n?: Uint8Array) => Chal;
    assert.throws(() => loose("hmac"), { name: "AssertionError" });
  });

  for (const scheme of ["basic", "md5", "hmac"] as const) {
    it(`reads back a ${scheme} challenge with a binary nonce`, () => {
      const chal = buildChal(scheme, BIN_NONCE);
      assert.equal(chal.meta.nextNonce, "AP+AwygKOv4=");
      const r = readChal(chal);
      assert.ok(r.ok);
      assert.equal(r.scheme, scheme);
      assert.deepEqual(r.nonce, BIN_NONCE);
    });
  }

  it("reads a basic challenge without NextNonce as an empty nonce", () => {
    const r = readChal({ meta: { type: "syncml:auth-basic", format: "b64" } });
    assert.ok(r.ok);
    assert.equal(r.scheme, "basic");
    assert.equal(r.nonce.length, 0);
  });

  it("reads a challenge without Format, with a folded unpadded NextNonce and a lower-case MAC type", () => {
    const r = readChal({ meta: { type: "syncml:auth-mac", nextNonce: "AP+A\r\nwygKOv4" } });
    assert.ok(r.ok);
    assert.equal(r.scheme, "hmac");
    assert.deepEqual(r.nonce, BIN_NONCE);
  });

  it("reads a challenge without Type as basic", () => {
    const r = readChal({ meta: { format: "b64", nextNonce: "Tm9uY2U=" } });
    assert.ok(r.ok);
    assert.equal(r.scheme, "basic");
    assert.deepEqual(r.nonce, NONCE);
  });

  const refusals: { name: string; chal: Chal; code: string }[] = [
    {
      name: "an X509 challenge",
      chal: { meta: { type: "syncml:auth-X509", format: "b64", nextNonce: "AA==" } },
      code: "unknown-type",
    },
    { name: "an unknown type", chal: { meta: { type: "syncml:auth-foo" } }, code: "unknown-type" },
    {
      name: "a NextNonce that is not Base64",
      chal: { meta: { type: "syncml:auth-md5", format: "b64", nextNonce: "No nce!" } },
      code: "bad-nonce",
    },
    {
      name: "a NextNonce of impossible length",
      chal: { meta: { type: "syncml:auth-md5", format: "b64", nextNonce: "AAAAA" } },
      code: "bad-nonce",
    },
    {
      name: "an md5 challenge without NextNonce",
      chal: { meta: { type: "syncml:auth-md5", format: "b64" } },
      code: "missing-nonce",
    },
    {
      name: "an HMAC challenge without NextNonce",
      chal: { meta: { type: "syncml:auth-MAC", format: "b64" } },
      code: "missing-nonce",
    },
    {
      name: "a chr NextNonce",
      chal: { meta: { type: "syncml:auth-md5", format: "chr", nextNonce: "Nonce" } },
      code: "unsupported-format",
    },
  ];
  for (const row of refusals) {
    it(`refuses ${row.name} (${row.code})`, () => {
      const r = readChal(row.chal);
      assert.ok(!r.ok);
      assert.equal(r.code, row.code);
      assert.ok(r.reason.length > 0);
    });
  }

  it("names the unknown type it refused", () => {
    const r = readChal({ meta: { type: "syncml:auth-X509" } });
    assert.ok(!r.ok);
    assert.equal(r.type, "syncml:auth-X509");
  });
});

describe("dm/auth: nonces", () => {
  it("asks the injected source for 16 octets by default and returns a copy", () => {
    const asked: number[] = [];
    const source = Buffer.from("00112233445566778899aabbccddeeff", "hex");
    const nonce = newNonce((n) => {
      asked.push(n);
      return source;
    });
    assert.deepEqual(asked, [DEFAULT_NONCE_SIZE]);
    assert.equal(DEFAULT_NONCE_SIZE, 16);
    assert.deepEqual(nonce, Uint8Array.from(source));
    source[0] = 0x99;
    assert.equal(nonce[0], 0x00);
  });

  it("honours a larger size", () => {
    assert.equal(newNonce((n) => new Uint8Array(n).fill(7), 32).length, 32);
  });

  it("refuses a source that returns the wrong number of octets, and a size below 1", () => {
    assert.throws(() => newNonce(() => new Uint8Array(8)), { name: "AssertionError" });
    assert.throws(() => newNonce((n) => new Uint8Array(n), 0), { name: "AssertionError" });
  });

  it("encodes and decodes NextNonce text", () => {
    assert.equal(encodeNonce(BIN_NONCE), "AP+AwygKOv4=");
    assert.deepEqual(decodeNonce("AP+AwygKOv4="), BIN_NONCE);
    assert.deepEqual(decodeNonce(""), new Uint8Array(0));
    assert.equal(decodeNonce("AP-AwygKOv4="), undefined, "URL-safe alphabet is not b64");
    assert.equal(decodeNonce("A"), undefined);
  });
});

describe("dm/auth: constantTimeEqual", () => {
  it("is true for equal bytes, including empty ones", () => {
    assert.equal(constantTimeEqual(ascii("abc"), ascii("abc")), true);
    assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
  });

  it("is false for different bytes of the same length", () => {
    assert.equal(constantTimeEqual(ascii("abc"), ascii("abd")), false);
  });

  it("is false, without throwing, for different lengths (where timingSafeEqual throws)", () => {
    assert.throws(() => timingSafeEqual(ascii("abc"), ascii("abcd")), RangeError);
    assert.equal(constantTimeEqual(ascii("abc"), ascii("abcd")), false);
    assert.equal(constantTimeEqual(ascii("abcd"), ascii("abc")), false);
    assert.equal(constantTimeEqual(new Uint8Array(0), ascii("a")), false);
  });
});

describe("dm/auth: secrets stay out of refusals and errors", () => {
  const SECRET = "S3cr3t-Pa55w0rd!";
  const ME: Credentials = { name: "gw-user", secret: SECRET };
  const key = b64(md5(ascii(`${ME.name}:${SECRET}`)));
  /** Everything that would give the secret away: the secret, name:secret, its B64, the derived key and values. */
  const forbidden = [
    SECRET,
    `${ME.name}:${SECRET}`,
    b64(ascii(`${ME.name}:${SECRET}`)),
    key,
    md5Digest(ME, NONCE),
    hmacMac(ME, NONCE, XML_BODY),
  ];

  function assertClean(what: string, text: string): void {
    for (const f of forbidden) assert.ok(!text.includes(f), `${what} gives a secret away: ${text}`);
  }

  function thrown(fn: () => unknown): unknown {
    try {
      fn();
    } catch (e: unknown) {
      return e;
    }
    assert.fail("expected a throw");
  }

  it("keeps every verifyCred and verifyHmac refusal free of secrets", () => {
    const results: AuthResult[] = [
      verifyCred(undefined, ME, NONCE),
      verifyCred(buildCred("basic", { name: ME.name, secret: "wrong" }), ME, NONCE),
      verifyCred(buildCred("md5", { name: ME.name, secret: "wrong" }, NONCE), ME, NONCE),
      verifyCred(buildCred("basic", ME), ME, NONCE, { require: "md5" }),
      verifyCred({ meta: { type: "syncml:auth-md5" }, data: "!!" }, ME, NONCE),
      verifyCred({ meta: { type: "syncml:auth-basic", format: "chr" }, data: "x" }, ME, NONCE),
      verifyCred({ meta: { type: "syncml:auth-X509" }, data: "x" }, ME, NONCE),
      verifyHmac(undefined, ME, NONCE, XML_BODY),
      verifyHmac('username="gw-user", mac=AAAA', ME, NONCE, XML_BODY),
      verifyHmac('username="other", mac=AAAA', ME, NONCE, XML_BODY),
      verifyHmac('algorithm=SHA1, username="gw-user", mac=AAAA', ME, NONCE, XML_BODY),
      verifyHmac("garbage", ME, NONCE, XML_BODY),
      verifyHmac(
        formatHmacHeader({ username: ME.name, mac: hmacMac(ME, NONCE, XML_BODY) }),
        ME,
        NONCE,
        WBXML_BODY,
      ),
    ];
    for (const r of results) {
      assert.equal(r.ok, false);
      assertClean("a refusal", JSON.stringify(r));
    }
    assert.equal(results.length, 13);
  });

  it("keeps thrown errors (message, stack, context) free of secrets", () => {
    const loose = buildCred as (s: CredScheme, c: Credentials, n?: Uint8Array) => Cred;
    const errors = [
      thrown(() => loose("md5", ME)),
      thrown(() => formatHmacHeader({ username: `${ME.name}\n`, mac: hmacMac(ME, NONCE, XML_BODY) })),
      thrown(() => formatHmacHeader({ username: ME.name, mac: `${hmacMac(ME, NONCE, XML_BODY)}!` })),
    ];
    for (const e of errors) {
      assert.ok(e instanceof Error);
      assertClean("an error message", e.message);
      assertClean("an error stack", e.stack ?? "");
      assertClean("an error", JSON.stringify(Object.entries(e)));
    }
    assert.equal(errors.length, 3);
  });
});
