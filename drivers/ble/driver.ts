/**
 * The BLE driver (design.md section 3): the gateway is the GATT central, through BlueZ on the system
 * D-Bus (node-ble over dbus-next). One driver serves both BLE device kinds:
 *
 *   discovery: Adapter1.SetDiscoveryFilter(UUIDs = serviceUuids, Transport le) + StartDiscovery,
 *     then the adapter's device objects are polled: new + matching -> ctx.onDeviceSeen(MAC, DevInfo
 *     read from 0x180A when the device has it); an object that vanished -> ctx.onDeviceLost
 *
 *   proxy (DM transport service, segment.ts):
 *     notify(MAC, Pkg#0) -> pool slot -> Connect -> ServicesResolved -> StartNotify(notify char)
 *       -> WriteValue(segments of envelope(Pkg#0))  on the write char
 *     notification segments -> Reassembler -> envelope -> ctx.onMessage({ble, MAC}, message)
 *       -> reply -> WriteValue(segments) ; the link is held while the session talks, released
 *       `sessionIdleMs` after its last message (or at once when the core says the session ended)
 *
 *   adaptation (Device Information 0x180A, Battery 0x180F):
 *     execute(MAC, [Get ./DevInfo/Man ...]) -> pool slot -> Connect -> ReadValue per leaf
 *     Get of a mapped leaf 200 + Results; any other URI 404; Replace/Exec/Add/Delete/Copy 405
 *
 * The pool: at most `poolSize` devices connected per adapter (controllers cap LE connections; the
 * planner reads `concurrency`). A request for a new device waits for a slot; an idle link (no
 * execute running, no session talking) is disconnected to make room.
 *
 * Failures: a device that cannot be reached (Connect fails, no object) is a value (503 from
 * `execute`, a Driver_Unreachable thrown by `notify`); a link lost mid-way (Device1 Connected false)
 * is logged, the link dropped, an execute running on it answers 503. The bus or adapter lost (the
 * D-Bus connection's `error` event, a poll that fails or hangs) makes the driver `degraded`; it then
 * reconnects with backoff (src/core/backoff.ts) on a new D-Bus connection. The `error` event is
 * always handled: unhandled, it kills the process (platform.md 6).
 *
 * node-ble 1.13 has no discovery filter by UUID, no MTU and no way to drop its D-Bus signal
 * listeners: those few calls go through the same dbus-next connection (`bluetooth.dbus`) and
 * node-ble's internal `helper` (typed narrowly below).
 */
import { createBluetooth } from "node-ble";
import type NodeBle from "node-ble";
import { Variant, type MessageBus } from "dbus-next";
import { backoffDelay, type BackoffOptions } from "../../src/core/backoff.js";
import { ErrorCode, GatewayError } from "../../src/core/errors.js";
import type { Command, Item } from "../../src/syncml/index.js";
import type {
  AdaptationDriver,
  AdaptedOutcome,
  DeviceAddress,
  DeviceCommandResult,
  DriverContext,
  DriverState,
  ProxyDriver,
  ProxyDriverContext,
} from "../driver.js";
import {
  BATTERY_LEVEL_UUID,
  BATTERY_SERVICE_UUID,
  DEVICE_INFORMATION_SERVICE_UUID,
  DM_TRANSPORT_NOTIFY_UUID,
  DM_TRANSPORT_SERVICE_UUID,
  DM_TRANSPORT_WRITE_UUID,
  FIRMWARE_REVISION_UUID,
  HARDWARE_REVISION_UUID,
  MANUFACTURER_NAME_UUID,
  MIN_ATT_MTU,
  MODEL_NUMBER_UUID,
  Reassembler,
  SERIAL_NUMBER_UUID,
  SOFTWARE_REVISION_UUID,
  contentTypeOfKind,
  decodeEnvelope,
  encodeEnvelope,
  kindOfContentType,
  segment,
} from "./segment.js";

export interface BleDriverConfig {
  /** Adapter name (`hci0`); default the first adapter BlueZ lists. */
  readonly adapter?: string;
  /** Discovery filter; default the DM transport, Device Information and Battery services. */
  readonly serviceUuids?: readonly string[];
  /** Devices connected at once on the adapter (the planner's limit); default 5. */
  readonly poolSize?: number;
  /** How often the adapter's device list is polled, ms; default 1000. */
  readonly discoveryIntervalMs?: number;
  /** Connect + services resolved, ms; default 10000. */
  readonly connectTimeoutMs?: number;
  /** A D-Bus call (read, write, poll) that takes longer fails, ms; default 5000. */
  readonly callTimeoutMs?: number;
  /** A proxy link is released this long after the session's last message, ms; default 3000. */
  readonly sessionIdleMs?: number;
  /** An adaptation link stays connected this long after an execute, ms; default 500. */
  readonly linkIdleMs?: number;
  /** `notify` gives up after this long (pool wait + connect + write), ms; default 10000. */
  readonly notifyTimeoutMs?: number;
  /** Largest reassembled message, bytes; default 64 KiB. */
  readonly maxMessageBytes?: number;
  /** Read DevInfo (0x180A) of adaptation devices when they are discovered; default true. */
  readonly readDevInfoOnDiscovery?: boolean;
  /** Reconnect delays after the bus or adapter is lost; default 500 ms doubling to 30 s. */
  readonly reconnect?: BackoffOptions;
}

export const DEFAULT_BLE_POOL_SIZE = 5;

const RECONNECT_DEFAULTS: Required<BackoffOptions> = {
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.25,
};

/** DM leaves of an adaptation device -> (service, characteristic, format). */
export const GATT_LEAVES: Readonly<
  Record<
    string,
    { readonly service: string; readonly characteristic: string; readonly format: "chr" | "int" }
  >
> = {
  "DevInfo/Man": {
    service: DEVICE_INFORMATION_SERVICE_UUID,
    characteristic: MANUFACTURER_NAME_UUID,
    format: "chr",
  },
  "DevInfo/Mod": {
    service: DEVICE_INFORMATION_SERVICE_UUID,
    characteristic: MODEL_NUMBER_UUID,
    format: "chr",
  },
  "DevInfo/FwV": {
    service: DEVICE_INFORMATION_SERVICE_UUID,
    characteristic: FIRMWARE_REVISION_UUID,
    format: "chr",
  },
  "DevInfo/SwV": {
    service: DEVICE_INFORMATION_SERVICE_UUID,
    characteristic: SOFTWARE_REVISION_UUID,
    format: "chr",
  },
  "DevInfo/HwV": {
    service: DEVICE_INFORMATION_SERVICE_UUID,
    characteristic: HARDWARE_REVISION_UUID,
    format: "chr",
  },
  "DevInfo/DevId": {
    service: DEVICE_INFORMATION_SERVICE_UUID,
    characteristic: SERIAL_NUMBER_UUID,
    format: "chr",
  },
  "Battery/Level": { service: BATTERY_SERVICE_UUID, characteristic: BATTERY_LEVEL_UUID, format: "int" },
};

/** node-ble internals the driver needs (1.13): each object's BusHelper. */
interface WithHelper {
  readonly helper: {
    prop(name: string): Promise<unknown>;
    removeListeners(): void;
  };
}

interface Link {
  readonly mac: string;
  readonly device: NodeBle.Device;
  readonly gatt: NodeBle.GattServer;
  /** Executes running on it. */
  busy: number;
  /** A proxy session talks over it. */
  session: boolean;
  closed: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  /** DM transport, once set up. */
  transport:
    { write: NodeBle.GattCharacteristic; notify: NodeBle.GattCharacteristic; mtu: number } | undefined;
  readonly reassembler: Reassembler;
  /** Writes and inbound messages run one at a time. */
  writes: Promise<void>;
  inbound: Promise<void>;
  readonly onLost: Set<(cause: GatewayError) => void>;
}

interface Waiter {
  readonly wake: () => void;
}

export class BleDriver implements ProxyDriver, AdaptationDriver {
  readonly kind = "ble" as const;
  readonly concurrency: number;

  readonly #config: BleDriverConfig;
  readonly #ctx: ProxyDriverContext;
  readonly #adaptationCtx: Pick<DriverContext, "onDeviceSeen" | "onDeviceLost">;
  #state: DriverState = "stopped";
  #session:
    { destroy(): void; bluetooth: NodeBle.Bluetooth; bus: MessageBus; adapter: NodeBle.Adapter } | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #generation = 0;
  readonly #known = new Map<string, "proxy" | "adaptation" | "ignored">();
  readonly #links = new Map<string, Link>();
  readonly #opening = new Map<string, Promise<Link>>();
  #slotsUsed = 0;
  #waiters: Waiter[] = [];
  /** Most links connected at once (the pool tests' oracle). */
  peakLinks = 0;
  /** Links lost under the driver (Connected went false without our Disconnect). */
  linkLosses = 0;

  /**
   * @param adaptationCtx where adaptation (GATT-only) devices are reported; default `ctx`. The core
   *   registers devices of a proxy context as proxy devices, so a gateway that runs both gives the
   *   adaptation context of its southbound here.
   */
  constructor(
    config: BleDriverConfig,
    ctx: ProxyDriverContext,
    adaptationCtx?: Pick<DriverContext, "onDeviceSeen" | "onDeviceLost">,
  ) {
    this.#config = config;
    this.#ctx = ctx;
    this.#adaptationCtx = adaptationCtx ?? ctx;
    this.concurrency = config.poolSize ?? DEFAULT_BLE_POOL_SIZE;
  }

  get state(): DriverState {
    return this.#state;
  }

  /** Devices connected now. */
  get connectedLinks(): number {
    return this.#links.size;
  }

  get #uuids(): readonly string[] {
    return (
      this.#config.serviceUuids ?? [
        DM_TRANSPORT_SERVICE_UUID,
        DEVICE_INFORMATION_SERVICE_UUID,
        BATTERY_SERVICE_UUID,
      ]
    ).map((u) => u.toLowerCase());
  }

  /**
   * Connects to BlueZ, sets the discovery filter, starts discovery. Idempotent.
   * @throws GatewayError(Driver_StartFailed): no system bus, no BlueZ, no such adapter.
   */
  start(): Promise<void> {
    if (this.#state === "ready" || this.#state === "degraded") return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#stopping !== undefined) await this.#stopping;
    if (this.#ctx.signal.aborted)
      throw new GatewayError("ble: start after shutdown", ErrorCode.Driver_StartFailed);
    this.#setState("starting");
    this.#attempt = 0;
    try {
      await this.#connectBus();
    } catch (e) {
      this.#teardownBus();
      this.#setState("stopped");
      throw new GatewayError(`ble: cannot start: ${message(e)}`, ErrorCode.Driver_StartFailed, { cause: e });
    }
    this.#ctx.signal.addEventListener("abort", this.#onAbort, { once: true });
    this.#setState("ready");
    this.#ctx.log.info("ready", { adapter: this.#config.adapter ?? "(default)", poolSize: this.concurrency });
  }

  readonly #onAbort = (): void => {
    void this.stop();
  };

  async #connectBus(): Promise<void> {
    const generation = ++this.#generation;
    const nodeBle = createBluetooth();
    const bluetooth = nodeBle.bluetooth;
    const destroy = (): void => {
      nodeBle.destroy();
    };
    const bus = (bluetooth as unknown as { readonly dbus: MessageBus }).dbus;
    // Unhandled, this event kills the process (platform.md 6).
    bus.on("error", (e: unknown) => {
      if (generation !== this.#generation) return;
      this.#busLost(
        new GatewayError(`ble: D-Bus connection error: ${message(e)}`, ErrorCode.Driver_LinkLost, {
          cause: e,
        }),
      );
    });
    this.#session = { destroy, bluetooth, bus, adapter: undefined as unknown as NodeBle.Adapter };
    const callMs = this.#config.callTimeoutMs ?? 5000;
    const adapter = await withTimeout(
      this.#config.adapter === undefined
        ? bluetooth.defaultAdapter()
        : bluetooth.getAdapter(this.#config.adapter),
      callMs,
      "the adapter",
    );
    this.#session.adapter = adapter;
    const name = (adapter as unknown as { readonly adapter: string }).adapter;
    const proxy = await withTimeout(
      bus.getProxyObject("org.bluez", `/org/bluez/${name}`),
      callMs,
      "the adapter object",
    );
    const iface = proxy.getInterface("org.bluez.Adapter1");
    await withTimeout(
      Promise.resolve(
        iface["SetDiscoveryFilter"]?.({
          UUIDs: new Variant("as", [...this.#uuids]),
          Transport: new Variant("s", "le"),
        }),
      ),
      callMs,
      "SetDiscoveryFilter",
    );
    if (!(await withTimeout(adapter.isDiscovering(), callMs, "Discovering"))) {
      await withTimeout(Promise.resolve(iface["StartDiscovery"]?.()), callMs, "StartDiscovery");
    }
    this.#schedulePoll(0);
  }

  #schedulePoll(delayMs: number): void {
    clearTimeout(this.#pollTimer);
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined;
      void this.#poll();
    }, delayMs);
  }

  async #poll(): Promise<void> {
    const session = this.#session;
    if (session === undefined || this.#stopping !== undefined) return;
    const generation = this.#generation;
    let macs: string[];
    try {
      macs = await withTimeout(
        session.adapter.devices(),
        this.#config.callTimeoutMs ?? 5000,
        "the device list",
      );
    } catch (e) {
      if (generation === this.#generation) {
        this.#busLost(
          new GatewayError(`ble: adapter lost: ${message(e)}`, ErrorCode.Driver_LinkLost, { cause: e }),
        );
      }
      return;
    }
    if (generation !== this.#generation || this.#isStopping()) return;
    const present = new Set(macs.map((m) => m.toUpperCase()));
    for (const [mac, kind] of [...this.#known]) {
      if (present.has(mac)) continue;
      this.#known.delete(mac);
      this.#closeLink(mac, "the device left");
      if (kind === "ignored") continue;
      const cause = new GatewayError("ble: the device is gone", ErrorCode.Driver_Unreachable, {
        context: { mac },
      });
      this.#ctx.log.info("device lost", { mac });
      this.#report(kind, (c) => {
        c.onDeviceLost({ transport: "ble", address: mac }, cause);
      });
    }
    for (const mac of present) {
      if (this.#known.has(mac)) continue;
      await this.#examine(session.bus, session.adapter, mac).catch((e: unknown) => {
        this.#ctx.log.debug("device not examined", { mac, error: message(e) });
      });
    }
    if (generation === this.#generation && !this.#isStopping()) {
      this.#schedulePoll(this.#config.discoveryIntervalMs ?? 1000);
    }
  }

  async #examine(bus: MessageBus, adapter: NodeBle.Adapter, mac: string): Promise<void> {
    const name = (adapter as unknown as { readonly adapter: string }).adapter;
    const path = `/org/bluez/${name}/dev_${mac.replace(/:/g, "_")}`;
    const proxy = await withTimeout(
      bus.getProxyObject("org.bluez", path),
      this.#config.callTimeoutMs ?? 5000,
      "Device1",
    );
    const props = proxy.getInterface("org.freedesktop.DBus.Properties");
    const got: unknown = await withTimeout(
      Promise.resolve(props["Get"]?.("org.bluez.Device1", "UUIDs")),
      this.#config.callTimeoutMs ?? 5000,
      "Device1.UUIDs",
    );
    const value = (got as { value?: unknown } | undefined)?.value;
    const uuids = Array.isArray(value) ? value.map((u) => String(u).toLowerCase()) : [];
    const filter = this.#uuids;
    // BlueZ filters already; a device it knew before the filter was set may still be listed.
    if (!uuids.some((u) => filter.includes(u))) {
      this.#known.set(mac, "ignored");
      return;
    }
    const address: DeviceAddress = { transport: "ble", address: mac };
    if (uuids.includes(DM_TRANSPORT_SERVICE_UUID)) {
      this.#known.set(mac, "proxy");
      this.#ctx.log.info("device seen (DM transport)", { mac });
      this.#report("proxy", (c) => {
        c.onDeviceSeen(address);
      });
      return;
    }
    this.#known.set(mac, "adaptation");
    let info: Record<string, string> | undefined;
    if (uuids.includes(DEVICE_INFORMATION_SERVICE_UUID) && this.#config.readDevInfoOnDiscovery !== false) {
      info = await this.#readDevInfo(mac).catch((e: unknown) => {
        this.#ctx.log.warn("DevInfo not read", { mac, error: message(e) });
        return undefined;
      });
    }
    this.#ctx.log.info("device seen (GATT)", { mac, ...info });
    this.#report("adaptation", (c) => {
      if (info === undefined) c.onDeviceSeen(address);
      else c.onDeviceSeen(address, info);
    });
  }

  async #readDevInfo(mac: string): Promise<Record<string, string>> {
    const link = await this.#acquire(mac, Date.now() + (this.#config.connectTimeoutMs ?? 10_000));
    link.busy++;
    try {
      const info: Record<string, string> = {};
      for (const [leaf, m] of Object.entries(GATT_LEAVES)) {
        if (m.service !== DEVICE_INFORMATION_SERVICE_UUID) continue;
        const value = await this.#read(link, m.service, m.characteristic, m.format).catch(() => undefined);
        if (value !== undefined) info[leaf.slice("DevInfo/".length)] = value;
      }
      return info;
    } finally {
      this.#releaseBusy(link);
    }
  }

  #report(
    kind: "proxy" | "adaptation",
    f: (c: Pick<DriverContext, "onDeviceSeen" | "onDeviceLost">) => void,
  ): void {
    try {
      f(kind === "proxy" ? this.#ctx : this.#adaptationCtx);
    } catch (e) {
      this.#ctx.log.error("a device listener threw", { error: message(e) });
    }
  }

  // ---- the pool --------------------------------------------------------------------------------

  /** A connected link to `mac`, waiting for a slot until `deadline`. @throws Driver_Unreachable. */
  async #acquire(mac: string, deadline: number): Promise<Link> {
    for (;;) {
      if (this.#state !== "ready") {
        throw new GatewayError(`ble: driver not ready (${this.#state})`, ErrorCode.Driver_Unreachable);
      }
      const link = this.#links.get(mac);
      if (link !== undefined && !link.closed) {
        clearTimeout(link.idleTimer);
        link.idleTimer = undefined;
        return link;
      }
      const opening = this.#opening.get(mac);
      if (opening !== undefined) {
        await opening;
        continue;
      }
      if (this.#slotsUsed < this.concurrency) {
        this.#slotsUsed++;
        const p = this.#open(mac, deadline).finally(() => {
          this.#opening.delete(mac);
        });
        this.#opening.set(mac, p);
        return p;
      }
      const idle = [...this.#links.values()].find((l) => l.busy === 0 && !l.session && !l.closed);
      if (idle !== undefined) {
        this.#closeLink(idle.mac, "evicted for another device");
        continue;
      }
      await this.#waitSlot(deadline, mac);
    }
  }

  #waitSlot(deadline: number, mac: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        wake: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(
        () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(
            new GatewayError(
              `ble: no free connection slot (pool of ${this.concurrency})`,
              ErrorCode.Driver_Unreachable,
              {
                context: { mac },
              },
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      this.#waiters.push(waiter);
    });
  }

  #freeSlot(): void {
    this.#slotsUsed = Math.max(0, this.#slotsUsed - 1);
    this.#waiters.shift()?.wake();
  }

  async #open(mac: string, deadline: number): Promise<Link> {
    const session = this.#session;
    let device: NodeBle.Device | undefined;
    try {
      if (session === undefined) throw new Error("no D-Bus session");
      const timeoutMs = Math.max(1, Math.min(deadline - Date.now(), this.#config.connectTimeoutMs ?? 10_000));
      const d = await withTimeout(
        this.#findDevice(session.adapter, mac, deadline),
        timeoutMs,
        "the device object",
      );
      device = d;
      await withTimeout(d.connect(), timeoutMs, "Connect");
      // node-ble's gatt() reads ServicesResolved, then subscribes to its change: a flip in between is
      // missed and it waits forever. Poll the property first; gatt() then finds it true.
      await this.#servicesResolved(d, deadline);
      const gatt = await withTimeout(d.gatt(), Math.max(1, deadline - Date.now()), "the GATT services");
      const link: Link = {
        mac,
        device: d,
        gatt,
        busy: 0,
        session: false,
        closed: false,
        idleTimer: undefined,
        transport: undefined,
        reassembler: new Reassembler({ maxMessageBytes: this.#config.maxMessageBytes ?? 64 * 1024 }),
        writes: Promise.resolve(),
        inbound: Promise.resolve(),
        onLost: new Set(),
      };
      d.on("disconnect", () => {
        this.#linkLost(link);
      });
      this.#links.set(mac, link);
      this.peakLinks = Math.max(this.peakLinks, this.#links.size);
      this.#ctx.log.debug(() => `connected ${mac} (${this.#links.size}/${this.concurrency})`);
      return link;
    } catch (e) {
      this.#freeSlot();
      if (device !== undefined) {
        helperOf(device).removeListeners();
        void device.disconnect().catch(() => undefined);
      }
      throw new GatewayError(`ble: cannot connect ${mac}: ${message(e)}`, ErrorCode.Driver_Unreachable, {
        cause: e,
        context: { mac, dbusError: dbusName(e) },
      });
    }
  }

  async #servicesResolved(device: NodeBle.Device, deadline: number): Promise<void> {
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("ServicesResolved: not within the deadline");
      if ((await withTimeout(helperOf(device).prop("ServicesResolved"), left, "ServicesResolved")) === true)
        return;
      if (this.#state !== "ready") throw new Error(`driver ${this.#state}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The device object, waiting (until `deadline`) for discovery to find it. */
  async #findDevice(adapter: NodeBle.Adapter, mac: string, deadline: number): Promise<NodeBle.Device> {
    for (;;) {
      try {
        return await adapter.getDevice(mac);
      } catch (e) {
        if (message(e) !== "Device not found" || Date.now() + 50 > deadline || this.#state !== "ready")
          throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  #linkLost(link: Link): void {
    if (link.closed) return;
    this.linkLosses++;
    this.#ctx.log.warn("link lost", { mac: link.mac, session: link.session, busy: link.busy });
    const cause = new GatewayError("ble: link lost", ErrorCode.Driver_LinkLost, {
      context: { mac: link.mac },
    });
    void this.#dropLink(link, cause, false);
  }

  #closeLink(mac: string, why: string): void {
    const link = this.#links.get(mac);
    if (link === undefined || link.closed) return;
    this.#ctx.log.debug(() => `disconnecting ${mac}: ${why}`);
    void this.#dropLink(
      link,
      new GatewayError(`ble: ${why}`, ErrorCode.Driver_Unreachable, { context: { mac } }),
      true,
    );
  }

  /** Forgets `link`, frees its slot and (when `disconnect`) asks BlueZ to disconnect. */
  #dropLink(link: Link, cause: GatewayError, disconnect: boolean): Promise<void> {
    if (link.closed) return Promise.resolve();
    link.closed = true;
    clearTimeout(link.idleTimer);
    link.idleTimer = undefined;
    const dropped = link.reassembler.reset();
    if (dropped > 0)
      this.#ctx.log.warn("partial message dropped with the link", { mac: link.mac, bytes: dropped });
    if (this.#links.get(link.mac) === link) this.#links.delete(link.mac);
    for (const f of link.onLost) f(cause);
    link.onLost.clear();
    const cleanup = (): void => {
      if (link.transport !== undefined) {
        link.transport.notify.removeAllListeners("valuechanged");
        helperOf(link.transport.notify).removeListeners();
      }
      link.device.removeAllListeners();
      helperOf(link.device).removeListeners();
    };
    this.#freeSlot();
    if (!disconnect || this.#session === undefined) {
      cleanup();
      return Promise.resolve();
    }
    return withTimeout(link.device.disconnect(), 1000, "Disconnect")
      .catch(() => undefined)
      .finally(cleanup);
  }

  #releaseBusy(link: Link): void {
    link.busy = Math.max(0, link.busy - 1);
    this.#armIdle(link);
  }

  #armIdle(link: Link): void {
    if (link.closed || link.busy > 0 || link.session) return;
    if (this.#waiters.length > 0) {
      this.#closeLink(link.mac, "idle, and another device waits");
      return;
    }
    clearTimeout(link.idleTimer);
    link.idleTimer = setTimeout(() => {
      link.idleTimer = undefined;
      this.#closeLink(link.mac, "idle");
    }, this.#config.linkIdleMs ?? 500);
  }

  /** (Re)starts the session-idle timer of a proxy link. */
  #touchSession(link: Link): void {
    link.session = true;
    clearTimeout(link.idleTimer);
    link.idleTimer = setTimeout(() => {
      link.idleTimer = undefined;
      link.session = false;
      this.#armIdle(link);
    }, this.#config.sessionIdleMs ?? 3000);
  }

  #endSession(link: Link): void {
    clearTimeout(link.idleTimer);
    link.idleTimer = undefined;
    link.session = false;
    this.#armIdle(link);
  }

  // ---- GATT reads (adaptation) ------------------------------------------------------------------

  async #characteristic(
    link: Link,
    service: string,
    characteristic: string,
  ): Promise<NodeBle.GattCharacteristic | undefined> {
    const uuids = await link.gatt.services();
    if (!uuids.includes(service)) return undefined;
    const s = await link.gatt.getPrimaryService(service);
    if (!(await s.characteristics()).includes(characteristic)) return undefined;
    return s.getCharacteristic(characteristic);
  }

  /** The value as DM text; undefined when the device lacks it. @throws on I/O failure. */
  async #read(
    link: Link,
    service: string,
    characteristic: string,
    format: "chr" | "int",
  ): Promise<string | undefined> {
    const c = await this.#characteristic(link, service, characteristic);
    if (c === undefined) return undefined;
    const value = await withTimeout(c.readValue(), this.#config.callTimeoutMs ?? 5000, "ReadValue");
    return format === "int" ? String(value[0] ?? 0) : new TextDecoder().decode(value).replace(/\0+$/, "");
  }

  /**
   * Runs DM commands on a GATT device: Get of the mapped leaves reads them; the tree is read-only.
   * Never rejects; settles before `timeoutMs`: 503 unreachable or link lost, 504 too slow, 514 cancelled.
   */
  execute(
    device: DeviceAddress,
    commands: readonly Command[],
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal },
  ): Promise<AdaptedOutcome> {
    if (this.#state !== "ready") {
      return Promise.resolve({ kind: "failed", status: 503, reason: `the ble driver is ${this.#state}` });
    }
    if (options.signal?.aborted === true)
      return Promise.resolve({ kind: "failed", status: 514, reason: "cancelled" });
    const deadline = Date.now() + options.timeoutMs;
    return new Promise<AdaptedOutcome>((resolve) => {
      let settled = false;
      const settle = (o: AdaptedOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        resolve(o);
      };
      const timer = setTimeout(() => {
        settle({ kind: "failed", status: 504, reason: "the device did not answer in time" });
      }, options.timeoutMs);
      const onAbort = (): void => {
        settle({ kind: "failed", status: 514, reason: "cancelled" });
      };
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.#execute(device.address.toUpperCase(), commands, deadline).then(settle, (e: unknown) => {
        settle({ kind: "failed", status: 503, reason: message(e) });
      });
    });
  }

  async #execute(mac: string, commands: readonly Command[], deadline: number): Promise<AdaptedOutcome> {
    const planned = commands.map(plan);
    const needsLink = planned.some((p) => p.reads.length > 0);
    if (!needsLink) return { kind: "replied", results: planned.map((p) => p.fixed ?? result(404)) };
    const link = await this.#acquire(mac, deadline);
    link.busy++;
    let lost: GatewayError | undefined;
    const onLost = (cause: GatewayError): void => {
      lost = cause;
    };
    link.onLost.add(onLost);
    try {
      const results: DeviceCommandResult[] = [];
      for (const p of planned) {
        if (p.fixed !== undefined) {
          results.push(p.fixed);
          continue;
        }
        const items: Item[] = [];
        let status = 200;
        for (const r of p.reads) {
          const value = await this.#read(link, r.leaf.service, r.leaf.characteristic, r.leaf.format);
          if (lost !== undefined) throw lost;
          if (value === undefined) {
            status = 404;
            continue;
          }
          items.push({
            source: { locUri: r.uri },
            meta: { format: r.leaf.format },
            data: { kind: "text", text: value },
          });
        }
        results.push({ status, items: status === 200 ? items : [], inner: [] });
      }
      return { kind: "replied", results };
    } catch (e) {
      return { kind: "failed", status: 503, reason: message(lost ?? e) };
    } finally {
      link.onLost.delete(onLost);
      this.#releaseBusy(link);
    }
  }

  // ---- proxy --------------------------------------------------------------------------------------

  /**
   * Writes the Pkg#0, framed, to the device's DM transport service (connecting it first).
   * @throws GatewayError(Driver_Unreachable): not ready, no slot in time, the device cannot be
   *   connected, has no DM transport service, or refused the write.
   */
  async notify(device: DeviceAddress, package0: Uint8Array): Promise<void> {
    const mac = device.address.toUpperCase();
    const deadline = Date.now() + (this.#config.notifyTimeoutMs ?? 10_000);
    const link = await this.#acquire(mac, deadline);
    this.#touchSession(link);
    try {
      await this.#setupTransport(link);
      this.#ctx.log.debug(() => `» ${mac} Pkg#0 ${package0.length} bytes`);
      await this.#send(link, encodeEnvelope({ kind: "package0", headers: {}, body: package0 }));
    } catch (e) {
      this.#endSession(link);
      if (e instanceof GatewayError) throw e;
      throw new GatewayError(
        `ble: Pkg#0 not delivered to ${mac}: ${message(e)}`,
        ErrorCode.Driver_Unreachable,
        {
          cause: e,
          context: { mac, dbusError: dbusName(e) },
        },
      );
    }
  }

  respUri(): string | undefined {
    return undefined;
  }

  async #setupTransport(link: Link): Promise<void> {
    if (link.transport !== undefined) return;
    const write = await this.#characteristic(link, DM_TRANSPORT_SERVICE_UUID, DM_TRANSPORT_WRITE_UUID);
    const notify = await this.#characteristic(link, DM_TRANSPORT_SERVICE_UUID, DM_TRANSPORT_NOTIFY_UUID);
    if (write === undefined || notify === undefined) {
      throw new GatewayError(`ble: ${link.mac} has no DM transport service`, ErrorCode.Driver_Unreachable, {
        context: { mac: link.mac },
      });
    }
    let mtu = MIN_ATT_MTU;
    try {
      const m = await helperOf(write).prop("MTU");
      if (typeof m === "number" && m >= MIN_ATT_MTU) mtu = m;
    } catch {
      // BlueZ before 5.62 has no MTU property: the minimum ATT_MTU is always safe
    }
    notify.on("valuechanged", (value: Buffer) => {
      this.#onSegment(link, value);
    });
    await withTimeout(notify.startNotifications(), this.#config.callTimeoutMs ?? 5000, "StartNotify");
    link.transport = { write, notify, mtu };
  }

  /** Writes one message as segments, in order, after the link's earlier writes. */
  #send(link: Link, message: Uint8Array): Promise<void> {
    const t = link.transport;
    if (t === undefined) return Promise.reject(new Error("no DM transport"));
    const run = async (): Promise<void> => {
      for (const s of segment(message, t.mtu)) {
        if (link.closed)
          throw new GatewayError(`ble: link to ${link.mac} closed`, ErrorCode.Driver_Unreachable);
        await withTimeout(
          t.write.writeValue(Buffer.from(s), { type: "request" }),
          this.#config.callTimeoutMs ?? 5000,
          "WriteValue",
        );
      }
    };
    const p = link.writes.then(run, run);
    link.writes = p.catch(() => undefined);
    return p;
  }

  #onSegment(link: Link, value: Buffer): void {
    if (link.closed) return;
    const { messages, discarded } = link.reassembler.push(new Uint8Array(value));
    for (const d of discarded) {
      this.#ctx.log.warn("segments discarded", {
        mac: link.mac,
        reason: d.reason,
        bytes: d.bytes,
        head: value.subarray(0, 8).toString("hex"),
      });
    }
    for (const m of messages) {
      link.inbound = link.inbound.then(() => this.#onMessage(link, m));
    }
  }

  async #onMessage(link: Link, bytes: Uint8Array): Promise<void> {
    const log = this.#ctx.log;
    const mac = link.mac;
    this.#touchSession(link);
    const envelope = decodeEnvelope(bytes);
    if (!envelope.ok || envelope.value.kind === "package0") {
      log.warn("a device message with a bad envelope was dropped", {
        mac,
        reason: envelope.ok ? "package0 from a device" : envelope.reason,
        length: bytes.length,
        head: Buffer.from(bytes.subarray(0, 16)).toString("hex"),
      });
      return;
    }
    const e = envelope.value;
    log.debug(() => `« ${mac} ${e.body.length} bytes ${e.kind}`);
    let answer;
    try {
      answer = await this.#ctx.onMessage(
        { transport: "ble", address: mac },
        { body: e.body, contentType: contentTypeOfKind(e.kind), headers: e.headers },
        undefined,
      );
    } catch (err) {
      log.error("message handler threw", { mac, error: message(err) });
      return;
    }
    switch (answer.kind) {
      case "ended":
        this.#endSession(link);
        return;
      case "refused":
        log.warn("device message refused", {
          mac,
          status: answer.status,
          reason: answer.reason,
          length: e.body.length,
        });
        return;
      case "reply":
        break;
    }
    const reply = answer.message;
    log.debug(() => `» ${mac} ${reply.body.length} bytes ${reply.contentType}`);
    try {
      await this.#send(
        link,
        encodeEnvelope({
          kind: kindOfContentType(reply.contentType),
          headers: reply.headers,
          body: reply.body,
        }),
      );
      // `answer.last` marks the core's last reply, but releasing the link at once raced the device's
      // reading of it (seen in the bench); the link is released after `sessionIdleMs` as before.
      if (!link.closed && link.session) this.#touchSession(link);
    } catch (err) {
      log.warn("reply not written to the device", { mac, error: message(err), dbusError: dbusName(err) });
    }
  }

  // ---- bus loss, reconnect, stop ------------------------------------------------------------------

  #busLost(cause: GatewayError): void {
    if (this.#stopping !== undefined || this.#state === "stopped" || this.#state === "stopping") return;
    if (this.#state === "ready") {
      this.#ctx.log.warn("BlueZ connection lost; reconnecting", { error: cause.message });
      this.#setState("degraded", cause);
    }
    this.#dropAllLinks(cause);
    this.#teardownBus();
    if (this.#reconnectTimer !== undefined) return;
    const delayMs = backoffDelay(this.#attempt++, this.#config.reconnect ?? {}, RECONNECT_DEFAULTS);
    this.#ctx.log.debug(() => `reconnect in ${delayMs} ms (attempt ${this.#attempt})`);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#reconnect();
    }, delayMs);
  }

  async #reconnect(): Promise<void> {
    if (this.#stopping !== undefined || this.#state !== "degraded") return;
    try {
      await this.#connectBus();
    } catch (e) {
      this.#busLost(
        new GatewayError(`ble: reconnect failed: ${message(e)}`, ErrorCode.Driver_LinkLost, { cause: e }),
      );
      return;
    }
    if (this.#isStopping()) return;
    this.#attempt = 0;
    this.#ctx.log.info("BlueZ connection back");
    this.#setState("ready");
  }

  #dropAllLinks(cause: GatewayError): void {
    for (const link of [...this.#links.values()]) void this.#dropLink(link, cause, false);
    this.#known.clear();
  }

  #teardownBus(): void {
    clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    const session = this.#session;
    this.#session = undefined;
    this.#generation++;
    if (session === undefined) return;
    try {
      session.destroy();
    } catch {
      // the connection is already gone
    }
  }

  /** Disconnects every device, stops discovery, closes the D-Bus connection. Idempotent, never throws. */
  stop(): Promise<void> {
    if (this.#state === "stopped" && this.#session === undefined) return Promise.resolve();
    this.#stopping ??= this.#stop().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#setState("stopping");
    this.#ctx.signal.removeEventListener("abort", this.#onAbort);
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    const cause = new GatewayError("ble: driver stopped", ErrorCode.Driver_Stopped);
    try {
      await Promise.all([...this.#links.values()].map((l) => this.#dropLink(l, cause, true)));
      const session = this.#session;
      if (session !== undefined) {
        await withTimeout(session.adapter.stopDiscovery(), 1000, "StopDiscovery").catch(() => undefined);
      }
    } catch (e) {
      this.#ctx.log.warn("ble stop: not clean", { error: message(e) });
    }
    for (const w of this.#waiters.splice(0)) w.wake();
    this.#slotsUsed = 0;
    this.#known.clear();
    this.#teardownBus();
    this.#setState("stopped");
    this.#ctx.log.info("stopped");
  }

  /** Read through a method: TypeScript keeps a field's narrowing across awaits. */
  #isStopping(): boolean {
    return this.#stopping !== undefined;
  }

  #setState(state: DriverState, cause?: GatewayError): void {
    if (state === this.#state) return;
    this.#state = state;
    try {
      if (cause === undefined) this.#ctx.onState(state);
      else this.#ctx.onState(state, cause);
    } catch (e) {
      this.#ctx.log.error("onState listener threw", { error: message(e) });
    }
  }
}

interface Plan {
  readonly fixed?: DeviceCommandResult;
  readonly reads: readonly { readonly uri: string; readonly leaf: (typeof GATT_LEAVES)[string] }[];
}

function result(status: number): DeviceCommandResult {
  return { status, items: [], inner: [] };
}

/** What a command needs: reads for a Get of mapped leaves, else a fixed status. */
function plan(command: Command): Plan {
  switch (command.kind) {
    case "Get": {
      const reads: { uri: string; leaf: (typeof GATT_LEAVES)[string] }[] = [];
      for (const item of command.items) {
        const uri = item.target?.locUri ?? "";
        const leaf = GATT_LEAVES[uri.replace(/^\.\//, "")];
        if (leaf === undefined) return { fixed: result(404), reads: [] };
        reads.push({ uri, leaf });
      }
      return reads.length === 0 ? { fixed: result(404), reads: [] } : { reads };
    }
    case "Replace":
    case "Add":
    case "Delete":
    case "Copy":
    case "Exec":
      // GATT Device Information and Battery are read-only (design.md section 3).
      return { fixed: result(405), reads: [] };
    case "Atomic":
    case "Sequence":
    case "Alert":
    case "Results":
    case "Status":
      // Not a command a GATT device can take part in: optional feature not supported.
      return { fixed: result(406), reads: [] };
  }
}

function helperOf(o: object): WithHelper["helper"] {
  return (o as WithHelper).helper;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The org.bluez.Error.* name of a D-Bus error, when it is one. */
function dbusName(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur !== undefined && cur !== null; i++) {
    const type = (cur as { type?: unknown }).type;
    if (typeof type === "string") return type;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what}: no answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

export function createBleDriver(config: BleDriverConfig, ctx: ProxyDriverContext): BleDriver {
  return new BleDriver(config, ctx);
}
