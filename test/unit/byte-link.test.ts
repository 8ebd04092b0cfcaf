import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { parseTcpAddress, serialLinkFactory } from "../../src/core/byte-link.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";

describe("byte links: tcp:// serial servers", () => {
  let server: Server | undefined;
  const sockets: Socket[] = [];

  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    if (server !== undefined) {
      const closed = once(server, "close");
      server.close();
      await closed;
    }
    server = undefined;
  });

  async function echoServer(): Promise<number> {
    server = createServer((s) => {
      sockets.push(s);
      s.pipe(s);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const address = server.address();
    assert.ok(address !== null && typeof address === "object");
    return address.port;
  }

  it("parses tcp://host:port and nothing else", () => {
    assert.deepEqual(parseTcpAddress("tcp://10.0.0.5:4001"), { host: "10.0.0.5", port: 4001 });
    assert.deepEqual(parseTcpAddress("tcp://[::1]:4001"), { host: "::1", port: 4001 });
    assert.deepEqual(parseTcpAddress("tcp://moxa.local:950"), { host: "moxa.local", port: 950 });
    assert.equal(parseTcpAddress("/dev/serial/by-id/usb-FTDI-if00-port0"), undefined);
    assert.equal(parseTcpAddress("tcp://host"), undefined);
    assert.equal(parseTcpAddress("tcp://host:70000"), undefined);
    assert.equal(parseTcpAddress("tcp://host:1/path"), undefined);
  });

  it("the link factory connects a socket for tcp://: bytes both ways, the peer closing ends readable", async () => {
    const port = await echoServer();
    const link = await serialLinkFactory({ path: `tcp://127.0.0.1:${port}` })();
    const writer = link.writable.getWriter();
    const reader = link.readable.getReader();
    await writer.write(Uint8Array.from([0x80, 0x00, 0x07, 0x10, 0x00, 0x20, 0x00]));
    const got: number[] = [];
    while (got.length < 7) {
      const r = await reader.read();
      if (r.done) assert.fail("ended early");
      got.push(...r.value);
    }
    assert.deepEqual(got, [0x80, 0x00, 0x07, 0x10, 0x00, 0x20, 0x00]);
    for (const s of sockets) s.end();
    const end = await reader.read();
    assert.equal(end.done, true);
    await link.close();
    await link.close(); // idempotent
  });

  it("a refused connection is Link_OpenFailed with the path", async () => {
    const port = await echoServer();
    const closed = once(server!, "close");
    server!.close();
    await closed;
    server = undefined;
    await assert.rejects(serialLinkFactory({ path: `tcp://127.0.0.1:${port}` })(), (e: unknown) => {
      return (
        isGatewayError(e, ErrorCode.Link_OpenFailed) && e.context?.["path"] === `tcp://127.0.0.1:${port}`
      );
    });
  });
});
