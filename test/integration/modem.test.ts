/**
 * The real Modem on one end of a socat pty pair, the simulator on the other (platform.md 3 and 10).
 * socat is required: a missing socat fails with the install hint.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { openSerialLink, type ByteLink } from "../../src/core/byte-link.js";
import { Modem, type ModemState, type WapPush } from "../../board/modem/modem.js";
import { ModemSimulator, attachSimulator, wapPushPdus } from "../../board/modem/sim.js";
import { bytesToHex } from "../../board/modem/sms-pdu.js";
import { processAlive, startPtyPair, type PtyPair } from "../helpers/pty.js";
import { ptyFds, waitFor } from "../helpers/wait.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** WSP Push (TID 1, Push, Content-Type 0xC4 application/vnd.syncml.notification, X-Wap-Application-Id
 * syncml.dm) and a 180-byte body: 2 SMS with 128 octets each at most. */
const PUSH = Uint8Array.from([
  0x01,
  0x06,
  0x03,
  0xc4,
  0xaf,
  0x87,
  ...Array.from({ length: 180 }, (_, i) => (i * 7) & 0xff),
]);

describe("Modem over a socat pty pair", function () {
  this.timeout(20_000);

  let pty: PtyPair | undefined;
  let simLink: ByteLink | undefined;
  let modem: Modem | undefined;
  let child: ChildProcess | undefined;
  let dir: string | undefined;

  afterEach(async () => {
    await modem?.stop();
    await simLink?.close();
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      process.kill(child.pid, "SIGTERM");
      await exited;
    }
    await pty?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
    modem = undefined;
    simLink = undefined;
    child = undefined;
    pty = undefined;
  });

  it("delivers a 2-part WAP Push to port 2948 once, deletes every stored message, and stops clean", async () => {
    await new Promise((r) => setImmediate(r)); // mocha arms its test timer after the first await
    const ptysBefore = ptyFds();
    const resourcesBefore = process.getActiveResourcesInfo();
    pty = await startPtyPair();
    simLink = await openSerialLink({ path: pty.b });
    const { sim } = attachSimulator(simLink);
    const pushes: WapPush[] = [];
    const states: ModemState[] = [];
    modem = new Modem({
      path: pty.a,
      onPush: (p) => {
        pushes.push(p);
      },
      onState: (s) => {
        states.push(s);
      },
    });
    await modem.start();
    assert.equal(modem.state, "ready");

    const [part1, part2] = wapPushPdus(PUSH, { originator: "+491729876543", reference: 0x3f });
    assert.ok(part1 !== undefined && part2 !== undefined);
    const i2 = sim.injectPdu(part2); // the second part first
    const iText = sim.injectText("+491701112233", "Lunch at 12?");
    const i1 = sim.injectPdu(part1);

    await waitFor("the push", () => pushes.length === 1);
    await waitFor("every slot deleted", () => sim.stored().length === 0);
    await modem.idle();
    await new Promise((r) => setTimeout(r, 100)); // room for a second delivery, which must not come
    assert.equal(pushes.length, 1);
    assert.equal(bytesToHex(pushes[0]?.data ?? new Uint8Array()), bytesToHex(PUSH));
    assert.equal(pushes[0]?.originator, "+491729876543");
    assert.equal(pushes[0].destinationPort, 2948);
    assert.equal(pushes[0].parts, 2);
    assert.deepEqual([...sim.deleted].sort(), [i1, i2, iText].sort());
    assert.ok(sim.commands.includes("AT+CMGF=0") && sim.commands.includes("AT+CNMI=2,1,0,0,0"));
    assert.equal(modem.counters.ignored, 1);
    assert.equal(modem.counters.pushes, 1);

    await modem.stop();
    assert.equal(modem.state, "stopped");
    assert.deepEqual(states, ["starting", "ready", "stopping", "stopped"]);
    await simLink.close();
    const pid = pty.pid;
    await pty.stop();
    assert.equal(processAlive(pid), false, `socat (PID ${pid}) still running`);
    assert.deepEqual(ptyFds(), ptysBefore, "a serial port outlived stop()");
    // No child process, pipe or timer of ours is left (handles go a loop phase after their events).
    const count = (kind: string, list: readonly string[]): number => list.filter((r) => r === kind).length;
    const leftovers = (): string[] => {
      const now = process.getActiveResourcesInfo();
      return ["ProcessWrap", "PipeWrap", "Timeout"].filter((k) => count(k, now) > count(k, resourcesBefore));
    };
    await waitFor("no handle left", () => leftovers().length === 0, 500).catch(() => undefined);
    assert.deepEqual(leftovers(), []);
  });

  it("drains messages stored before start with AT+CMGL=4", async () => {
    pty = await startPtyPair();
    simLink = await openSerialLink({ path: pty.b });
    const { sim } = attachSimulator(simLink);
    for (const pdu of wapPushPdus(PUSH)) sim.injectPdu(pdu);
    sim.injectText("Operator", "Your bill is ready");
    const pushes: WapPush[] = [];
    modem = new Modem({
      path: pty.a,
      onPush: (p) => {
        pushes.push(p);
      },
    });
    await modem.start();
    await waitFor("every slot deleted", () => sim.stored().length === 0);
    await modem.idle();
    assert.equal(pushes.length, 1);
    assert.equal(bytesToHex(pushes[0]?.data ?? new Uint8Array()), bytesToHex(PUSH));
    assert.ok(sim.commands.includes("AT+CMGL=4"));
  });

  it("goes degraded when the pty vanishes and recreates the port when it is back", async () => {
    dir = mkdtempSync(join(tmpdir(), "dmgw-modem-"));
    pty = await startPtyPair({ dir });
    simLink = await openSerialLink({ path: pty.b });
    const sim = new ModemSimulator();
    attachSimulator(simLink, sim);
    const pushes: WapPush[] = [];
    modem = new Modem({
      path: pty.a,
      onPush: (p) => {
        pushes.push(p);
      },
      reconnect: { initialMs: 50, maxMs: 200 },
    });
    await modem.start();
    await modem.idle();

    const first = pty;
    await first.stop(); // the cable is pulled: socat gone, the links dangle
    await waitFor("degraded", () => modem?.state === "degraded");
    await simLink.close();

    pty = await startPtyPair({ dir });
    simLink = await openSerialLink({ path: pty.b });
    attachSimulator(simLink, sim); // the same modem (and storage) on the new cable
    await waitFor("ready again", () => modem?.state === "ready", 10_000);
    sim.injectWapPush(PUSH);
    await waitFor("the push after the reconnect", () => pushes.length === 1);
    assert.equal(modem.counters.linkLosses, 1);
    assert.equal(modem.counters.reconnects, 1);
  });

  it("works with the simulator as its own process", async () => {
    pty = await startPtyPair();
    const proc = spawn(process.execPath, ["--import", "tsx", "board/modem/sim.ts", pty.b], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "inherit"],
    });
    child = proc;
    const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, "ready");
    const pushes: WapPush[] = [];
    modem = new Modem({
      path: pty.a,
      onPush: (p) => {
        pushes.push(p);
      },
    });
    await modem.start();
    proc.stdin.write(`push ${bytesToHex(PUSH)} +491705550000 100\n`);
    assert.equal((await lines.next()).value, "stored 1,2");
    proc.stdin.write("text +491700000000 hello\n");
    assert.equal((await lines.next()).value, "stored 3");
    await waitFor("the push", () => pushes.length === 1);
    assert.equal(bytesToHex(pushes[0]?.data ?? new Uint8Array()), bytesToHex(PUSH));
    await waitFor("slots emptied", () => modem?.counters.ignored === 1);
    await modem.idle();
    proc.stdin.write("list\n");
    assert.equal((await lines.next()).value, "slots ");
    proc.stdin.end(); // the simulator exits when its stdin ends
    await once(proc, "exit");
  });
});
