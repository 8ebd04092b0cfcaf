/**
 * A gateway's parts (src/runtime/parts.ts) wired as the composition root wires them, for the control
 * socket, metrics and ./DMGW tests: a file-backed tree with the standard, GwMO and DMGW MOs, the
 * outbox, the southbound (optionally with an HTTP driver and simulated HTTP devices), the fan-out
 * engine, and a northbound service that is built (so `stats()` lists its server) but never started.
 */
import { HttpDriver } from "../../drivers/http/driver.js";
import { HttpDeviceFleet } from "../../drivers/http/sim.js";
import { SILENT_LOGGER, type Logger } from "../../src/core/log.js";
import type { AuthConfig } from "../../src/dm/auth.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
import { dmgwMoPlugin } from "../../src/mo/dmgw.js";
import { mirrorInventory } from "../../src/mo/gwmo-inventory.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import { HttpTransport } from "../../src/northbound/http-transport.js";
import { NorthboundService } from "../../src/northbound/service.js";
import type { GatewayParts, HealthReport } from "../../src/runtime/parts.js";
import type { DeviceFailure } from "../../src/sim/dm-device.js";
import { Southbound } from "../../src/southbound/southbound.js";
import { NB_DEV_ID, NB_SERVER_ID, nbSessionAccount, openNorthboundGateway } from "./northbound.js";

export const GW_SERVER_ID = "dmgw-gw1";
/** A DM server URL nothing listens on: the northbound service is never started. */
const UNUSED_URL = "http://127.0.0.1:9/dm";

export const HEALTHY: HealthReport = { ok: true, eventLoopLagMs: 3, storeWritable: true, problems: [] };

export interface TestGateway {
  readonly parts: GatewayParts;
  /** The simulated HTTP devices, when `httpDevices` was given. */
  readonly fleet: HttpDeviceFleet | undefined;
  stop(): Promise<void>;
}

export interface TestGatewayOptions {
  readonly file: string;
  /** Simulated HTTP devices (an HTTP driver on port 0 is started for them). */
  readonly httpDevices?: readonly { readonly id: string; readonly failure?: DeviceFailure }[];
  /** Without a northbound service (a gateway with no DM server). */
  readonly noNorthbound?: boolean;
  readonly health?: () => HealthReport;
  readonly startedAtMs?: number;
  readonly board?: string;
  readonly log?: Logger;
}

const creds = (id: string): { clientAuth: AuthConfig; serverAuth: AuthConfig } => ({
  clientAuth: { scheme: "hmac", name: id, secret: `dev-${id}` },
  serverAuth: { scheme: "hmac", name: GW_SERVER_ID, secret: `gw-${id}` },
});

export async function openTestGateway(o: TestGatewayOptions): Promise<TestGateway> {
  const late: { engine?: FanoutEngine; south?: Southbound; parts?: GatewayParts } = {};
  const g = openNorthboundGateway(o.file, UNUSED_URL, "hmac", {
    plugins: [
      ...gwmoPlugins({
        serverIds: [NB_SERVER_ID],
        deviceExists: (id) => late.south?.registry.get(id) !== undefined,
        control: () => late.engine,
      }),
      dmgwMoPlugin(() => late.parts),
    ],
  });
  const transport = new HttpTransport();
  const northbound =
    o.noNorthbound === true
      ? undefined
      : new NorthboundService({
          tree: g.tree,
          outbox: g.outbox,
          devId: NB_DEV_ID,
          servers: [
            {
              account: nbSessionAccount(UNUSED_URL, "hmac"),
              encoding: "xml",
              transport,
              checkInIntervalMs: 0,
            },
          ],
          maxMsgSize: 16_384,
          timeoutMs: 5_000,
          maxMessages: 10,
          randomBytes: (n) => new Uint8Array(n),
        });
  const south = new Southbound({ store: g.store, outbox: g.outbox, alertServers: () => [NB_SERVER_ID] });
  late.south = south;
  const stopMirror = mirrorInventory(g.tree, south.registry);
  const driversAbort = new AbortController();
  let fleet: HttpDeviceFleet | undefined;
  if (o.httpDevices !== undefined) {
    const http = new HttpDriver(
      { host: "127.0.0.1", port: 0 },
      south.driverContext("http", driversAbort.signal),
    );
    south.addDriver(http);
    await http.start();
    fleet = new HttpDeviceFleet({
      gatewayUrl: http.url,
      devices: o.httpDevices.map((d) => ({
        deviceId: d.id,
        serverId: GW_SERVER_ID,
        ...creds(d.id),
        ...(d.failure !== undefined && d.failure !== "none" && { failure: d.failure }),
      })),
    });
    await fleet.start();
    for (const d of o.httpDevices) {
      south.provision({
        deviceId: d.id,
        address: fleet.address(d.id),
        account: { deviceId: d.id, serverId: GW_SERVER_ID, ...creds(d.id) },
      });
    }
  }
  const engine = new FanoutEngine({ tree: g.tree, outbox: g.outbox, devices: (id) => south.endDevice(id) });
  late.engine = engine;
  const parts: GatewayParts = {
    store: g.store,
    tree: g.tree,
    outbox: g.outbox,
    south,
    engine,
    northbound,
    log: o.log ?? SILENT_LOGGER,
    startedAtMs: o.startedAtMs ?? Date.now(),
    health: o.health ?? (() => HEALTHY),
    board: o.board ?? "sim",
  };
  late.parts = parts;
  return {
    parts,
    fleet,
    stop: async () => {
      await northbound?.stop();
      await engine.stop();
      driversAbort.abort();
      await fleet?.stop();
      stopMirror();
      await south.stop();
      transport.close();
      g.close();
    },
  };
}
