/**
 * The composition root (design.md 2, 6): builds the gateway's parts from a validated configuration,
 * starts them in order and stops them in reverse.
 *
 *   start: board ─► store ─► tree (standard MOs, GwMO, ./DMGW) ─► outbox ─► southbound + drivers
 *          ─► inventory mirror ─► fan-out engine (resume) ─► northbound (+ UDP push, SMS)
 *          ─► health ─► control socket ─► metrics ─► watchdog ─► READY
 *   stop:  STOPPING ─► the same steps backwards; each step in its own try/catch
 *
 * Decisions:
 * - Every step that started registers how to undo it; a failing step undoes what came before and
 *   the error (Runtime_StartFailed) names the step, with the step's error as `cause`.
 * - Stop never throws: it returns the steps that failed (z2m `Controller.stop`), so the exit
 *   status can say so, and one failure does not keep the store from closing.
 * - Drivers are loaded only when configured (drivers/registry.ts imports them on first use).
 * - Alerts go to the outbox inside the caller's transaction; the northbound hears of them on the
 *   next turn of the event loop (setImmediate), after that transaction committed, so a session
 *   never races the commit of the alert it should carry.
 * - The fan-out engine resumes the journal's jobs before any northbound session runs, so a server
 *   never sees a job of the previous run as idle that is about to continue.
 * - In-process use (the demo, tests) leaves no handle behind after `stop()`: every listener,
 *   timer and socket belongs to a step and is closed by it.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { release } from "node:os";
import { dirname } from "node:path";
import { resolveBoardProfile, type BoardProfile } from "../../board/profile.js";
import type { AdaptationDriver, DriverState, ProxyDriver, TransportKind } from "../../drivers/driver.js";
import { createAdaptationDriver, createProxyDriver } from "../../drivers/registry.js";
import type { GatewayConfig } from "../config/schema.js";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import { FanoutEngine } from "../fanout/engine.js";
import { dmAccountPath, type DmAccountConfig, type DmAuthType } from "../mo/dmacc.js";
import { dmgwMoPlugin } from "../mo/dmgw.js";
import { mirrorInventory } from "../mo/gwmo-inventory.js";
import { gwmoPlugins } from "../mo/gwmo.js";
import { standardMoPlugins, type GatewayIdentity } from "../mo/standard.js";
import { HttpTransport, type TlsOptions } from "../northbound/http-transport.js";
import { NotificationGate, notificationAccountsFromTree } from "../northbound/notification.js";
import { AlertOutbox, type NewAlert } from "../northbound/outbox.js";
import { ServerLimitsStore } from "../northbound/server-limits.js";
import { NorthboundService, type NorthboundServer } from "../northbound/service.js";
import { UdpPushListener } from "../northbound/udp-push-listener.js";
import { Southbound } from "../southbound/southbound.js";
import { Store } from "../tree/store.js";
import { DmTree } from "../tree/tree.js";
import { startControlServer } from "./control-server.js";
import { HealthMonitor } from "./health.js";
import { startMetricsServer } from "./metrics.js";
import type { GatewayParts } from "./parts.js";
import { createNotifier, startWatchdog, type Notifier } from "./sd-notify.js";

export interface StartGatewayOptions {
  /** Environment for sd_notify and the watchdog (NOTIFY_SOCKET, WATCHDOG_USEC). Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** The process logger; default silent. */
  readonly log?: Logger;
  /** Default: `createNotifier(env)` (a no-op without NOTIFY_SOCKET). */
  readonly notifier?: Notifier;
  /** The model file `board: auto` reads; default /proc/device-tree/model. */
  readonly modelPath?: string;
}

/** Where the gateway listens (the ports read back, for port 0); absent: not configured. */
export interface GatewayEndpoints {
  readonly http?: number | undefined;
  readonly coap?: number | undefined;
  readonly udpPush?: number | undefined;
  readonly metrics?: number | undefined;
  readonly control?: string | undefined;
}

export interface StepFailure {
  readonly step: string;
  /** The error's message (never a secret: no part puts one in an error). */
  readonly error: string;
}

export interface StopReport {
  /** True when every step stopped cleanly. */
  readonly ok: boolean;
  readonly failed: readonly StepFailure[];
}

export interface RunningGateway {
  readonly parts: GatewayParts;
  readonly endpoints: GatewayEndpoints;
  readonly board: BoardProfile;
  /** Stops everything in reverse order; never throws; idempotent (later calls get the same report). */
  stop(): Promise<StopReport>;
}

const AUTH_TYPE = { basic: "BASIC", md5: "DIGEST", hmac: "HMAC" } as const satisfies Record<
  string,
  DmAuthType
>;

interface Undo {
  readonly step: string;
  readonly run: () => unknown;
}

/**
 * Starts a gateway on `config`. Resolves once every step is up and READY was sent.
 *
 * @throws GatewayError(Runtime_StartFailed) naming the failed step (`context.step`), with the step's
 *   error as `cause` (Config_BoardProfile, Store_*, Driver_StartFailed, Control_*, Metrics_*, ...);
 *   what had started is stopped again before it throws.
 */
export async function startGateway(
  config: GatewayConfig,
  options: StartGatewayOptions = {},
): Promise<RunningGateway> {
  const startedAtMs = Date.now();
  const env = options.env ?? process.env;
  const log = options.log ?? SILENT_LOGGER;
  const rlog = log.child("runtime");
  const notifier = options.notifier ?? createNotifier(env, { log: rlog });
  const undo: Undo[] = [];
  const late: {
    parts?: GatewayParts;
    engine?: FanoutEngine;
    south?: Southbound;
    north?: NorthboundService | undefined;
  } = {};
  const endpoints: { -readonly [K in keyof GatewayEndpoints]: GatewayEndpoints[K] } = {};

  const stopAll = async (): Promise<StopReport> => {
    const failed: StepFailure[] = [];
    for (const u of undo.splice(0).reverse()) {
      try {
        await u.run();
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        failed.push({ step: u.step, error });
        rlog.error(`stopping ${u.step} failed: ${error}`, { step: u.step });
      }
    }
    return { ok: failed.length === 0, failed };
  };

  let current = "board";
  const step = async <T>(name: string, run: () => T | Promise<T>): Promise<T> => {
    current = name;
    rlog.debug(() => `starting ${name}`);
    return run();
  };

  try {
    const board = await step("board", () =>
      resolveBoardProfile(config.board, {
        ...(options.modelPath !== undefined && { modelPath: options.modelPath }),
      }),
    );
    rlog.info("starting", { board: board.name, state: config.paths.state, servers: config.servers.length });
    if (config.northbound.sms.enabled && board.modem === undefined) {
      throw new GatewayError(
        `northbound.sms is enabled but the board profile ${board.name} has no modem`,
        ErrorCode.Config_BoardProfile,
        { context: { board: board.name } },
      );
    }

    const store = await step("store", () => {
      mkdirSync(config.paths.state, { recursive: true, mode: 0o750 });
      const s = Store.open(config.paths.db);
      undo.push({
        step: "store",
        run: () => {
          s.close();
        },
      });
      return s;
    });

    const serverIds = config.servers.map((s) => s.serverId);
    const tree = await step("tree", () => {
      const t = new DmTree(store, {
        uriLimits: config.identity.uriLimits,
        plugins: [
          ...standardMoPlugins(identityOf(config, board), config.servers.map(accountOf)),
          ...gwmoPlugins({
            serverIds,
            deviceExists: (id) => late.south?.registry.get(id) !== undefined,
            control: () => late.engine,
          }),
          dmgwMoPlugin(() => late.parts),
        ],
      });
      t.seed();
      return t;
    });

    const outbox = await step(
      "outbox",
      () =>
        new AlertOutbox(store, {
          maxCount: config.northbound.outbox.maxCount,
          maxBytes: config.northbound.outbox.maxBytes,
        }),
    );
    const immediates = new Set<NodeJS.Immediate>();
    undo.push({
      step: "alerts",
      run: () => {
        for (const h of immediates) clearImmediate(h);
        immediates.clear();
      },
    });
    const alerts = {
      enqueue: (alert: NewAlert): unknown => {
        const result = outbox.enqueue(alert);
        const h = setImmediate(() => {
          immediates.delete(h);
          late.north?.alertsQueued(alert.serverId);
        });
        immediates.add(h);
        return result;
      },
    };

    const south = await step("southbound", () => {
      const sb = config.southbound;
      const s = new Southbound({
        store,
        outbox: alerts,
        alertServers: () => serverIds,
        ...(sb.enrolment !== undefined && {
          enrolment: {
            secret: sb.enrolment.secret,
            scheme: sb.enrolment.scheme,
            serverId: sb.gatewayServerId,
          },
        }),
        proxy: {
          serverUri: sb.gatewayServerId,
          ...(sb.maxMsgSize !== undefined && { maxMsgSize: sb.maxMsgSize }),
          ...(sb.maxObjSize !== undefined && { maxObjSize: sb.maxObjSize }),
          ...(sb.sessionIdleMs !== undefined && { idleMs: sb.sessionIdleMs }),
        },
        log: log.child("southbound"),
        onDriverState: (kind: TransportKind, state: DriverState) => {
          rlog.info(`the ${kind} driver is ${state}`, { transport: kind, state });
        },
      });
      late.south = s;
      return s;
    });
    const driversAbort = new AbortController();
    undo.push({
      step: "southbound",
      run: async () => {
        driversAbort.abort();
        await south.stop();
      },
    });
    const drivers = config.southbound.drivers;
    const proxyKinds = (["http", "mqtt", "serial", "ble"] as const).filter((k) => drivers[k] !== undefined);
    for (const kind of proxyKinds) {
      const driver = await step(`driver:${kind}`, async () => {
        const ctx = south.driverContext(kind, driversAbort.signal);
        let d: ProxyDriver;
        switch (kind) {
          case "http":
            d = await createProxyDriver("http", drivers.http ?? {}, ctx);
            break;
          case "mqtt":
            d = await createProxyDriver("mqtt", { ...(drivers.mqtt ?? { url: "" }) }, ctx);
            break;
          case "serial": {
            const section = drivers.serial ?? {};
            const ports = section.ports ?? board.serialPorts.map((p) => ({ path: p.path }));
            d = await createProxyDriver("serial", { ...section, ports }, ctx);
            break;
          }
          case "ble": {
            const section = drivers.ble ?? {};
            const adapter = section.adapter ?? board.ble?.adapter;
            d = await createProxyDriver(
              "ble",
              { ...section, ...(adapter !== undefined && { adapter }) },
              ctx,
              south.adaptationContext("ble", driversAbort.signal),
            );
            break;
          }
        }
        south.addDriver(d);
        // The BLE driver also runs the commands of GATT-only (adaptation) devices.
        if (isAdaptationDriver(d)) south.addAdaptationDriver(d);
        await d.start();
        return d;
      });
      if (kind === "http") endpoints.http = portOf(driver);
    }
    if (drivers.coap !== undefined) {
      const coap = await step("driver:coap", async () => {
        const d = await createAdaptationDriver(
          "coap",
          { ...drivers.coap },
          south.adaptationContext("coap", driversAbort.signal),
        );
        south.addAdaptationDriver(d);
        await d.start();
        return d;
      });
      endpoints.coap = portOf(coap);
    }

    await step("inventory", () => {
      const stopMirror = mirrorInventory(tree, south.registry);
      undo.push({ step: "inventory", run: stopMirror });
    });

    const engine = await step("fanout", () => {
      const limits = new ServerLimitsStore(store);
      const e = new FanoutEngine({
        tree,
        outbox: alerts,
        devices: (id) => south.endDevice(id),
        transportLimit: (t) => south.drivers.find((d) => d.kind === t)?.concurrency ?? 1,
        flushMs: config.fanout.flushMs,
        retryBackoff: config.fanout.retryBackoff,
        maxInlineResultBytes: (id) => limits.inlineResultBound(id),
        log: log.child("fanout"),
      });
      late.engine = e;
      undo.push({ step: "fanout", run: () => e.stop() });
      // The journal's jobs continue before any server session (see the file comment).
      e.resume();
      return e;
    });

    const northbound = await step("northbound", () => startNorthbound(config, tree, outbox, log, undo));
    late.north = northbound?.service;

    if (northbound !== undefined && config.northbound.udpPush !== false) {
      const udp = config.northbound.udpPush;
      const service = northbound.service;
      endpoints.udpPush = await step("udp-push", async () => {
        const listener = new UdpPushListener({
          gate: northbound.gate,
          host: udp.host,
          port: udp.port,
          onTrigger: (t, from) => {
            service.notified(t, `udp:${from.address}`);
          },
          onDrop: (d, from) => {
            service.notificationDropped(d.reason, d.detail, `udp:${from.address}`);
          },
          onCallbackError: (e) => {
            rlog.error("the UDP push listener failed", { error: e instanceof Error ? e.message : String(e) });
          },
        });
        undo.push({ step: "udp-push", run: () => listener.stop() });
        return (await listener.start()).port;
      });
    }

    const modemPort = board.modem;
    if (northbound !== undefined && config.northbound.sms.enabled && modemPort !== undefined) {
      const service = northbound.service;
      await step("sms", async () => {
        // Loaded only here: a gateway without SMS never loads serialport for the modem.
        const { Modem } = await import("../../board/modem/modem.js");
        const mlog = log.child("board:modem");
        const modem = new Modem({
          path: modemPort.path,
          ...(modemPort.baudRate !== undefined && { baudRate: modemPort.baudRate }),
          onPush: (push) => {
            service.acceptPush(push.data, `sms:${push.originator}`);
          },
          log: {
            error: (m) => {
              mlog.error(m);
            },
            warn: (m) => {
              mlog.warn(m);
            },
            info: (m) => {
              mlog.info(m);
            },
            debug: (m) => {
              mlog.debug(m);
            },
          },
        });
        undo.push({ step: "sms", run: () => modem.stop() });
        await modem.start();
      });
    }

    const health = await step("health", () => {
      const h = new HealthMonitor({ store });
      h.start();
      undo.push({
        step: "health",
        run: () => {
          h.stop();
        },
      });
      return h;
    });

    const parts: GatewayParts = {
      store,
      tree,
      outbox,
      south,
      engine,
      northbound: northbound?.service,
      log,
      startedAtMs,
      health: () => health.check(),
      board: board.name,
    };
    late.parts = parts;

    const control = config.control;
    if (control !== false) {
      await step("control", async () => {
        mkdirSync(dirname(control.socket), { recursive: true, mode: 0o750 });
        const server = await startControlServer({ path: control.socket, parts, log: log.child("control") });
        undo.push({ step: "control", run: () => server.close() });
      });
      endpoints.control = control.socket;
    }

    const metrics = config.metrics;
    if (metrics !== false) {
      endpoints.metrics = await step("metrics", async () => {
        const server = await startMetricsServer({ host: metrics.host, port: metrics.port, parts });
        undo.push({ step: "metrics", run: () => server.close() });
        return server.port;
      });
    }

    await step("watchdog", () => {
      const watchdog = startWatchdog(notifier, () => health.check(), env, rlog);
      undo.push({
        step: "watchdog",
        run: () => {
          watchdog.stop();
        },
      });
    });

    const devices = south.registry.list().length;
    const readyMs = Date.now() - startedAtMs;
    rlog.info("ready", { readyMs, devices, board: board.name, ...endpoints });
    await notifier.ready(`ready: ${devices} devices, ${config.servers.length} servers`);

    let stopping: Promise<StopReport> | undefined;
    return {
      parts,
      endpoints,
      board,
      stop: () => {
        stopping ??= (async () => {
          rlog.info("stopping");
          await notifier.stopping();
          const report = await stopAll();
          if (report.ok) rlog.info("stopped");
          else rlog.error("stopped with failures", { failed: report.failed.map((f) => f.step) });
          return report;
        })();
        return stopping;
      },
    };
  } catch (e) {
    const failedStep = current;
    const message = e instanceof Error ? e.message : String(e);
    rlog.error(`start failed at ${failedStep}: ${message}`, { step: failedStep });
    const cleanup = await stopAll();
    throw new GatewayError(`start failed at ${failedStep}: ${message}`, ErrorCode.Runtime_StartFailed, {
      cause: e,
      context: { step: failedStep, cleanupFailures: cleanup.failed },
    });
  }
}

/** The northbound service of the configured servers, and the gate its pushes pass; none without servers. */
function startNorthbound(
  config: GatewayConfig,
  tree: DmTree,
  outbox: AlertOutbox,
  log: Logger,
  undo: Undo[],
): { service: NorthboundService; gate: NotificationGate } | undefined {
  if (config.servers.length === 0) return undefined;
  const transports: HttpTransport[] = [];
  undo.push({
    step: "northbound-transport",
    run: () => {
      for (const t of transports) t.close();
    },
  });
  const servers: NorthboundServer[] = config.servers.map((s) => {
    const transport = new HttpTransport({ tls: tlsOf(s.tls) });
    transports.push(transport);
    return {
      account: {
        accountPath: dmAccountPath(s.account),
        serverId: s.serverId,
        serverUri: s.uri,
        clientScheme: s.clientAuth.scheme,
        serverScheme: s.serverAuth.scheme,
      },
      encoding: s.encoding,
      transport,
      checkInIntervalMs: s.checkInSeconds * 1000,
    };
  });
  // One gate for UDP and SMS: a notification repeated over both runs one session (its replay window).
  const gate = new NotificationGate({ accounts: () => notificationAccountsFromTree(tree) });
  const nb = config.northbound;
  const service = new NorthboundService({
    tree,
    outbox,
    devId: config.identity.devId,
    servers,
    maxMsgSize: nb.maxMsgSize,
    timeoutMs: nb.timeoutMs,
    maxMessages: nb.maxMessages,
    backoff: { initialMs: nb.retry.initialMs, maxMs: nb.retry.maxMs },
    userInteractionNotifications: nb.uiMode,
    gate,
    log: log.child("northbound"),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
  });
  undo.push({ step: "northbound", run: () => service.stop() });
  service.start();
  return { service, gate };
}

function tlsOf(tls: GatewayConfig["servers"][number]["tls"]): TlsOptions {
  if (tls === undefined) return {};
  return {
    ...(tls.ca !== undefined && { ca: readFileSync(tls.ca) }),
    ...(tls.cert !== undefined && { cert: readFileSync(tls.cert) }),
    ...(tls.key !== undefined && { key: readFileSync(tls.key) }),
  };
}

function accountOf(s: GatewayConfig["servers"][number]): DmAccountConfig {
  const cred = (c: GatewayConfig["servers"][number]["clientAuth"]) => ({
    type: AUTH_TYPE[c.scheme],
    name: c.name,
    secret: c.secret,
    ...(c.nonce !== undefined && { nonce: c.nonce }),
  });
  return {
    name: s.account,
    serverId: s.serverId,
    addr: s.uri,
    clientCred: cred(s.clientAuth),
    serverCred: cred(s.serverAuth),
  };
}

function identityOf(config: GatewayConfig, board: BoardProfile): GatewayIdentity {
  const id = config.identity;
  return {
    devId: id.devId,
    man: id.man,
    mod: id.mod ?? board.name,
    dmV: id.dmV,
    lang: id.lang,
    devTyp: id.devTyp,
    oem: id.oem ?? id.man,
    fwV: id.fwV ?? release(),
    swV: id.swV ?? dmgwVersion(),
    hwV: id.hwV ?? board.name,
    uriLimits: { ...id.uriLimits },
  };
}

let version: string | undefined;

/** dmgw's version from its package.json (src/runtime and dist/src/runtime sit at different depths). */
export function dmgwVersion(): string {
  if (version !== undefined) return version;
  for (const rel of ["../../package.json", "../../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === "dmgw" && typeof pkg.version === "string") {
        version = pkg.version;
        return version;
      }
    } catch {
      // Not at this depth: try the next.
    }
  }
  version = "unknown";
  return version;
}

function isAdaptationDriver(d: ProxyDriver): d is ProxyDriver & AdaptationDriver {
  return typeof (d as Partial<AdaptationDriver>).execute === "function";
}

function portOf(d: object): number | undefined {
  const port = (d as { port?: unknown }).port;
  return typeof port === "number" ? port : undefined;
}
