/**
 * A simulated end device that runs an OMA DM 1.2 client (proxy mode, design.md section 3): the
 * transport-independent core every binding's device simulator (`drivers/<kind>/sim.ts`) builds on.
 * It is the real client-side session code (`ClientSession`) on its own small tree, with a
 * configurable latency and failure mix, so the gateway's southbound side is tested against the
 * protocol and not against a mock.
 *
 *   Pkg#0 from the gateway -> acceptPackage0 (digest with the device's SRVCRED) -> runSession(send)
 *   runSession: Package 1 -> send(message) -> answer -> ClientSession.receive -> ... until done
 *
 * The tree: the standard DevInfo/DevDetail, `./Vendor/Setting1..N` (int, Get/Replace for the
 * gateway's ServerID), `./Vendor/Blob` (chr, for large objects) and `./Vendor/Reboot` (Exec, 200). The nonces live in memory.
 *
 * Failure mix (what a flaky field device does):
 * - `silent`: ignores every Pkg#0 (the gateway must time out: 504);
 * - `garbage`: sends a good Package 1, then answers the gateway's commands with bytes that are no
 *   SyncML (502);
 * - `drop-mid-session`: sends Package 1, then never answers the gateway's commands (504);
 * - `wrong-credentials`: presents a wrong client secret (401).
 *
 * `send` is the binding: HTTP POST, MQTT publish + wait for the answer, OBEX Put + Get. It resolves
 * with the gateway's answer, or undefined when there is none (the session ended on its side).
 */
import { createHash, randomBytes as cryptoRandomBytes } from "node:crypto";
import type { AuthConfig, Nonces } from "../dm/client-session.js";
import { ClientSession } from "../dm/client-session.js";
import { parsePackage0, sessionIdText, verifyPackage0 } from "../dm/package0.js";
import { standardMoPlugins, type GatewayIdentity } from "../mo/standard.js";
import type { Encoding } from "../syncml/index.js";
import type { MoPlugin } from "../tree/plugin.js";
import { Store } from "../tree/store.js";
import { DmTree } from "../tree/tree.js";

export type DeviceFailure = "none" | "silent" | "garbage" | "drop-mid-session" | "wrong-credentials";

export const DEVICE_FAILURES: readonly DeviceFailure[] = [
  "none",
  "silent",
  "garbage",
  "drop-mid-session",
  "wrong-credentials",
];

/** A DM message between the device and the gateway (the binding adds its framing). */
export interface DeviceMessage {
  /** Where the device sends it: the gateway's endpoint, then the RespURI it was given (HTTP). */
  readonly url?: string;
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** The binding: sends one device message and resolves with the gateway's answer (undefined: none). */
export type SendToGateway = (message: DeviceMessage) => Promise<DeviceMessage | undefined>;

export interface SimulatedDeviceOptions {
  /** The device's DevId (SyncHdr Source LocURI). */
  readonly deviceId: string;
  /** The gateway's ServerID toward this device. */
  readonly serverId: string;
  /** Where Package 1 goes (HTTP: the gateway's southbound endpoint); default "gateway". */
  readonly serverUri?: string;
  /** What the device presents (its CLCRED). */
  readonly clientAuth: AuthConfig;
  /** What the gateway must present (the device's SRVCRED; also keys the Pkg#0 digest). */
  readonly serverAuth: AuthConfig;
  /** Starting nonces; default 4 zero bytes each. */
  readonly nonces?: Nonces;
  /** Default wbxml. */
  readonly encoding?: Encoding;
  /** The device's MaxMsgSize; default 8192 (small devices). */
  readonly maxMsgSize?: number;
  /** Delay before each message the device sends, ms; default 0. */
  readonly latencyMs?: number;
  /** Extra delay of a reply that answers an Exec, ms (the "Exec that takes time"); default 0. */
  readonly execDelayMs?: number;
  readonly failure?: DeviceFailure;
  /** Settable leaves `./Vendor/Setting1..N`; default 3. */
  readonly settings?: number;
  /** DevInfo values; defaults derived from the device id. */
  readonly identity?: Partial<GatewayIdentity>;
  /** More MOs on the device's tree, beside the standard ones and `./Vendor` (a product's own objects). */
  readonly plugins?: readonly MoPlugin[];
  readonly randomBytes?: (size: number) => Uint8Array;
}

/** What one session did, from the device's side. */
export interface DeviceSessionReport {
  readonly ok: boolean;
  readonly reason?: string;
  readonly sessionId: string;
  readonly messages: number;
  /** Exec requests the device ran (paths), in order. */
  readonly execs: readonly string[];
}

export type Package0Check =
  { readonly ok: true; readonly sessionId: string } | { readonly ok: false; readonly reason: string };

/** Most messages a device sends in one session before it gives up. */
const MAX_MESSAGES = 200;
const ZERO_NONCE = new Uint8Array(4);

export class SimulatedDevice {
  readonly deviceId: string;
  readonly tree: DmTree;
  readonly #o: SimulatedDeviceOptions;
  readonly #random: (size: number) => Uint8Array;
  #nonces: Nonces;
  readonly #execs: string[] = [];
  #sessions = 0;

  constructor(options: SimulatedDeviceOptions) {
    this.deviceId = options.deviceId;
    this.#o = options;
    this.#random = options.randomBytes ?? ((n) => new Uint8Array(cryptoRandomBytes(n)));
    this.#nonces = options.nonces ?? { client: ZERO_NONCE, server: ZERO_NONCE };
    this.tree = new DmTree(Store.open(":memory:"), {
      plugins: [
        ...standardMoPlugins(deviceIdentity(options.deviceId, options.identity), []),
        vendorPlugin(options.serverId, options.settings ?? 3, this.#execs),
        ...(options.plugins ?? []),
      ],
    });
    this.tree.seed();
  }

  get failure(): DeviceFailure {
    return this.#o.failure ?? "none";
  }

  /** Sessions run so far (any outcome). */
  get sessions(): number {
    return this.#sessions;
  }

  /** The nonces the device holds now. */
  get nonces(): Nonces {
    return this.#nonces;
  }

  /** Checks a Pkg#0: parsed, for this device's server, digest right (stored or fallback nonce). */
  acceptPackage0(bytes: Uint8Array): Package0Check {
    const parsed = parsePackage0(bytes);
    if (!parsed.ok) return { ok: false, reason: `Pkg#0 does not parse (${parsed.error.code})` };
    const auth = this.#o.serverAuth;
    const verified = verifyPackage0(parsed, {
      names: [this.#o.serverId, ...(auth.scheme === "none" ? [] : [auth.name])],
      password: auth.scheme === "none" ? "" : auth.secret,
      nonce: this.#nonces.server,
    });
    if (!verified.ok) return { ok: false, reason: "Pkg#0 digest mismatch" };
    return { ok: true, sessionId: sessionIdText(parsed.notification.sessionId) };
  }

  /**
   * Reacts to a Pkg#0 as the failure mix says: a session over `send`, or nothing. Resolves with the
   * session's report, or undefined when the device ignored the notification.
   */
  async onPackage0(bytes: Uint8Array, send: SendToGateway): Promise<DeviceSessionReport | undefined> {
    const check = this.acceptPackage0(bytes);
    if (!check.ok || this.failure === "silent") return undefined;
    return this.runSession({ kind: "server", sessionId: check.sessionId }, send);
  }

  /** Runs one session (server-initiated with the Pkg#0's SessionID, or client-initiated). */
  async runSession(
    trigger: { readonly kind: "server"; readonly sessionId: string } | { readonly kind: "client" },
    send: SendToGateway,
  ): Promise<DeviceSessionReport> {
    this.#sessions++;
    const sessionId =
      trigger.kind === "server" ? trigger.sessionId : sessionIdText((this.#sessions % 0xfffe) + 1);
    const wrong = this.failure === "wrong-credentials";
    const client: AuthConfig =
      wrong && this.#o.clientAuth.scheme !== "none"
        ? { ...this.#o.clientAuth, secret: `${this.#o.clientAuth.secret}-wrong` }
        : this.#o.clientAuth;
    const session = new ClientSession({
      tree: this.tree,
      account: {
        serverId: this.#o.serverId,
        serverUri: this.#o.serverUri ?? "gateway",
        client,
        server: this.#o.serverAuth,
      },
      nonces: this.#nonces,
      devId: this.deviceId,
      initiator: trigger.kind,
      sessionId,
      encoding: this.#o.encoding ?? "wbxml",
      maxMsgSize: this.#o.maxMsgSize ?? 8192,
      randomBytes: (n) => this.#random(n),
    });
    const execsBefore = this.#execs.length;
    let messages = 0;
    let step = session.start();
    const report = (ok: boolean, reason?: string): DeviceSessionReport => ({
      ok,
      ...(reason !== undefined && { reason }),
      sessionId,
      messages,
      execs: this.#execs.slice(execsBefore),
    });
    for (;;) {
      if (messages >= MAX_MESSAGES) return report(false, "too many messages");
      if (this.failure === "drop-mid-session" && messages === 1) {
        return report(false, "dropped mid-session");
      }
      if (this.failure === "garbage" && messages === 1) {
        await this.#delay(this.#o.latencyMs);
        messages++;
        await send({
          url: step.url,
          body: createHash("sha256").update(step.body).digest(),
          contentType: step.contentType,
          headers: {},
        }).catch(() => undefined);
        return report(false, "sent garbage");
      }
      const answersExec = this.#execs.length > execsBefore && messages > 0;
      await this.#delay((this.#o.latencyMs ?? 0) + (answersExec ? (this.#o.execDelayMs ?? 0) : 0));
      messages++;
      let answer: DeviceMessage | undefined;
      try {
        answer = await send({
          url: step.url,
          body: step.body,
          contentType: step.contentType,
          headers: step.headers,
        });
      } catch (e) {
        return report(false, `send failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (step.last === true) break;
      if (answer === undefined) return report(false, "the gateway sent no answer");
      const next = session.receive(answer.body, answer.contentType, answer.headers);
      if (next.kind === "done") break;
      step = next;
    }
    const outcome = session.outcome;
    if (outcome === undefined) return report(false, "no outcome");
    if (outcome.serverAuthenticated) this.#nonces = outcome.nonces;
    return report(outcome.ok, outcome.reason);
  }

  /** Releases the tree's in-memory database. */
  close(): void {
    this.tree.store.close();
  }

  async #delay(ms: number | undefined): Promise<void> {
    if (ms !== undefined && ms > 0) await new Promise((r) => setTimeout(r, ms));
  }
}

function deviceIdentity(deviceId: string, over: Partial<GatewayIdentity> = {}): GatewayIdentity {
  return {
    devId: deviceId,
    man: "SimCo",
    mod: "SIM-DEV",
    dmV: "1.2",
    lang: "en-US",
    oem: "SimCo",
    fwV: "1.0.0",
    swV: "1.0.0",
    hwV: "A",
    uriLimits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 },
    ...over,
  };
}

/** `./Vendor`: settable leaves and an Exec the gateway's ServerID may use. */
function vendorPlugin(serverId: string, settings: number, execs: string[]): MoPlugin {
  return {
    id: "sim-vendor",
    root: "./Vendor",
    seed: () => [
      { path: "./Vendor", format: "node", acl: `Get=${serverId}&Replace=${serverId}&Add=${serverId}` },
      ...Array.from({ length: settings }, (_, i) => ({
        path: `./Vendor/Setting${i + 1}`,
        format: "int" as const,
        value: "0",
      })),
      { path: "./Vendor/Reboot", format: "null" as const, acl: `Exec=${serverId}&Get=${serverId}` },
      // A leaf for large objects (firmware-sized settings, logs): chunked both ways.
      { path: "./Vendor/Blob", format: "chr" as const, value: "" },
    ],
    exec: (request) => {
      execs.push(request.path);
      return { status: 200 };
    },
  };
}
