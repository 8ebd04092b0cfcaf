import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import {
  HttpTransport,
  type HttpTransportOptions,
  type MessageResult,
  type TransportFailure,
} from "../../src/northbound/http-transport.js";
import { makeTestPki, type TestPki } from "../helpers/tls.js";

// HttpTransport against real loopback servers: TLS failures classified as "tls" with short
// messages, the one retry of a request that met a stale keep-alive socket (and no other retry),
// and idle sockets closed after idleSocketMs.

const BODY = new TextEncoder().encode("<SyncML/>");

/** A listening server and what it saw. */
interface Loopback {
  readonly server: http.Server;
  readonly port: number;
  /** Requests whose head the server parsed. */
  requests: number;
  /** TCP connections (http) or completed TLS handshakes (https). */
  connections: number;
}

/** Servers and transports a test started, stopped after it whatever happened. */
class Resources {
  readonly #servers: http.Server[] = [];
  readonly #transports: HttpTransport[] = [];

  async listen(server: http.Server): Promise<Loopback> {
    this.#servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const lb: Loopback = {
      server,
      port: (server.address() as AddressInfo).port,
      requests: 0,
      connections: 0,
    };
    server.on("request", () => {
      lb.requests += 1;
    });
    server.on(server instanceof https.Server ? "secureConnection" : "connection", () => {
      lb.connections += 1;
    });
    return lb;
  }

  transport(options: HttpTransportOptions = {}): HttpTransport {
    const transport = new HttpTransport(options);
    this.#transports.push(transport);
    return transport;
  }

  async close(): Promise<void> {
    for (const t of this.#transports.splice(0)) t.close();
    await Promise.all(
      this.#servers.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => {
              resolve();
            });
            s.closeAllConnections();
          }),
      ),
    );
  }
}

/** Answers every request "ok" once its body is read. */
function answerOk(req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/vnd.syncml.dm+xml" });
    res.end("ok");
  });
}

function post(transport: HttpTransport, url: string): Promise<MessageResult> {
  return transport.postMessage({
    url,
    body: BODY,
    contentType: "application/vnd.syncml.dm+xml",
    headers: { "x-syncml-hmac": "algorithm=MD5, username=gw, mac=c2VjcmV0" },
    timeoutMs: 5_000,
  });
}

function failure(result: MessageResult): TransportFailure {
  assert.equal(result.ok, false, "the exchange failed");
  return result;
}

/** A TLS failure message: names host:port and a short code, nothing of OpenSSL's internals. */
function assertTlsMessage(message: string, port: number, code: RegExp): void {
  assert.ok(message.includes(`127.0.0.1:${port}`), message);
  assert.match(message, code);
  assert.doesNotMatch(message, /\//, "no path (OpenSSL source files) and no URL");
  assert.doesNotMatch(message, /openssl|SSL routines|:error:|\.c:\d/i);
  assert.doesNotMatch(message, /mac=|c2VjcmV0|SyncML/, "no header value, no body");
  assert.ok(message.length < 200, message);
}

/** A self-signed certificate (its own trust anchor) for DNS:other.example only. */
function otherNameCert(): { key: string; cert: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-othername-"));
  try {
    fs.writeFileSync(
      path.join(dir, "openssl.cnf"),
      `[req]
distinguished_name = dn
prompt = no
[dn]
CN = other.example
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example
`,
    );
    const run = (args: string[]): void => {
      execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    };
    run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"]);
    run(
      ["req", "-x509", "-new", "-config", "openssl.cnf", "-key", "k.pem", "-days", "1"].concat([
        "-extensions",
        "ext",
        "-out",
        "c.pem",
      ]),
    );
    return {
      key: fs.readFileSync(path.join(dir, "k.pem"), "utf8"),
      cert: fs.readFileSync(path.join(dir, "c.pem"), "utf8"),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("HttpTransport: TLS failures", function () {
  this.timeout(20_000);
  let pki: TestPki | undefined;
  const res = new Resources();

  before(() => {
    pki = makeTestPki();
  });

  after(() => {
    pki?.cleanup();
  });

  afterEach(async () => {
    await res.close();
  });

  function certs(): TestPki {
    assert.ok(pki !== undefined, "the PKI was made");
    return pki;
  }

  it("an untrusted server certificate is a tls failure naming host:port and the short code", async () => {
    const p = certs();
    const lb = await res.listen(https.createServer({ key: p.serverKey, cert: p.serverCert }, answerOk));
    const result = await post(
      res.transport({ tls: { ca: p.otherCaCert } }),
      `https://127.0.0.1:${lb.port}/dm`,
    );
    const f = failure(result);
    assert.equal(f.kind, "tls");
    assertTlsMessage(f.message, lb.port, /\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
    assert.match(f.message, /certificate/);
    assert.equal(lb.requests, 0);
  });

  it("a server requiring a client certificate, none presented: tls (TLS 1.3 certificate-required alert)", async () => {
    const p = certs();
    const lb = await res.listen(
      https.createServer(
        { key: p.serverKey, cert: p.serverCert, ca: p.caCert, requestCert: true, rejectUnauthorized: true },
        answerOk,
      ),
    );
    const transport = res.transport({ tls: { ca: p.caCert } });
    // Several times: the kind must not depend on whether the alert or a reset comes first.
    for (let i = 0; i < 5; i += 1) {
      const f = failure(await post(transport, `https://127.0.0.1:${lb.port}/dm`));
      assert.equal(f.kind, "tls", f.message);
      assertTlsMessage(f.message, lb.port, /\(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED\)/);
      assert.match(f.message, /requires a client certificate/);
    }
    assert.equal(lb.requests, 0);
  });

  it("a client certificate the server does not trust (socket closed, no alert): tls", async () => {
    const p = certs();
    // Node's https server checks the client chain after the handshake and just destroys the socket:
    // the client sees ECONNRESET on a fresh connection, which with a client certificate is "tls".
    const lb = await res.listen(
      https.createServer(
        {
          key: p.serverKey,
          cert: p.serverCert,
          ca: p.otherCaCert,
          requestCert: true,
          rejectUnauthorized: true,
        },
        answerOk,
      ),
    );
    const transport = res.transport({ tls: { ca: p.caCert, cert: p.clientCert, key: p.clientKey } });
    const f = failure(await post(transport, `https://127.0.0.1:${lb.port}/dm`));
    assert.equal(f.kind, "tls", f.message);
    assertTlsMessage(f.message, lb.port, /\((ECONNRESET|EPIPE|ERR_SSL_[A-Z0-9_]+)\)/);
    assert.match(f.message, /client certificate/);
    assert.equal(lb.requests, 0);
  });

  it("a certificate issued for another host name: tls", async () => {
    const other = otherNameCert();
    const lb = await res.listen(https.createServer({ key: other.key, cert: other.cert }, answerOk));
    // Trusted (it is its own anchor), but not for 127.0.0.1.
    const f = failure(
      await post(res.transport({ tls: { ca: other.cert } }), `https://127.0.0.1:${lb.port}/dm`),
    );
    assert.equal(f.kind, "tls", f.message);
    assertTlsMessage(f.message, lb.port, /\(ERR_TLS_CERT_ALTNAME_INVALID\)/);
    assert.match(f.message, /not issued for 127\.0\.0\.1/);
    assert.equal(lb.requests, 0);
  });

  it("a plain-HTTP port spoken to over https: tls, with OpenSSL's reason and no source path", async () => {
    const lb = await res.listen(http.createServer(answerOk));
    const f = failure(await post(res.transport(), `https://127.0.0.1:${lb.port}/dm`));
    assert.equal(f.kind, "tls", f.message);
    assertTlsMessage(f.message, lb.port, /\((EPROTO|ERR_SSL_[A-Z0-9_]+)\)/);
    assert.match(f.message, /TLS handshake/);
  });

  it("the right CA and certificate still work (control)", async () => {
    const p = certs();
    const lb = await res.listen(https.createServer({ key: p.serverKey, cert: p.serverCert }, answerOk));
    const result = await post(res.transport({ tls: { ca: p.caCert } }), `https://127.0.0.1:${lb.port}/dm`);
    assert.ok(result.ok, result.ok ? "" : result.message);
    assert.equal(lb.requests, 1);
  });
});

describe("HttpTransport: keep-alive sockets", function () {
  this.timeout(20_000);
  const res = new Resources();

  afterEach(async () => {
    await res.close();
  });

  /**
   * A server that answers the first request with keep-alive, then destroys that socket 50 ms later
   * without a word. `stale` resolves right after the destroy, in the same turn of the event loop:
   * the client has not read the FIN yet, so its agent still holds the socket as idle and the next
   * request goes out on it, as on a gateway whose server dropped an idle connection unnoticed.
   */
  async function droppingServer(
    onLater: (req: http.IncomingMessage, res: http.ServerResponse) => void = answerOk,
  ): Promise<{ lb: Loopback; stale: Promise<void> }> {
    let signal = (): void => undefined;
    const stale = new Promise<void>((resolve) => {
      signal = resolve;
    });
    let first = true;
    const lb = await res.listen(
      http.createServer((req, response) => {
        if (!first) {
          onLater(req, response);
          return;
        }
        first = false;
        const socket = req.socket;
        response.on("finish", () => {
          setTimeout(() => {
            socket.destroy();
            signal();
          }, 50);
        });
        answerOk(req, response);
      }),
    );
    return { lb, stale };
  }

  it("a request that meets a stale keep-alive socket is resent once on a fresh connection", async () => {
    const { lb, stale } = await droppingServer();
    const transport = res.transport();
    const url = `http://127.0.0.1:${lb.port}/dm`;

    const first = await post(transport, url);
    assert.ok(first.ok, first.ok ? "" : first.message);
    await stale;
    const second = await post(transport, url); // on the dead socket first, then on a new one
    assert.ok(second.ok, second.ok ? "" : second.message);
    assert.equal(lb.requests, 2, "the lost request never reached the server; its retry did");
    assert.equal(lb.connections, 2);

    // The new connection is kept alive in turn.
    const third = await post(transport, url);
    assert.ok(third.ok);
    assert.equal(lb.connections, 2);
  });

  it("a reused socket that dies after the answer began is not retried: network", async () => {
    // The second request reaches the server on the kept-alive socket, which starts to answer and
    // then dies: the server may have acted on the message, so it is not sent again.
    let signal = (): void => undefined;
    const started = new Promise<void>((resolve) => {
      signal = resolve;
    });
    let seen = 0;
    const lb = await res.listen(
      http.createServer((req, response) => {
        seen += 1;
        if (seen === 1) {
          answerOk(req, response);
          return;
        }
        req.resume();
        response.writeHead(200, { "content-length": "100" });
        response.write("partial", () => {
          setTimeout(() => {
            req.socket.destroy();
            signal();
          }, 20);
        });
      }),
    );
    const transport = res.transport();
    const url = `http://127.0.0.1:${lb.port}/dm`;
    assert.ok((await post(transport, url)).ok);
    const f = failure(await post(transport, url));
    await started;
    assert.equal(f.kind, "network", f.message);
    assert.equal(lb.requests, 2);
    assert.equal(lb.connections, 1);
  });

  it("a fresh connection reset without an answer is a network failure, not retried", async () => {
    const lb = await res.listen(
      http.createServer((req) => {
        req.socket.resetAndDestroy();
      }),
    );
    const f = failure(await post(res.transport(), `http://127.0.0.1:${lb.port}/dm`));
    assert.equal(f.kind, "network", f.message);
    assert.match(f.message, /ECONNRESET|socket hang up/);
    assert.doesNotMatch(f.message, /mac=|c2VjcmV0/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(lb.requests, 1);
    assert.equal(lb.connections, 1);
  });

  it("idle sockets are closed after idleSocketMs", async () => {
    let closed = (): void => undefined;
    const socketClosed = new Promise<void>((resolve) => {
      closed = resolve;
    });
    const server = http.createServer(answerOk);
    server.keepAliveTimeout = 10_000; // the server would keep it much longer
    server.on("connection", (socket: Socket) => {
      socket.on("close", closed);
    });
    const lb = await res.listen(server);
    const transport = res.transport({ idleSocketMs: 300 });

    const result = await post(transport, `http://127.0.0.1:${lb.port}/dm`);
    assert.ok(result.ok);
    const idleSince = Date.now();
    await socketClosed;
    const idleFor = Date.now() - idleSince;
    assert.ok(idleFor >= 250 && idleFor < 3_000, `closed after ${idleFor} ms idle`);
    assert.equal(lb.connections, 1);
  });

  it("without idleSocketMs, an idle socket outlives 300 ms and is reused", async () => {
    const lb = await res.listen(http.createServer(answerOk));
    const transport = res.transport();
    const url = `http://127.0.0.1:${lb.port}/dm`;
    assert.ok((await post(transport, url)).ok);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.ok((await post(transport, url)).ok);
    assert.equal(lb.connections, 1);
  });
});
