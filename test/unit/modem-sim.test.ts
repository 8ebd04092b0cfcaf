import assert from "node:assert/strict";
import { AtSession, type AtCommand, type AtOutcome, type AtUrc } from "../../board/modem/at.js";
import { ModemSimulator } from "../../board/modem/sim.js";
import { bytesToHex, decodeSmsDeliverHex, encodeSmsDeliver } from "../../board/modem/sms-pdu.js";

/** The sans-I/O AT session wired straight to the simulator: every exchange completes synchronously. */
function wire(): { sim: ModemSimulator; run: (cmd: AtCommand) => AtOutcome; urcs: AtUrc[]; raw: string[] } {
  const urcs: AtUrc[] = [];
  const raw: string[] = [];
  const session = new AtSession();
  const outcomes = new Map<number, AtOutcome>();
  const sim = new ModemSimulator({
    write: (b) => {
      raw.push(Buffer.from(b).toString("latin1"));
      session.receive(b, 0);
      pump();
    },
  });
  const pump = (): void => {
    const step = session.drain();
    for (const c of step.completions) outcomes.set(c.id, c.outcome);
    urcs.push(...step.urcs);
    for (const w of step.writes) sim.receive(w);
  };
  const run = (cmd: AtCommand): AtOutcome => {
    const id = session.enqueue(cmd, 0);
    pump();
    const out = outcomes.get(id);
    assert.ok(out !== undefined, `no answer to ${cmd.text}`);
    return out;
  };
  return { sim, run, urcs, raw };
}

describe("ModemSimulator", () => {
  it("echoes until ATE0", () => {
    const w = wire();
    w.run({ text: "AT" });
    assert.ok(w.raw[0]?.startsWith("AT\r"));
    w.run({ text: "ATE0" });
    w.raw.length = 0;
    w.run({ text: "AT" });
    assert.deepEqual(w.raw, ["\r\nOK\r\n"]);
  });

  it("answers AT+CMGS with a `> ` prompt without line end, then +CMGS after Ctrl-Z", () => {
    const w = wire();
    w.run({ text: "AT+CMGF=0" });
    const pdu = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37";
    const out = w.run({ text: "AT+CMGS=23", body: pdu });
    assert.deepEqual(out, { kind: "ok", lines: ["+CMGS: 1"] });
    assert.ok(w.raw.includes("\r\n> "), JSON.stringify(w.raw));
    assert.deepEqual(w.sim.submitted, [pdu]);
  });

  it("refuses AT+CMGS in text mode", () => {
    const w = wire();
    assert.equal(w.run({ text: "AT+CMGS=5", body: "00" }).kind, "error");
  });

  it("stores injected SMS, announces them per AT+CNMI, and reads, lists and deletes them", () => {
    const w = wire();
    w.run({ text: "ATE0" });
    w.run({ text: "AT+CMGF=0" });
    w.sim.injectText("+4917", "silent"); // AT+CNMI mt=0: stored, not announced
    assert.equal(w.urcs.length, 0);
    w.run({ text: "AT+CNMI=2,1,0,0,0" });
    const i = w.sim.injectText("+4917", "hello");
    assert.deepEqual(
      w.urcs.map((u) => u.line),
      [`+CMTI: "SM",${String(i)}`],
    );
    const read = w.run({ text: `AT+CMGR=${String(i)}` });
    assert.ok(read.kind === "ok");
    assert.match(read.lines[0] ?? "", /^\+CMGR: 0,,\d+$/);
    assert.equal(decodeSmsDeliverHex(read.lines[1] ?? "").text, "hello");
    const list = w.run({ text: "AT+CMGL=4" });
    assert.ok(list.kind === "ok");
    assert.deepEqual(
      list.lines.filter((l) => l.startsWith("+CMGL:")).map((l) => l.split(",").slice(0, 2).join(",")),
      ["+CMGL: 1,0", "+CMGL: 2,1"],
    );
    w.run({ text: "AT+CMGD=1" });
    assert.deepEqual(w.sim.deleted, [1]);
    assert.deepEqual(w.run({ text: "AT+CMGR=1" }), {
      kind: "error",
      final: { kind: "cms", code: 321, text: "321" },
      lines: [],
    });
    w.run({ text: "AT+CMGD=0,4" }); // delete all
    assert.equal(w.sim.stored().length, 0);
  });

  it("delivers as +CMT without storing when AT+CNMI mt=2", () => {
    const w = wire();
    w.run({ text: "AT+CNMI=2,2,0,0,0" });
    const pdu = encodeSmsDeliver({ originator: "1", userData: Uint8Array.of(1) });
    assert.equal(w.sim.injectPdu(pdu), undefined);
    assert.equal(w.urcs[0]?.name, "+CMT");
    assert.equal(w.urcs[0].pdu, bytesToHex(pdu));
    assert.equal(w.sim.stored().length, 0);
  });

  it("lets a behaviour override a command, and removes it again", () => {
    const w = wire();
    const remove = w.sim.defineBehavior((cmd) => (cmd === "AT+CSQ" ? { lines: ["+CSQ: 5,99"] } : undefined));
    assert.deepEqual(w.run({ text: "AT+CSQ" }), { kind: "ok", lines: ["+CSQ: 5,99"] });
    remove();
    assert.deepEqual(w.run({ text: "AT+CSQ" }), { kind: "ok", lines: ["+CSQ: 21,99"] });
  });

  it("answers ERROR to unknown commands and a full storage throws", () => {
    const w = wire();
    assert.deepEqual(w.run({ text: "AT+NOPE" }), { kind: "error", final: { kind: "error" }, lines: [] });
    const small = new ModemSimulator({ capacity: 1 });
    small.injectText("1", "a");
    assert.throws(() => small.injectText("1", "b"), /full/);
  });
});
