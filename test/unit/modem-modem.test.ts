import assert from "node:assert/strict";
import { isGatewayError } from "../../src/core/errors.js";
import { ModemErrorCode } from "../../board/modem/errors.js";
import { memoryLinkPair, type ByteLink, type MemoryLinkPair } from "../../src/core/byte-link.js";
import { Modem, type ModemOptions, type ModemState, type WapPush } from "../../board/modem/modem.js";
import { ModemSimulator, attachSimulator, wapPushPdus } from "../../board/modem/sim.js";
import { bytesToHex, encodeSmsDeliver } from "../../board/modem/sms-pdu.js";
import { waitFor } from "../helpers/wait.js";

/** A WSP Push carrying a DM notification (protocol.md 5.3), long enough to need two SMS. */
const PUSH = Uint8Array.from([
  0x01,
  0x06,
  0x03,
  0xc4,
  0xaf,
  0x87,
  ...Array.from({ length: 200 }, (_, i) => i & 0xff),
]);

interface Harness {
  readonly sim: ModemSimulator;
  readonly modem: Modem;
  readonly pushes: WapPush[];
  readonly states: ModemState[];
  readonly links: MemoryLinkPair[];
  /** Make the next link openings fail (a vanished device). */
  failOpen: boolean;
  opens: number;
}

function harness(over: Partial<ModemOptions> = {}): Harness {
  const sim = new ModemSimulator();
  const h: Harness = {
    sim,
    pushes: [],
    states: [],
    links: [],
    failOpen: false,
    opens: 0,
    modem: undefined as unknown as Modem,
  };
  const link = (): Promise<ByteLink> => {
    h.opens++;
    if (h.failOpen) return Promise.reject(new Error("ENOENT: no such device"));
    const pair = memoryLinkPair();
    h.links.push(pair);
    attachSimulator(pair.b, sim);
    return Promise.resolve(pair.a);
  };
  (h as { modem: Modem }).modem = new Modem({
    path: "/dev/serial/by-id/usb-sim-if00",
    link,
    onPush: (p) => {
      h.pushes.push(p);
    },
    onState: (s) => {
      h.states.push(s);
    },
    commandTimeoutMs: 500,
    reconnect: { initialMs: 10, maxMs: 40, jitter: 0 },
    ...over,
  });
  return h;
}

describe("Modem (in-memory link, simulator)", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.modem.stop();
    h = undefined;
  });

  it("runs the init sequence, then lists storage", async () => {
    h = harness();
    await h.modem.start();
    assert.equal(h.modem.state, "ready");
    await h.modem.idle();
    assert.deepEqual(h.sim.commands, [
      "AT",
      "ATE0",
      "AT+CMEE=1",
      "AT+CMGF=0",
      "AT+CPMS?",
      "AT+CNMI=2,1,0,0,0",
      "AT+CMGL=4",
    ]);
    assert.deepEqual(h.states, ["starting", "ready"]);
  });

  it("selects the configured storage", async () => {
    h = harness({ storage: "SM" });
    await h.modem.start();
    assert.ok(h.sim.commands.includes('AT+CPMS="SM","SM","SM"'));
    assert.ok(!h.sim.commands.includes("AT+CPMS?"));
  });

  it("drains stored messages at start: the 2-part push once, then every slot deleted", async () => {
    h = harness();
    const [p1, p2] = wapPushPdus(PUSH);
    assert.ok(p1 !== undefined && p2 !== undefined);
    h.sim.injectPdu(p2); // stored out of order, before the gateway runs
    h.sim.injectText("+491700000009", "unrelated");
    h.sim.injectPdu(p1);
    await h.modem.start();
    await waitFor("all slots deleted", () => h?.sim.stored().length === 0);
    await h.modem.idle();
    assert.equal(h.pushes.length, 1);
    assert.equal(bytesToHex(h.pushes[0]?.data ?? new Uint8Array()), bytesToHex(PUSH));
    assert.equal(h.pushes[0]?.parts, 2);
    assert.equal(h.pushes[0].destinationPort, 2948);
    assert.equal(h.pushes[0].sourcePort, 9200);
    assert.deepEqual([...h.sim.deleted].sort(), [1, 2, 3]);
    const c = h.modem.counters;
    assert.deepEqual([c.received, c.pushes, c.ignored, c.malformed], [3, 1, 1, 0]);
  });

  it("reads messages announced by +CMTI, parts in any order", async () => {
    h = harness();
    await h.modem.start();
    await h.modem.idle();
    const parts = wapPushPdus(PUSH, { reference: 7 });
    h.sim.injectPdu(parts[1] ?? new Uint8Array());
    await waitFor("the first part read", () => h?.sim.commands.includes("AT+CMGR=1") === true);
    await h.modem.idle();
    assert.equal(h.modem.pendingPushes, 1);
    assert.equal(h.sim.stored().length, 1, "a waiting part stays in storage");
    h.sim.injectPdu(parts[0] ?? new Uint8Array());
    await waitFor("the push", () => h?.pushes.length === 1);
    await waitFor("both parts deleted", () => h?.sim.stored().length === 0);
    assert.equal(bytesToHex(h.pushes[0]?.data ?? new Uint8Array()), bytesToHex(PUSH));
    assert.equal(h.modem.pendingPushes, 0);
  });

  it("delivers a single-SMS push and deletes an SMS to another port, counting it", async () => {
    h = harness();
    await h.modem.start();
    h.sim.injectWapPush(Uint8Array.of(1, 6, 3, 0xc4), { originator: "+491701234567" });
    h.sim.injectWapPush(Uint8Array.of(9, 9), { destinationPort: 2949 });
    await waitFor("slots deleted", () => h?.sim.deleted.length === 2);
    await h.modem.idle();
    assert.equal(h.pushes.length, 1);
    assert.equal(h.pushes[0]?.originator, "+491701234567");
    assert.equal(h.modem.counters.ignored, 1);
  });

  it("deletes a duplicate part and a malformed PDU, counting both", async () => {
    h = harness();
    await h.modem.start();
    const [p1] = wapPushPdus(PUSH);
    h.sim.injectPdu(p1 ?? new Uint8Array());
    h.sim.injectPdu(p1 ?? new Uint8Array());
    const broken = encodeSmsDeliver({ originator: "1", userData: Uint8Array.of(1, 2, 3) }).subarray(0, 12);
    h.sim.injectPdu(broken);
    await waitFor("duplicate and malformed deleted", () => h?.sim.deleted.length === 2);
    await h.modem.idle();
    assert.deepEqual([...h.sim.deleted].sort(), [2, 3]);
    assert.equal(h.modem.counters.duplicates, 1);
    assert.equal(h.modem.counters.malformed, 1);
    assert.equal(h.pushes.length, 0);
    assert.equal(h.modem.pendingPushes, 1);
  });

  it("drops an incomplete push after the reassembly timeout and deletes its parts", async () => {
    h = harness({ reassembly: { timeoutMs: 50 } });
    await h.modem.start();
    h.sim.injectPdu(wapPushPdus(PUSH)[0] ?? new Uint8Array());
    await waitFor("the lone part deleted", () => h?.sim.deleted.length === 1);
    assert.equal(h.modem.counters.expired, 1);
    assert.equal(h.modem.pendingPushes, 0);
    assert.equal(h.pushes.length, 0);
  });

  it("takes a +CMT delivery (AT+CNMI mt=2) without storage", async () => {
    h = harness({ cnmi: "2,2,0,0,0" });
    await h.modem.start();
    for (const pdu of wapPushPdus(PUSH)) h.sim.injectPdu(pdu);
    await waitFor("the push", () => h?.pushes.length === 1);
    assert.equal(bytesToHex(h.pushes[0]?.data ?? new Uint8Array()), bytesToHex(PUSH));
    assert.deepEqual(h.sim.deleted, []);
  });

  it("still deletes when onPush throws, and counts the failure", async () => {
    h = harness({
      onPush: () => {
        throw new Error("consumer bug");
      },
    });
    await h.modem.start();
    h.sim.injectWapPush(Uint8Array.of(1, 6));
    await waitFor("deleted", () => h?.sim.deleted.length === 1);
    assert.equal(h.modem.counters.handlerErrors, 1);
  });

  it("deletes only after an async onPush has settled", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    h = harness({ onPush: () => gate });
    await h.modem.start();
    h.sim.injectWapPush(Uint8Array.of(1, 6));
    await waitFor("the read", () => h?.sim.commands.includes("AT+CMGR=1") === true);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(h.sim.stored().length, 1);
    release();
    await waitFor("deleted", () => h?.sim.deleted.length === 1);
  });

  it("deletes an SMS to port 2948 that is not 8-bit data, counting it as ignored", async () => {
    h = harness();
    await h.modem.start();
    h.sim.injectPdu(
      encodeSmsDeliver({ originator: "1", ports: { destination: 2948, source: 9200 }, text: "hi" }),
    );
    await waitFor("deleted", () => h?.sim.deleted.length === 1);
    assert.equal(h.pushes.length, 0);
    assert.equal(h.modem.counters.ignored, 1);
  });

  for (const cpms of ["answered", "refused"] as const) {
    it(`reads a part announced by +CMTI and listed by AT+CMGL once (AT+CPMS? ${cpms})`, async () => {
      h = harness();
      const [p1, p2] = wapPushPdus(PUSH);
      if (cpms === "refused")
        h.sim.defineBehavior((cmd) => (cmd === "AT+CPMS?" ? { final: "ERROR" } : undefined));
      // The part arrives just as the drain starts: +CMTI first, then the listing that includes it.
      const once = h.sim.defineBehavior((cmd, sim) => {
        if (cmd === "AT+CMGL=4") {
          once();
          sim.injectPdu(p1 ?? new Uint8Array());
        }
        return undefined;
      });
      await h.modem.start();
      await waitFor("the listing", () => h?.sim.commands.includes("AT+CMGL=4") === true);
      await h.modem.idle();
      assert.equal(h.modem.pendingPushes, 1);
      assert.deepEqual(h.sim.deleted, [], "the held part must not be deleted as its own duplicate");
      h.sim.injectPdu(p2 ?? new Uint8Array());
      await waitFor("the push", () => h?.pushes.length === 1);
      await waitFor("both deleted", () => h?.sim.stored().length === 0);
      assert.equal(h.modem.counters.duplicates, 0);
    });
  }

  it("start() and stop() are idempotent; stop() before start() is a no-op", async () => {
    h = harness();
    await h.modem.stop();
    await Promise.all([h.modem.start(), h.modem.start()]);
    await h.modem.start();
    assert.equal(h.opens, 1);
    await Promise.all([h.modem.stop(), h.modem.stop()]);
    await h.modem.stop();
    assert.equal(h.modem.state, "stopped");
    assert.deepEqual(h.states, ["starting", "ready", "stopping", "stopped"]);
    // And it starts again on a fresh link.
    await h.modem.start();
    assert.equal(h.opens, 2);
  });

  it("fails start() with Modem_StartFailed when the port cannot be opened, and stays stopped", async () => {
    h = harness();
    h.failOpen = true;
    await assert.rejects(h.modem.start(), (e: unknown) => {
      assert.ok(isGatewayError(e));
      assert.equal(e.code, ModemErrorCode.Modem_StartFailed);
      assert.equal(e.context?.["path"], "/dev/serial/by-id/usb-sim-if00");
      return true;
    });
    assert.equal(h.modem.state, "stopped");
    await h.modem.stop();
  });

  it("fails start() when the modem refuses PDU mode", async () => {
    h = harness();
    h.sim.defineBehavior((cmd) => (cmd === "AT+CMGF=0" ? { final: "ERROR" } : undefined));
    await assert.rejects(h.modem.start(), (e: unknown) => isGatewayError(e) && e.cause instanceof Error);
    assert.equal(h.modem.state, "stopped");
  });

  it("goes degraded on link loss and reconnects on a new link, then drains what arrived meanwhile", async () => {
    h = harness();
    await h.modem.start();
    await h.modem.idle();
    h.failOpen = true;
    h.links[0]?.sever();
    await waitFor("degraded", () => h?.modem.state === "degraded");
    await waitFor("two failed attempts", () => (h?.opens ?? 0) >= 3);
    // Messages arrive while the host is away.
    for (const pdu of wapPushPdus(PUSH)) h.sim.injectPdu(pdu);
    h.failOpen = false;
    await waitFor("ready again", () => h?.modem.state === "ready");
    await waitFor("the push", () => h?.pushes.length === 1);
    await waitFor("deleted", () => h?.sim.stored().length === 0);
    assert.equal(h.modem.counters.linkLosses, 1);
    assert.equal(h.modem.counters.reconnects, 1);
    assert.ok(h.links.length >= 2, "a new link per connection");
    assert.deepEqual(h.states.slice(0, 3), ["starting", "ready", "degraded"]);
  });

  it("treats a command timeout as a sick link and recovers on a fresh one", async () => {
    h = harness({ commandTimeoutMs: 80 });
    await h.modem.start();
    await h.modem.idle();
    const mute = h.sim.defineBehavior((cmd) => (cmd.startsWith("AT+CMGR") ? { silent: true } : undefined));
    h.sim.injectWapPush(Uint8Array.of(1, 6, 7));
    await waitFor("degraded", () => h?.modem.state === "degraded");
    mute();
    await waitFor("the push after reconnecting", () => h?.pushes.length === 1);
    assert.equal(h.pushes.length, 1);
  });

  it("stop() while reconnecting cancels the retry and leaves no timer behind", async () => {
    h = harness({ reconnect: { initialMs: 20, maxMs: 20, jitter: 0 } });
    await new Promise((r) => setImmediate(r)); // mocha arms its own test timer after the first await
    const before = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    await h.modem.start();
    h.failOpen = true;
    h.links[0]?.sever();
    await waitFor("a failed attempt", () => (h?.opens ?? 0) >= 2);
    await h.modem.stop();
    assert.equal(h.modem.state, "stopped");
    const opens = h.opens;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(h.opens, opens, "no reconnect after stop()");
    assert.equal(process.getActiveResourcesInfo().filter((r) => r === "Timeout").length, before);
  });
});
