/**
 * Debian's libcoap (`libcoap3-bin`, platform.md 4) as a real CoAP peer for interop tests:
 * `startCoapServer()` runs `coap-server-notls` on a free loopback UDP port, resolves once it answers,
 * and `stop()` kills it by its PID; `coapClient(args)` runs `coap-client-notls` once. A missing binary
 * is a failure with the install hint, never a skip.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { createSocket } from "node:dgram";
import { delimiter, join } from "node:path";
import { CoapEndpoint } from "../../drivers/coap/endpoint.js";

export const LIBCOAP_MISSING =
  "libcoap is not installed: run `apt-get install libcoap3-bin` (Debian package; the CoAP interop tests need coap-client-notls and coap-server-notls)";

function find(name: string): string {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter).concat(["/usr/bin"])) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory; try the next
    }
  }
  throw new Error(LIBCOAP_MISSING);
}

/** A UDP port that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket("udp4");
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => {
    s.close(() => {
      resolve();
    });
  });
  return port;
}

export interface CoapServer {
  readonly port: number;
  readonly pid: number;
  log(): string;
  stop(): Promise<void>;
}

export async function startCoapServer(timeoutMs = 5000): Promise<CoapServer> {
  const binary = find("coap-server-notls");
  const port = await freeUdpPort();
  const child: ChildProcess = spawn(binary, ["-A", "127.0.0.1", "-p", String(port), "-v", "4"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (b: Buffer): void => {
    output = (output + b.toString("utf8")).slice(-8000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) =>
    child.once("close", () => {
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(t);
  };
  const probe = await CoapEndpoint.open({ host: "127.0.0.1", ackTimeoutMs: 100, maxRetransmit: 1 });
  try {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`coap-server-notls exited: ${output}`);
      const r = await probe
        .request({ address: "127.0.0.1", port }, { method: "GET", path: [".well-known", "core"] })
        .catch(() => undefined);
      if (r !== undefined) break;
      if (Date.now() > until) throw new Error(`coap-server-notls did not answer on ${port}: ${output}`);
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    await probe.close();
  }
  if (child.pid === undefined) throw new Error("coap-server-notls has no PID");
  return { port, pid: child.pid, log: () => output, stop };
}

/** Runs `coap-client-notls args`; resolves with stdout and stderr (never rejects on a CoAP error code). */
export function coapClient(
  args: readonly string[],
  timeoutMs = 10_000,
): Promise<{ stdout: string; stderr: string; code: number }> {
  const binary = find("coap-client-notls");
  return new Promise((resolve) => {
    execFile(binary, [...args], { timeout: timeoutMs, encoding: "utf8" }, (e, stdout, stderr) => {
      const code = e === null ? 0 : typeof e.code === "number" ? e.code : 1;
      resolve({ stdout, stderr, code });
    });
  });
}
