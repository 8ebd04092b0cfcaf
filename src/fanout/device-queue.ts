/**
 * The devices of a job waiting to start: one FIFO lane per transport, taken in turn. A transport at
 * its session limit is skipped in O(1) (one scan over the whole line per start made a 10,000-device
 * job quadratic), and taking turns spreads the window over the transports instead of filling it with
 * whichever comes first in the group. A retry goes to the front of its lane.
 */
export interface QueuedDevice<T> {
  /** The lane: the device's transport, `undefined` for a device not in the inventory. */
  readonly lane: T | undefined;
}

interface Lane<D> {
  /** Taken slots are cleared (undefined) so a taken device can be collected. */
  readonly items: (D | undefined)[];
  head: number;
  /** Retries, taken before `items` (last in, first out is fine: they are all overdue). */
  readonly front: D[];
}

export class DeviceQueue<T, D extends QueuedDevice<T>> {
  readonly #lanes = new Map<T | undefined, Lane<D>>();
  #order: (T | undefined)[] = [];
  #next = 0;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(device: D): void {
    this.#lane(device.lane).items.push(device);
    this.#size++;
  }

  /** Back to the front of its lane (a retry whose backoff is over). */
  unshift(device: D): void {
    this.#lane(device.lane).front.push(device);
    this.#size++;
  }

  /** The next device of the lanes `open` allows, taking lanes in turn; undefined when none. */
  take(open: (lane: T | undefined) => boolean): D | undefined {
    const n = this.#order.length;
    for (let k = 0; k < n; k++) {
      const key = this.#order[(this.#next + k) % n];
      const lane = this.#lanes.get(key);
      if (lane === undefined || !open(key)) continue;
      let device = lane.front.pop();
      if (device === undefined) {
        device = lane.items[lane.head];
        if (device === undefined) continue;
        lane.items[lane.head] = undefined;
        lane.head++;
        if (lane.head === lane.items.length) {
          lane.items.length = 0;
          lane.head = 0;
        }
      }
      this.#size--;
      this.#next = (this.#next + k + 1) % n;
      return device;
    }
    return undefined;
  }

  /** Every device still queued, emptying the queue. */
  drain(): D[] {
    const out: D[] = [];
    for (const lane of this.#lanes.values()) {
      out.push(...lane.front.splice(0).reverse());
      for (let i = lane.head; i < lane.items.length; i++) {
        const d = lane.items[i];
        if (d !== undefined) out.push(d);
      }
      lane.items.length = 0;
      lane.head = 0;
    }
    this.#size = 0;
    return out;
  }

  #lane(key: T | undefined): Lane<D> {
    let lane = this.#lanes.get(key);
    if (lane === undefined) {
      lane = { items: [], head: 0, front: [] };
      this.#lanes.set(key, lane);
      this.#order = [...this.#lanes.keys()];
    }
    return lane;
  }
}
