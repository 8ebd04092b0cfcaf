import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeMessage } from "../../src/syncml/index.js";
import { runCli } from "../helpers/cli.js";

const XML = `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>1</MsgID><Target><LocURI>http://srv/dm</LocURI></Target><Source><LocURI>IMEI:1</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Replace><CmdID>2</CmdID><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>ACME &amp; Co</Data></Item></Replace><Final/></SyncBody></SyncML>`;

describe("dmgw codec (CLI)", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-cli-"));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("encodes XML from a file to WBXML on stdout, which decodes back to the same message", () => {
    const file = join(dir, "pkg1.xml");
    writeFileSync(file, XML);
    const r = runCli(["codec", "encode", "--to", "wbxml", file]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([...r.stdout.subarray(0, 5)], [0x02, 0xa4, 0x01, 0x6a, 0x00]);
    assert.deepEqual(decodeMessage(r.stdout).message, decodeMessage(Buffer.from(XML)).message);
  });

  it("decodes WBXML from stdin and prints XML", () => {
    const wbxml = runCli(["codec", "encode", "--to", "wbxml", "-"], XML).stdout;
    const r = runCli(["codec", "decode", "-"], wbxml);
    assert.equal(r.status, 0, r.stderr);
    const text = r.stdout.toString("utf8");
    assert.match(text, /<Data>ACME &amp; Co<\/Data>/);
    assert.deepEqual(decodeMessage(r.stdout).message, decodeMessage(Buffer.from(XML)).message);
  });

  it("prints the model with --json", () => {
    const r = runCli(["codec", "decode", "--json"], XML);
    assert.equal(r.status, 0, r.stderr);
    const parsed = JSON.parse(r.stdout.toString("utf8")) as {
      encoding: string;
      message: { hdr: { sessionId: string } };
    };
    assert.equal(parsed.encoding, "xml");
    assert.equal(parsed.message.hdr.sessionId, "7");
  });

  it("answers truncated WBXML with one line on stderr, exit 65 and nothing on stdout", () => {
    const r = runCli(
      ["codec", "decode"],
      Uint8Array.of(0x02, 0xa4, 0x01, 0x6a, 0x00, 0x6d, 0x6c, 0x71, 0x03, 0x31),
    );
    assert.equal(r.status, 65);
    assert.equal(r.stdout.length, 0);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /Codec_Truncated/);
  });

  it("answers malformed XML on encode with exit 65 and nothing on stdout", () => {
    const r = runCli(["codec", "encode", "--to", "xml"], "<SyncML><SyncHdr></SyncML>");
    assert.equal(r.status, 65);
    assert.equal(r.stdout.length, 0);
    assert.match(r.stderr, /Codec_MalformedXml/);
  });

  it("refuses a bad --to with a usage error (exit 64)", () => {
    const r = runCli(["codec", "encode", "--to", "json"], XML);
    assert.equal(r.status, 64);
    assert.equal(r.stdout.length, 0);
  });

  it("reports a missing input file with exit 66", () => {
    const r = runCli(["codec", "decode", join(dir, "nope.xml")]);
    assert.equal(r.status, 66);
    assert.match(r.stderr, /cannot read/);
  });
});
