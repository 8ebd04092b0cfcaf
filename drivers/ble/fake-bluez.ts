/**
 * A fake `org.bluez` on a D-Bus system bus (platform.md 6, option B): the BlueZ objects node-ble
 * talks to, exported with dbus-next's service API, so tests and benchmarks run the real node-ble and
 * dbus-next code without a radio. It is also the device side of the BLE simulator (sim.ts).
 *
 *   /org/bluez                         org.bluez.AgentManager1
 *   /org/bluez/hci0                    org.bluez.Adapter1     SetDiscoveryFilter, Start/StopDiscovery, RemoveDevice
 *   /org/bluez/hci0/dev_AA_BB_..       org.bluez.Device1      Connect, Disconnect; Connected, ServicesResolved, UUIDs
 *   .../dev_../serviceXXXX             org.bluez.GattService1 UUID, Primary, Device
 *   .../serviceXXXX/charYYYY           org.bluez.GattCharacteristic1 ReadValue, WriteValue, Start/StopNotify;
 *                                      Value + PropertiesChanged (a notification, as BlueZ sends it), MTU
 *
 * As BlueZ does: a device object appears `discoveryDelayMs` after StartDiscovery when it matches the
 * discovery filter's UUIDs; `ServicesResolved` turns true `resolveDelayMs` after Connect. Failures a
 * field device shows: latency on every call, link loss (`dropLink`: Connected and ServicesResolved
 * flip false), an unreachable device (Connect fails `org.bluez.Error.Failed`), write errors
 * (`failWrites`: the next writes fail with the org.bluez.Error you name), and a controller limit on
 * connections (`maxConnections`; peak connections are counted, the pool tests' oracle).
 *
 * The bus is the one `DBUS_SYSTEM_BUS_ADDRESS` names (dbus-next's `systemBus()`); tests point it at a
 * private dbus-daemon (test/helpers/dbus.ts).
 */
import { DBusError, interface as dbusInterface, systemBus, type MessageBus } from "dbus-next";

const { Interface } = dbusInterface;

export interface FakeCharacteristicSpec {
  readonly uuid: string;
  /** BlueZ flags: read, write, write-without-response, notify. */
  readonly flags: readonly string[];
  /** Initial value (what ReadValue returns unless `read` is given). */
  readonly value?: Uint8Array;
  /** Computes the value on each read. */
  readonly read?: () => Uint8Array;
}

export interface FakeServiceSpec {
  readonly uuid: string;
  readonly characteristics: readonly FakeCharacteristicSpec[];
}

export interface FakeDeviceSpec {
  /** MAC, upper case `AA:BB:CC:DD:EE:FF`. */
  readonly address: string;
  readonly name?: string;
  readonly services: readonly FakeServiceSpec[];
  /** Advertised service UUIDs (Device1.UUIDs); default the services' UUIDs. */
  readonly advertised?: readonly string[];
  /** ATT MTU the link negotiates; default 23. */
  readonly mtu?: number;
  /** Delay of each call to this device, ms; default the fake's `latencyMs`. */
  readonly latencyMs?: number;
  /** Called with each accepted write (after latency), characteristic UUID and value. */
  readonly onWrite?: (charUuid: string, value: Uint8Array) => void;
  /** Called when the link goes down (Disconnect or `dropLink`). */
  readonly onDisconnect?: () => void;
}

export interface FakeBluezOptions {
  /** Adapter name; default `hci0`. */
  readonly adapter?: string;
  readonly adapterAddress?: string;
  /** Default 50 ms. */
  readonly discoveryDelayMs?: number;
  /** Default 20 ms. */
  readonly resolveDelayMs?: number;
  /** Default delay of every device call, ms; default 0. */
  readonly latencyMs?: number;
  /** Connections the controller accepts at once; default unlimited. */
  readonly maxConnections?: number;
}

const BLUEZ = "org.bluez";

class AgentManagerIface extends Interface {
  RegisterAgent(): void {
    // accepted, unused
  }
}
AgentManagerIface.configureMembers({ methods: { RegisterAgent: { inSignature: "os" } } });

class AdapterIface extends Interface {
  Address = "00:01:02:03:04:05";
  AddressType = "public";
  Name = "dmgw-fake";
  Alias = "dmgw-fake";
  Powered = true;
  Discovering = false;
  constructor(private readonly fake: FakeBluez) {
    super("org.bluez.Adapter1");
  }
  SetDiscoveryFilter(filter: Record<string, { value: unknown }>): void {
    const uuids = filter["UUIDs"]?.value;
    this.fake.setFilter(Array.isArray(uuids) ? uuids.map((u) => String(u).toLowerCase()) : []);
  }
  StartDiscovery(): void {
    if (this.Discovering) throw new DBusError("org.bluez.Error.InProgress", "Operation already in progress");
    this.Discovering = true;
    Interface.emitPropertiesChanged(this, { Discovering: true }, []);
    this.fake.discoveryStarted();
  }
  StopDiscovery(): void {
    if (!this.Discovering) throw new DBusError("org.bluez.Error.Failed", "No discovery started");
    this.Discovering = false;
    Interface.emitPropertiesChanged(this, { Discovering: false }, []);
  }
  RemoveDevice(path: string): void {
    this.fake.removeByPath(path);
  }
}
AdapterIface.configureMembers({
  properties: {
    Address: { signature: "s", access: "read" },
    AddressType: { signature: "s", access: "read" },
    Name: { signature: "s", access: "read" },
    Alias: { signature: "s", access: "read" },
    Powered: { signature: "b", access: "read" },
    Discovering: { signature: "b", access: "read" },
  },
  methods: {
    SetDiscoveryFilter: { inSignature: "a{sv}" },
    StartDiscovery: {},
    StopDiscovery: {},
    RemoveDevice: { inSignature: "o" },
  },
});

class DeviceIface extends Interface {
  Address: string;
  AddressType = "public";
  Name: string;
  Alias: string;
  RSSI = -60;
  Paired = false;
  Connected = false;
  ServicesResolved = false;
  UUIDs: string[];
  Adapter: string;
  constructor(
    private readonly device: FakeDevice,
    adapterPath: string,
  ) {
    super("org.bluez.Device1");
    this.Address = device.spec.address;
    this.Name = device.spec.name ?? device.spec.address;
    this.Alias = this.Name;
    this.UUIDs = [...(device.spec.advertised ?? device.spec.services.map((s) => s.uuid))];
    this.Adapter = adapterPath;
  }
  async Connect(): Promise<void> {
    await this.device.connect();
  }
  async Disconnect(): Promise<void> {
    await this.device.delay();
    this.device.linkDown();
  }
}
DeviceIface.configureMembers({
  properties: {
    Address: { signature: "s", access: "read" },
    AddressType: { signature: "s", access: "read" },
    Name: { signature: "s", access: "read" },
    Alias: { signature: "s", access: "read" },
    RSSI: { signature: "n", access: "read" },
    Paired: { signature: "b", access: "read" },
    Connected: { signature: "b", access: "read" },
    ServicesResolved: { signature: "b", access: "read" },
    UUIDs: { signature: "as", access: "read" },
    Adapter: { signature: "o", access: "read" },
  },
  methods: { Connect: {}, Disconnect: {} },
});

class ServiceIface extends Interface {
  UUID: string;
  Primary = true;
  Device: string;
  constructor(uuid: string, devicePath: string) {
    super("org.bluez.GattService1");
    this.UUID = uuid;
    this.Device = devicePath;
  }
}
ServiceIface.configureMembers({
  properties: {
    UUID: { signature: "s", access: "read" },
    Primary: { signature: "b", access: "read" },
    Device: { signature: "o", access: "read" },
  },
});

class CharacteristicIface extends Interface {
  UUID: string;
  Service: string;
  Flags: string[];
  Notifying = false;
  #value: Buffer;
  constructor(
    private readonly device: FakeDevice,
    readonly spec: FakeCharacteristicSpec,
    servicePath: string,
  ) {
    super("org.bluez.GattCharacteristic1");
    this.UUID = spec.uuid;
    this.Service = servicePath;
    this.Flags = [...spec.flags];
    this.#value = Buffer.from(spec.value ?? new Uint8Array(0));
  }
  get Value(): Buffer {
    return this.#value;
  }
  get MTU(): number {
    return this.device.mtu;
  }
  async ReadValue(): Promise<Buffer> {
    await this.device.delay();
    this.device.checkLink();
    if (!this.spec.flags.includes("read"))
      throw new DBusError("org.bluez.Error.NotPermitted", "Read not permitted");
    if (this.spec.read !== undefined) this.#value = Buffer.from(this.spec.read());
    return this.#value;
  }
  async WriteValue(value: Buffer): Promise<void> {
    await this.device.delay();
    this.device.checkLink();
    if (!this.spec.flags.includes("write") && !this.spec.flags.includes("write-without-response")) {
      throw new DBusError("org.bluez.Error.NotPermitted", "Write not permitted");
    }
    if (value.length > this.device.mtu - 3) {
      throw new DBusError("org.bluez.Error.InvalidValueLength", `${value.length} bytes over ATT_MTU - 3`);
    }
    this.device.takeWriteError();
    this.#value = Buffer.from(value);
    this.device.spec.onWrite?.(this.spec.uuid, Uint8Array.from(value));
  }
  async StartNotify(): Promise<void> {
    await this.device.delay();
    this.device.checkLink();
    if (!this.spec.flags.includes("notify")) throw new DBusError("org.bluez.Error.NotSupported", "No notify");
    if (this.Notifying) return;
    this.Notifying = true;
    Interface.emitPropertiesChanged(this, { Notifying: true }, []);
  }
  StopNotify(): void {
    if (!this.Notifying) return;
    this.Notifying = false;
    Interface.emitPropertiesChanged(this, { Notifying: false }, []);
  }
  /** A notification: the new Value in PropertiesChanged, only while notifying. */
  notify(value: Uint8Array): boolean {
    if (!this.Notifying) return false;
    this.#value = Buffer.from(value);
    Interface.emitPropertiesChanged(this, { Value: this.#value }, []);
    return true;
  }
}
CharacteristicIface.configureMembers({
  properties: {
    UUID: { signature: "s", access: "read" },
    Service: { signature: "o", access: "read" },
    Flags: { signature: "as", access: "read" },
    Notifying: { signature: "b", access: "read" },
    Value: { signature: "ay", access: "read" },
    MTU: { signature: "q", access: "read" },
  },
  methods: {
    ReadValue: { inSignature: "a{sv}", outSignature: "ay" },
    WriteValue: { inSignature: "aya{sv}" },
    StartNotify: {},
    StopNotify: {},
  },
});

/** One device of the fake: its objects, its link state and its failure switches. */
export class FakeDevice {
  readonly spec: FakeDeviceSpec;
  readonly path: string;
  readonly #fake: FakeBluez;
  readonly #device: DeviceIface;
  readonly #objects: { path: string; iface: InstanceType<typeof Interface> }[] = [];
  readonly #chars = new Map<string, CharacteristicIface>();
  #exported = false;
  #reachable = true;
  #writeErrors: string[] = [];
  #resolveTimer: NodeJS.Timeout | undefined;
  /** Connect calls accepted. */
  connects = 0;
  /** Writes accepted. */
  writes = 0;

  constructor(fake: FakeBluez, spec: FakeDeviceSpec, adapterPath: string) {
    this.#fake = fake;
    this.spec = spec;
    this.path = `${adapterPath}/dev_${spec.address.toUpperCase().replace(/:/g, "_")}`;
    this.#device = new DeviceIface(this, adapterPath);
    this.#objects.push({ path: this.path, iface: this.#device });
    let handle = 0x10;
    for (const s of spec.services) {
      const servicePath = `${this.path}/service${hex4(handle++)}`;
      this.#objects.push({ path: servicePath, iface: new ServiceIface(s.uuid, this.path) });
      for (const c of s.characteristics) {
        const charPath = `${servicePath}/char${hex4(handle++)}`;
        const iface = new CharacteristicIface(this, c, servicePath);
        this.#chars.set(c.uuid, iface);
        this.#objects.push({ path: charPath, iface });
      }
    }
  }

  get address(): string {
    return this.spec.address;
  }

  get connected(): boolean {
    return this.#device.Connected;
  }

  get exported(): boolean {
    return this.#exported;
  }

  get mtu(): number {
    return this.spec.mtu ?? 23;
  }

  get uuids(): readonly string[] {
    return this.#device.UUIDs;
  }

  export(bus: MessageBus): void {
    if (this.#exported) return;
    for (const o of this.#objects) bus.export(o.path, o.iface);
    this.#exported = true;
  }

  unexport(bus: MessageBus): void {
    if (!this.#exported) return;
    this.linkDown();
    for (const o of [...this.#objects].reverse()) bus.unexport(o.path, o.iface);
    this.#exported = false;
  }

  /** Reachable devices accept Connect; an unreachable one fails it (out of range, powered off). */
  setReachable(reachable: boolean): void {
    this.#reachable = reachable;
  }

  /** The next `count` writes fail with `errorName` (an org.bluez.Error.*). */
  failWrites(count: number, errorName = "org.bluez.Error.Failed"): void {
    for (let i = 0; i < count; i++) this.#writeErrors.push(errorName);
  }

  /** Sends a notification on `charUuid`; false when the central is not subscribed. */
  notify(charUuid: string, value: Uint8Array): boolean {
    return this.#chars.get(charUuid)?.notify(value) ?? false;
  }

  /** Link loss: Connected and ServicesResolved flip false, as BlueZ reports a supervision timeout. */
  linkDown(): void {
    clearTimeout(this.#resolveTimer);
    this.#resolveTimer = undefined;
    if (!this.#device.Connected && !this.#device.ServicesResolved) return;
    for (const c of this.#chars.values()) c.StopNotify();
    const wasConnected = this.#device.Connected;
    this.#device.Connected = false;
    this.#device.ServicesResolved = false;
    Interface.emitPropertiesChanged(this.#device, { ServicesResolved: false, Connected: false }, []);
    if (wasConnected) this.#fake.connectionClosed();
    try {
      this.spec.onDisconnect?.();
    } catch {
      // a simulator's hook must not break the fake's D-Bus handler
    }
  }

  async connect(): Promise<void> {
    await this.delay();
    if (!this.#reachable) throw new DBusError("org.bluez.Error.Failed", "le-connection-abort-by-local");
    if (this.#device.Connected) return;
    this.#fake.connectionOpening();
    this.connects++;
    this.#device.Connected = true;
    Interface.emitPropertiesChanged(this.#device, { Connected: true }, []);
    this.#resolveTimer = setTimeout(() => {
      this.#resolveTimer = undefined;
      if (!this.#device.Connected) return;
      this.#device.ServicesResolved = true;
      Interface.emitPropertiesChanged(this.#device, { ServicesResolved: true }, []);
    }, this.#fake.resolveDelayMs);
  }

  checkLink(): void {
    if (!this.#device.Connected) throw new DBusError("org.bluez.Error.NotConnected", "Not Connected");
  }

  takeWriteError(): void {
    const e = this.#writeErrors.shift();
    if (e !== undefined) throw new DBusError(e, "simulated write error");
    this.writes++;
  }

  delay(): Promise<void> {
    const ms = this.spec.latencyMs ?? this.#fake.latencyMs;
    return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
  }
}

/** The fake BlueZ daemon: one adapter, any number of devices. */
export class FakeBluez {
  readonly adapterPath: string;
  readonly resolveDelayMs: number;
  readonly latencyMs: number;
  readonly #o: FakeBluezOptions;
  readonly #devices = new Map<string, FakeDevice>();
  readonly #adapter: AdapterIface;
  #bus: MessageBus | undefined;
  #filter: readonly string[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #connected = 0;
  #peak = 0;
  /** Connect calls refused by `maxConnections`. */
  refusedConnections = 0;

  constructor(options: FakeBluezOptions = {}) {
    this.#o = options;
    this.adapterPath = `/org/bluez/${options.adapter ?? "hci0"}`;
    this.resolveDelayMs = options.resolveDelayMs ?? 20;
    this.latencyMs = options.latencyMs ?? 0;
    this.#adapter = new AdapterIface(this);
    if (options.adapterAddress !== undefined) this.#adapter.Address = options.adapterAddress;
  }

  /** Devices connected now. */
  get connectedNow(): number {
    return this.#connected;
  }

  /** The most devices connected at once since start (or `resetPeak`). */
  get connectedPeak(): number {
    return this.#peak;
  }

  resetPeak(): void {
    this.#peak = this.#connected;
  }

  get discovering(): boolean {
    return this.#adapter.Discovering;
  }

  /** Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`) and owns `org.bluez`. */
  async start(): Promise<void> {
    const bus = systemBus();
    bus.on("error", () => {
      // the daemon went away (a test cut the bus); stop() cleans up
    });
    this.#bus = bus;
    bus.export("/org/bluez", new AgentManagerIface("org.bluez.AgentManager1"));
    bus.export(this.adapterPath, this.#adapter);
    const reply = await bus.requestName(BLUEZ, 4 /* DO_NOT_QUEUE */);
    if (reply !== 1) throw new Error(`org.bluez is taken on this bus (reply ${reply})`);
  }

  /** Disconnects from the bus; idempotent. */
  stop(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const d of this.#devices.values()) d.linkDown();
    const bus = this.#bus;
    this.#bus = undefined;
    this.#adapter.Discovering = false;
    // dbus-next still dispatches a call that arrives after disconnect() and throws out of its
    // socket listener when it answers on the ended stream: stop listening first.
    (
      bus as unknown as { _connection?: { removeAllListeners(event: string): void } } | undefined
    )?._connection?.removeAllListeners("message");
    if (bus !== undefined) bus.disconnect();
    return Promise.resolve();
  }

  addDevice(spec: FakeDeviceSpec): FakeDevice {
    const device = new FakeDevice(this, spec, this.adapterPath);
    this.#devices.set(spec.address.toUpperCase(), device);
    if (this.#adapter.Discovering) this.#scheduleExport(device);
    return device;
  }

  device(address: string): FakeDevice | undefined {
    return this.#devices.get(address.toUpperCase());
  }

  get devices(): readonly FakeDevice[] {
    return [...this.#devices.values()];
  }

  /** The device leaves (out of range for good): its objects vanish from the bus. */
  removeDevice(address: string): void {
    const device = this.#devices.get(address.toUpperCase());
    if (device === undefined) return;
    if (this.#bus !== undefined) device.unexport(this.#bus);
    this.#devices.delete(address.toUpperCase());
  }

  /** @internal Adapter1.RemoveDevice: the object goes, the device may be found again. */
  removeByPath(path: string): void {
    for (const d of this.#devices.values()) {
      if (d.path === path && this.#bus !== undefined) d.unexport(this.#bus);
    }
  }

  /** @internal */
  setFilter(uuids: readonly string[]): void {
    this.#filter = uuids;
  }

  /** @internal */
  discoveryStarted(): void {
    for (const d of this.#devices.values()) this.#scheduleExport(d);
  }

  /** @internal */
  connectionOpening(): void {
    const max = this.#o.maxConnections;
    if (max !== undefined && this.#connected >= max) {
      this.refusedConnections++;
      throw new DBusError("org.bluez.Error.Failed", "le-connection-abort-by-local: controller limit");
    }
    this.#connected++;
    this.#peak = Math.max(this.#peak, this.#connected);
  }

  /** @internal */
  connectionClosed(): void {
    this.#connected = Math.max(0, this.#connected - 1);
  }

  #matches(device: FakeDevice): boolean {
    return this.#filter.length === 0 || device.uuids.some((u) => this.#filter.includes(u.toLowerCase()));
  }

  #scheduleExport(device: FakeDevice): void {
    if (device.exported || !this.#matches(device)) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#bus !== undefined && this.#adapter.Discovering) device.export(this.#bus);
    }, this.#o.discoveryDelayMs ?? 50);
    this.#timers.add(timer);
  }
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}
