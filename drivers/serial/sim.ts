/**
 * Device simulator of the serial binding: a DM-client device (`SimulatedDevice`, the real client
 * session code) on one end of a serial line, speaking the OMA DM OBEX binding. It is the OBEX server
 * for the gateway's notification (Connect SYNCML-DM, Put application/vnd.syncml.notification,
 * Disconnect) and the OBEX client of its own session (Connect, then per message Put the DM message
 * and Get the answer, Disconnect at the end). Runs in-process on any `ByteLink` (the far end of a
 * socat pty pair, a tcp:// serial server, a memory pair), or as its own process:
 *
 *   node --import tsx drivers/serial/sim.ts <tty|tcp://host:port> <deviceId>
 *        [--server-id gw] [--scheme md5] [--client-secret s] [--server-secret s] [--failure none]
 *     stdout: "ready" once the port is open, then one JSON line per session report
 *     exits when stdin ends
 *
 * The session starts when the gateway disconnects after the notification (or 500 ms after the Put,
 * if no Disconnect comes), so the two OBEX connections do not cross on the line.
 */
import { pathToFileURL } from "node:url";
import { serialLinkFactory, type ByteLink } from "../../src/core/byte-link.js";
import { SILENT_LOGGER, type Logger } from "../../src/core/log.js";
import type { AuthScheme } from "../../src/dm/auth.js";
import {
  DEVICE_FAILURES,
  SimulatedDevice,
  type DeviceFailure,
  type DeviceMessage,
  type DeviceSessionReport,
} from "../../src/sim/dm-device.js";
import { ObexClient, ObexLine, ObexServer } from "./line.js";
import { NOTIFICATION_TYPE, ObexFramer, ResponseCode, headersFromHttp } from "./obex.js";

export interface SerialDeviceSimulatorOptions {
  readonly device: SimulatedDevice;
  /** Our OBEX max packet length; default 4096. */
  readonly maxPacketLength?: number;
  /** OBEX response timeout of the device's requests; default 10 000 ms. */
  readonly responseTimeoutMs?: number;
  /** Called with each session's report. */
  readonly onReport?: (report: DeviceSessionReport) => void;
  readonly log?: Logger;
}

const MAX_ANSWER = 1 << 20;

export class SerialDeviceSimulator {
  readonly device: SimulatedDevice;
  readonly reports: DeviceSessionReport[] = [];
  /** Package #0s received (any, accepted or not). */
  readonly notifications: Uint8Array[] = [];
  readonly #o: SerialDeviceSimulatorOptions;
  readonly #line: ObexLine;
  #pending: Uint8Array | undefined;
  #startTimer: NodeJS.Timeout | undefined;
  #session: Promise<void> | undefined;
  #closed = false;

  constructor(link: ByteLink, options: SerialDeviceSimulatorOptions) {
    this.device = options.device;
    this.#o = options;
    const max = options.maxPacketLength ?? 4096;
    const log = options.log ?? SILENT_LOGGER;
    const server = new ObexServer({
      line: () => this.#line,
      maxPacketLength: max,
      maxObjectLength: 64 * 1024,
      log,
      onPut: (object) => {
        if (object.type !== NOTIFICATION_TYPE) return ResponseCode.UnsupportedMediaType;
        this.notifications.push(object.body);
        this.#pending = object.body;
        clearTimeout(this.#startTimer);
        this.#startTimer = setTimeout(() => {
          this.#startSession();
        }, 500);
        return ResponseCode.Success;
      },
      onGet: () => ({ code: ResponseCode.NotFound }),
      onDisconnect: () => {
        this.#startSession();
      },
    });
    this.#line = new ObexLine(link, new ObexFramer(max), {
      maxPacketLength: max,
      log,
      onRequest: (p) => server.handle(p),
      onClosed: () => {
        clearTimeout(this.#startTimer);
      },
    });
  }

  /** Resolves when the session in progress (if any) has ended. */
  async idle(): Promise<void> {
    await this.#session;
  }

  #startSession(): void {
    clearTimeout(this.#startTimer);
    this.#startTimer = undefined;
    if (this.#pending === undefined || this.#closed) return;
    // A Pkg#0 that crosses the end of the previous session (its closing Disconnect) waits in
    // #pending and starts once that session is over, as a real device queues a notification.
    if (this.#session !== undefined) return;
    const pkg0 = this.#pending;
    this.#pending = undefined;
    this.#session = this.#run(pkg0).finally(() => {
      this.#session = undefined;
      this.#startSession();
    });
  }

  async #run(pkg0: Uint8Array): Promise<void> {
    const client = new ObexClient(this.#line, {
      maxPacketLength: this.#o.maxPacketLength ?? 4096,
      timeoutMs: this.#o.responseTimeoutMs ?? 10_000,
    });
    const send = async (message: DeviceMessage): Promise<DeviceMessage | undefined> => {
      if (!client.connected) await client.connect();
      await client.put(message.contentType, message.body, message.headers);
      const answer = await client.get(MAX_ANSWER);
      if (answer.code !== ResponseCode.Success) {
        throw new Error(`the gateway answered OBEX 0x${answer.code.toString(16)}`);
      }
      const object = answer.object;
      if (object === undefined || object.body.length === 0) return undefined;
      const headers = headersFromHttp(object.headers);
      return { body: object.body, contentType: object.type ?? "", headers };
    };
    try {
      const report = await this.device.onPackage0(pkg0, send);
      if (report !== undefined) {
        this.reports.push(report);
        this.#o.onReport?.(report);
      }
    } catch (e) {
      this.#o.log?.warn(`sim: session failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      if (client.connected && !this.#closed) await client.disconnect().catch(() => undefined);
    }
  }

  /** Closes the line (and the link); the device (its tree) stays open: `device.close()`. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#startTimer);
    this.#startTimer = undefined;
    await this.#line.close();
    await this.#session?.catch(() => undefined);
  }
}

/** Opens `path` (a tty or tcp://host:port) and runs a simulator on it. */
export async function openSerialDeviceSimulator(
  path: string,
  options: SerialDeviceSimulatorOptions,
): Promise<SerialDeviceSimulator> {
  const link = await serialLinkFactory({ path })();
  return new SerialDeviceSimulator(link, options);
}

async function main(argv: readonly string[]): Promise<void> {
  const [path, deviceId] = argv;
  if (path === undefined || deviceId === undefined) {
    process.stderr.write(
      "usage: sim.ts <tty|tcp://host:port> <deviceId> [--server-id id] [--scheme md5|basic|hmac|none] " +
        "[--client-secret s] [--server-secret s] [--failure none|silent|garbage|drop-mid-session|wrong-credentials]\n",
    );
    process.exitCode = 2;
    return;
  }
  const flag = (name: string, fallback: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? (argv[i + 1] ?? fallback) : fallback;
  };
  const failure = flag("failure", "none") as DeviceFailure;
  if (!DEVICE_FAILURES.includes(failure)) throw new Error(`unknown failure ${failure}`);
  const serverId = flag("server-id", "gw");
  const scheme = flag("scheme", "md5") as AuthScheme | "none";
  const device = new SimulatedDevice({
    deviceId,
    serverId,
    clientAuth: { scheme, name: deviceId, secret: flag("client-secret", "client-secret") },
    serverAuth: { scheme, name: serverId, secret: flag("server-secret", "server-secret") },
    failure,
  });
  const sim = await openSerialDeviceSimulator(path, {
    device,
    onReport: (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
    },
  });
  process.stdout.write("ready\n");
  process.stdin.resume();
  await new Promise<void>((resolve) => {
    process.stdin.once("end", resolve);
    process.stdin.once("close", resolve);
  });
  await sim.close();
  device.close();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
