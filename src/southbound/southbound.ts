/**
 * The southbound side assembled: the device registry (inventory), the device accounts, the proxy
 * sessions and the proxy drivers, and the `EndDevice` the fan-out engine drives.
 *
 *   driver ctx.onMessage ---------> ProxySessions.handler --(session ended)--> registry.seen(DevInfo)
 *   driver ctx.onDeviceSeen/Lost -> registry.seen / registry.detach (GwMO alerts to the outbox)
 *   endDevice(id).execute --------> ProxySessions.execute --> registry: seen | unreachable
 *
 * Decisions:
 * - Only an authenticated session puts a device in the inventory; a presence message (MQTT birth)
 *   does so only for a device the gateway holds an account for, or may enrol.
 * - A device whose `execute` ends 503/504 becomes `unreachable` (it stays attached: no alert); one that
 *   answers again is `attached`. A device the transport says left (MQTT last will) is `detached`.
 * - The address a device is notified at: what the inventory holds; for a new HTTP device, its
 *   source IP at port 2948 (the binding's default), for the other transports the address the driver
 *   reported.
 */
import type {
  AdaptationDriver,
  AdaptedOutcome,
  DeviceAddress,
  DriverContext,
  DriverState,
  ProxyDriver,
  ProxyDriverContext,
  TransportKind,
} from "../../drivers/driver.js";
import type { GatewayError } from "../core/errors.js";
import { SILENT_LOGGER, type Logger } from "../core/log.js";
import type { Command } from "../syncml/index.js";
import { WAP_PUSH_PORT } from "../syncml/wsp-push.js";
import type { Store } from "../tree/store.js";
import { StoredDeviceAccounts, type Enrolment } from "./device-accounts.js";
import { DeviceRegistry, type AlertSink, type DeviceRecord } from "./device-registry.js";
import type { EndDevice } from "./end-device.js";
import {
  ProxySessions,
  type DeviceOutcome,
  type ExecuteOptions,
  type ProxySessionsOptions,
} from "./proxy-sessions.js";

export interface SouthboundOptions {
  readonly store: Store;
  readonly outbox: AlertSink;
  /** The DM servers that hear of attaches and detaches. */
  readonly alertServers: () => readonly string[];
  readonly enrolment?: Enrolment;
  /** Limits toward devices (MaxMsgSize, MaxObjSize, idle time of device-initiated sessions). */
  readonly proxy?: Pick<ProxySessionsOptions, "maxMsgSize" | "maxObjSize" | "idleMs" | "serverUri">;
  readonly randomBytes?: (size: number) => Uint8Array;
  readonly now?: () => number;
  /** "dmgw:southbound". */
  readonly log?: Logger;
  /** Driver state changes (metrics, READY): a throw is logged and ignored. */
  readonly onDriverState?: (kind: TransportKind, state: DriverState, cause?: GatewayError) => void;
}

export class Southbound {
  readonly registry: DeviceRegistry;
  readonly accounts: StoredDeviceAccounts;
  readonly proxy: ProxySessions;
  readonly #o: SouthboundOptions;
  readonly #log: Logger;
  readonly #drivers = new Map<TransportKind, ProxyDriver>();
  readonly #adapters = new Map<TransportKind, AdaptationDriver>();

  constructor(options: SouthboundOptions) {
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
    this.accounts = new StoredDeviceAccounts(options.store);
    this.registry = new DeviceRegistry({
      store: options.store,
      outbox: options.outbox,
      alertServers: options.alertServers,
      log: this.#log.child("registry"),
      ...(options.now !== undefined && { now: options.now }),
    });
    this.proxy = new ProxySessions({
      accounts: this.accounts,
      log: this.#log.child("proxy"),
      ...options.proxy,
      ...(options.randomBytes !== undefined && { randomBytes: options.randomBytes }),
      ...(options.enrolment !== undefined && { enrolment: options.enrolment }),
      onSession: (deviceId, from, outcome) => {
        if (!outcome.authenticated) return;
        const known = this.registry.get(deviceId);
        this.registry.seen({
          deviceId,
          transport: from.transport,
          mode: "proxy",
          address: known?.transport === from.transport ? known.address : notifyAddress(from),
          devInfo: outcome.devInfo,
        });
      },
    });
  }

  /** The context an adaptation driver of `kind` is made with: its devices are `adaptation` devices. */
  adaptationContext(kind: TransportKind, signal: AbortSignal): DriverContext {
    return {
      ...this.#baseContext(kind, signal),
      onDeviceSeen: (device, info) => {
        this.registry.seen({
          deviceId: device.address,
          transport: device.transport,
          mode: "adaptation",
          address: device.address,
          ...(info !== undefined && { devInfo: info }),
        });
      },
    };
  }

  /** Runs the commands of `driver.kind`'s adaptation devices through it. */
  addAdaptationDriver(driver: AdaptationDriver): void {
    this.#adapters.set(driver.kind, driver);
  }

  /** The context a proxy driver of `kind` is made with. */
  driverContext(kind: TransportKind, signal: AbortSignal): ProxyDriverContext {
    return { ...this.#baseContext(kind, signal), onMessage: this.proxy.handler };
  }

  #baseContext(kind: TransportKind, signal: AbortSignal): DriverContext {
    const log = this.#log.child(`drv:${kind}`);
    const base: DriverContext = {
      log,
      signal,
      onState: (state, cause) => {
        if (state === "degraded") log.warn(`the ${kind} driver is degraded`, { cause: cause?.message });
        try {
          this.#o.onDriverState?.(kind, state, cause);
        } catch (e) {
          log.error("an onDriverState listener threw", { error: e instanceof Error ? e.message : String(e) });
        }
      },
      onDeviceSeen: (device) => {
        this.#presence(device);
      },
      onDeviceLost: (device, cause) => {
        this.registry.detach(device.address, cause.message);
      },
    };
    return base;
  }

  /** Routes the sessions and notifications of `driver.kind` through it. */
  addDriver(driver: ProxyDriver): void {
    this.#drivers.set(driver.kind, driver);
    this.proxy.attach(driver);
  }

  /** Each driver once: the BLE driver is both a proxy and an adaptation driver. */
  get drivers(): readonly (ProxyDriver | AdaptationDriver)[] {
    return [...new Set([...this.#drivers.values(), ...this.#adapters.values()])];
  }

  /** The device as the fan-out engine drives it; undefined when the inventory does not hold it. */
  endDevice(deviceId: string): EndDevice | undefined {
    const record = this.registry.get(deviceId);
    if (record === undefined) return undefined;
    return {
      id: record.deviceId,
      transport: record.transport,
      mode: record.mode,
      execute: (commands, options) => this.#execute(record, commands, options),
    };
  }

  /** Adds a provisioned device: its account and its inventory record (an attach alert). */
  provision(device: {
    readonly deviceId: string;
    readonly address: DeviceAddress;
    readonly account: Parameters<StoredDeviceAccounts["put"]>[0];
  }): DeviceRecord {
    this.accounts.put(device.account);
    return this.registry.seen({
      deviceId: device.deviceId,
      transport: device.address.transport,
      mode: "proxy",
      address: device.address.address,
    });
  }

  /** Stops the sessions in flight (their `execute` settle 514) and every driver. Never throws. */
  async stop(): Promise<void> {
    this.proxy.close();
    await Promise.all(this.drivers.map((d) => d.stop().catch(() => undefined)));
    this.accounts.flush();
    this.registry.flush();
  }

  async #execute(
    record: DeviceRecord,
    commands: readonly Command[],
    options: ExecuteOptions,
  ): Promise<AdaptedOutcome> {
    const address = { transport: record.transport, address: record.address };
    let outcome: AdaptedOutcome | DeviceOutcome;
    if (record.mode === "adaptation") {
      const adapter = this.#adapters.get(record.transport);
      outcome =
        adapter === undefined
          ? { kind: "failed", status: 503, reason: `no ${record.transport} adaptation driver is running` }
          : await adapter.execute(address, commands, options);
      if (outcome.kind === "replied") {
        this.registry.seen({
          deviceId: record.deviceId,
          transport: record.transport,
          mode: "adaptation",
          address: record.address,
        });
      }
    } else {
      outcome = await this.proxy.execute({ deviceId: record.deviceId, address }, commands, options);
    }
    if (outcome.kind === "failed" && (outcome.status === 503 || outcome.status === 504)) {
      this.registry.unreachable(record.deviceId, outcome.reason);
    }
    return outcome;
  }

  #presence(device: DeviceAddress): void {
    // A presence message names the device by its address (the MQTT id, the serial port).
    const known = this.registry.get(device.address);
    // Enrolment may add a device it never saw only where the address is the device's id (MQTT's
    // client topic): a serial port's path or a BLE MAC is no device id, and an inventory record
    // named by one cannot even be mirrored into the tree (a path holds "/").
    const mayEnrol = this.#o.enrolment !== undefined && ADDRESS_IS_DEVICE_ID.has(device.transport);
    if (known === undefined && this.accounts.get(device.address) === undefined && !mayEnrol) {
      this.#log.warn("presence of a device the gateway holds no account for; ignored", {
        transport: device.transport,
        address: device.address,
      });
      return;
    }
    this.registry.seen({
      deviceId: device.address,
      transport: device.transport,
      mode: "proxy",
      address: device.address,
    });
  }
}

/** Transports whose presence messages name the device by its id. */
const ADDRESS_IS_DEVICE_ID: ReadonlySet<TransportKind> = new Set<TransportKind>(["mqtt"]);

/** Where a device that reached us from `from` is notified. */
function notifyAddress(from: DeviceAddress): string {
  if (from.transport !== "http") return from.address;
  const host = from.address.replace(/:\d+$/, "").replace(/^::ffff:/, "");
  return `udp://${host.includes(":") ? `[${host}]` : host}:${WAP_PUSH_PORT}`;
}
