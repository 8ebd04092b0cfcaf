/**
 * A throw-away PKI for TLS tests, made with the openssl CLI in a temporary directory:
 *
 *   test CA --signs--> server certificate (CN and SAN IP:127.0.0.1, serverAuth)
 *           --signs--> client certificate (CN dmgw-test-client, clientAuth)
 *   other CA (unrelated: signs nothing the tests use)
 *
 * Keys are P-256 (instant to make), certificates valid for one day. The openssl configuration is
 * written next to them, so the system's openssl.cnf does not matter. Without the openssl command
 * this throws (never a silent skip).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface TestPki {
  /** The test CA's certificate (PEM): what a client or server trusts. */
  readonly caCert: string;
  readonly serverKey: string;
  /** For 127.0.0.1, signed by the test CA. */
  readonly serverCert: string;
  readonly clientKey: string;
  /** CN `clientCommonName`, signed by the test CA. */
  readonly clientCert: string;
  readonly clientCommonName: string;
  /** A second, unrelated CA's certificate (PEM). */
  readonly otherCaCert: string;
  /** Removes the temporary directory. Idempotent. */
  cleanup(): void;
}

const CLIENT_CN = "dmgw-test-client";

const CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

function openssl(dir: string, args: readonly string[]): void {
  try {
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error("the TLS tests need the openssl command: apt-get install openssl", { cause });
    }
    const stderr = (cause as { stderr?: Buffer }).stderr?.toString().trim() ?? "";
    throw new Error(`openssl ${args[0] ?? ""} failed: ${stderr}`, { cause });
  }
}

/** Makes the CAs, keys and certificates; call `cleanup()` when done (an `after` hook). */
export function makeTestPki(): TestPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-pki-"));
  const cleanup = (): void => {
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    fs.writeFileSync(path.join(dir, "openssl.cnf"), CONFIG);
    const key = (name: string): void => {
      openssl(dir, [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        `${name}.key`,
      ]);
    };
    const ca = (name: string, cn: string): void => {
      key(name);
      openssl(dir, [
        "req",
        "-x509",
        "-new",
        "-config",
        "openssl.cnf",
        "-key",
        `${name}.key`,
        "-subj",
        `/CN=${cn}`,
        "-days",
        "1",
        "-extensions",
        "ca",
        "-out",
        `${name}.pem`,
      ]);
    };
    const leaf = (name: string, cn: string, serial: string): void => {
      key(name);
      openssl(dir, [
        "req",
        "-new",
        "-config",
        "openssl.cnf",
        "-key",
        `${name}.key`,
        "-subj",
        `/CN=${cn}`,
        "-out",
        `${name}.csr`,
      ]);
      openssl(dir, [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        serial,
        "-days",
        "1",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        name,
        "-out",
        `${name}.pem`,
      ]);
    };
    ca("ca", "dmgw test CA");
    ca("other-ca", "dmgw unrelated CA");
    leaf("server", "127.0.0.1", "2");
    leaf("client", CLIENT_CN, "3");
    const read = (file: string): string => fs.readFileSync(path.join(dir, file), "utf8");
    return {
      caCert: read("ca.pem"),
      serverKey: read("server.key"),
      serverCert: read("server.pem"),
      clientKey: read("client.key"),
      clientCert: read("client.pem"),
      clientCommonName: CLIENT_CN,
      otherCaCert: read("other-ca.pem"),
      cleanup,
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}
