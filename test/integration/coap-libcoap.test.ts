/**
 * CoAP interop with Debian's libcoap (libcoap3-bin, platform.md 4): the gateway's CoAP stack as a
 * client of `coap-server-notls` (GET, Block1 PUT and Block2 GET of 10 KB), and `coap-client-notls`
 * against the driver's LwM2M server (/.well-known/core, registration, and a registration whose
 * link-format payload travels in Block1 with a new token per block tied by Request-Tag).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONTENT_FORMAT } from "../../drivers/coap/constants.js";
import { CoapDriver } from "../../drivers/coap/driver.js";
import { CoapEndpoint } from "../../drivers/coap/endpoint.js";
import type { DriverContext } from "../../drivers/driver.js";
import { SILENT_LOGGER } from "../../src/core/log.js";
import { coapClient, startCoapServer, type CoapServer } from "../helpers/libcoap.js";

describe("CoAP interop: the gateway's client against coap-server-notls", function () {
  this.timeout(20_000);
  let server: CoapServer | undefined;
  let endpoint: CoapEndpoint | undefined;

  beforeEach(async () => {
    server = await startCoapServer();
    endpoint = await CoapEndpoint.open({ host: "127.0.0.1" });
  });
  afterEach(async () => {
    await endpoint?.close();
    await server?.stop();
  });

  it("GETs /.well-known/core", async () => {
    assert.ok(server !== undefined && endpoint !== undefined);
    const r = await endpoint.request(
      { address: "127.0.0.1", port: server.port },
      { method: "GET", path: [".well-known", "core"] },
    );
    assert.equal(r.code, "2.05");
    assert.match(Buffer.from(r.payload ?? []).toString(), /<\/example_data>/);
  });

  it("PUTs 10 KB with Block1 and GETs it back with Block2", async () => {
    assert.ok(server !== undefined && endpoint !== undefined);
    const peer = { address: "127.0.0.1", port: server.port };
    const body = Buffer.alloc(10 * 1024, 0).map((_, i) => (i * 13) & 0xff);
    const put = await endpoint.request(peer, {
      method: "PUT",
      path: ["example_data"],
      contentFormat: CONTENT_FORMAT.OPAQUE,
      payload: body,
    });
    assert.match(put.code, /^2\.0[14]$/, `${put.code}: ${server.log().slice(-500)}`);
    const got = await endpoint.request(peer, { method: "GET", path: ["example_data"] });
    assert.equal(got.code, "2.05");
    assert.deepEqual(Buffer.from(got.payload ?? []), Buffer.from(body));
  });
});

describe("CoAP interop: coap-client-notls against the gateway's LwM2M server", function () {
  this.timeout(20_000);
  let driver: CoapDriver;
  let dir: string;
  const seen: string[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-coap-"));
    const ctx: DriverContext = {
      log: SILENT_LOGGER,
      signal: new AbortController().signal,
      onState: () => undefined,
      onDeviceSeen: (d) => {
        seen.push(d.address);
      },
      onDeviceLost: () => undefined,
    };
    driver = new CoapDriver(
      { host: "127.0.0.1", port: 0, ackTimeoutMs: 200, maxRetransmit: 1, devInfoTimeoutMs: 500 },
      ctx,
    );
    await driver.start();
  });
  afterEach(async () => {
    await driver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("GET /.well-known/core lists /rd", async () => {
    const r = await coapClient(["-m", "get", `coap://127.0.0.1:${driver.port}/.well-known/core`]);
    assert.match(r.stdout, /<\/rd>;rt="?core\.rd"?/, r.stderr);
  });

  it("registers with a link-format body", async () => {
    const r = await coapClient([
      "-m",
      "post",
      "-t",
      "40",
      "-e",
      "</1/0>,</3/0>",
      `coap://127.0.0.1:${driver.port}/rd?ep=cli-1&lt=60`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const reg = driver.registration("cli-1");
    assert.ok(reg !== undefined, r.stderr);
    assert.equal(reg.lifetimeS, 60);
    assert.deepEqual(reg.objects, [
      [1, 0],
      [3, 0],
    ]);
  });

  it("registers with a 5 KB payload in Block1 (new token per block, Request-Tag)", async () => {
    const links = Array.from({ length: 500 }, (_, i) => `</${1000 + i}/0>`).join(",");
    const file = join(dir, "links.txt");
    writeFileSync(file, links);
    const r = await coapClient([
      "-m",
      "post",
      "-t",
      "40",
      "-b",
      "64",
      "-f",
      file,
      `coap://127.0.0.1:${driver.port}/rd?ep=cli-big&lt=60`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const reg = driver.registration("cli-big");
    assert.ok(reg !== undefined, `${r.stdout} ${r.stderr}`);
    assert.equal(reg.objects.length, 500);
    assert.deepEqual(reg.objects[499], [1499, 0]);
  });
});
