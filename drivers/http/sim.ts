/**
 * Simulated DM-client devices on the HTTP binding: each listens for its Package #0 (WSP Push) on a
 * UDP port of its own and answers it with a session POSTed to the gateway's southbound endpoint,
 * following the RespURI it is given. One process runs thousands of them (one UDP socket each, one
 * keep-alive HTTP agent for the fleet).
 *
 *   gateway --UDP WSP Push--> device socket -> SimulatedDevice.onPackage0 -> POST Package 1 -> ...
 */
import dgram from "node:dgram";
import http from "node:http";
import { decodeWspPush, isDmNotificationPush } from "../../src/syncml/wsp-push.js";
import {
  SimulatedDevice,
  type DeviceMessage,
  type DeviceSessionReport,
  type SimulatedDeviceOptions,
} from "../../src/sim/dm-device.js";
import type { DeviceAddress } from "../driver.js";

export interface HttpDeviceFleetOptions {
  /** The gateway's southbound endpoint (Package 1 goes here). */
  readonly gatewayUrl: string;
  readonly devices: readonly Omit<SimulatedDeviceOptions, "serverUri">[];
  /** Where the devices' UDP sockets bind; default 127.0.0.1. */
  readonly host?: string;
  /** Deadline of each POST, ms; default 10 000. */
  readonly requestTimeoutMs?: number;
}

interface Member {
  readonly device: SimulatedDevice;
  readonly socket: dgram.Socket;
  port: number;
  readonly reports: DeviceSessionReport[];
  running: Promise<void> | undefined;
}

export class HttpDeviceFleet {
  readonly #o: HttpDeviceFleetOptions;
  readonly #members = new Map<string, Member>();
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  #ignored = 0;

  constructor(options: HttpDeviceFleetOptions) {
    this.#o = options;
  }

  /** Binds every device's UDP socket. */
  async start(): Promise<void> {
    const host = this.#o.host ?? "127.0.0.1";
    await Promise.all(
      this.#o.devices.map(async (options) => {
        const device = new SimulatedDevice({ ...options, serverUri: this.#o.gatewayUrl });
        const socket = dgram.createSocket("udp4");
        const member: Member = { device, socket, port: 0, reports: [], running: undefined };
        this.#members.set(device.deviceId, member);
        socket.on("message", (datagram) => {
          this.#onPush(member, new Uint8Array(datagram));
        });
        await new Promise<void>((resolve, reject) => {
          socket.once("error", reject);
          socket.bind(0, host, () => {
            socket.off("error", reject);
            resolve();
          });
        });
        member.port = socket.address().port;
      }),
    );
  }

  /** Where the gateway notifies `deviceId` (its inventory address). */
  address(deviceId: string): DeviceAddress {
    const m = this.#member(deviceId);
    return { transport: "http", address: `udp://${this.#o.host ?? "127.0.0.1"}:${m.port}` };
  }

  device(deviceId: string): SimulatedDevice {
    return this.#member(deviceId).device;
  }

  /** The sessions `deviceId` ran, oldest first. */
  reports(deviceId: string): readonly DeviceSessionReport[] {
    return this.#member(deviceId).reports;
  }

  /** Pushes that were not a valid DM notification for the device. */
  get ignored(): number {
    return this.#ignored;
  }

  /** Resolves when no device is in a session. */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#members.values()].flatMap((m) =>
        m.running === undefined ? [] : [m.running],
      );
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /** Closes every socket; sessions in flight fail. Idempotent. */
  async stop(): Promise<void> {
    this.#agent.destroy();
    const members = [...this.#members.values()];
    this.#members.clear();
    await Promise.all(
      members.map(
        (m) =>
          new Promise<void>((resolve) => {
            try {
              m.socket.close(() => {
                resolve();
              });
            } catch {
              resolve(); // already closed
            }
          }),
      ),
    );
    await Promise.all(members.flatMap((m) => (m.running === undefined ? [] : [m.running])));
    for (const m of members) m.device.close();
  }

  #member(deviceId: string): Member {
    const m = this.#members.get(deviceId);
    if (m === undefined) throw new Error(`no simulated device ${deviceId}`);
    return m;
  }

  #onPush(member: Member, datagram: Uint8Array): void {
    const push = decodeWspPush(datagram);
    if (!push.ok || !isDmNotificationPush(push.value) || member.running !== undefined) {
      this.#ignored++;
      return;
    }
    member.running = member.device
      .onPackage0(push.value.body, (message) => this.#post(message))
      .then(
        (report) => {
          if (report !== undefined) member.reports.push(report);
        },
        (e: unknown) => {
          member.reports.push({
            ok: false,
            reason: e instanceof Error ? e.message : String(e),
            sessionId: "",
            messages: 0,
            execs: [],
          });
        },
      )
      .finally(() => {
        member.running = undefined;
      });
  }

  /** POSTs one message; resolves with the 200 answer, undefined for anything else. */
  #post(message: DeviceMessage): Promise<DeviceMessage | undefined> {
    const url = new URL(message.url ?? this.#o.gatewayUrl);
    return new Promise((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: "POST",
          agent: this.#agent,
          timeout: this.#o.requestTimeoutMs ?? 10_000,
          headers: {
            ...message.headers,
            "content-type": message.contentType,
            "content-length": String(message.body.length),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            if (res.statusCode !== 200) {
              resolve(undefined);
              return;
            }
            const hmac = res.headers["x-syncml-hmac"];
            resolve({
              body: new Uint8Array(Buffer.concat(chunks)),
              contentType: res.headers["content-type"] ?? "",
              headers: typeof hmac === "string" ? { "x-syncml-hmac": hmac } : {},
            });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("the gateway did not answer in time")));
      req.on("error", reject);
      req.end(message.body);
    });
  }
}
