import assert from "node:assert/strict";
import {
  AtParser,
  AtSession,
  CTRL_Z,
  ESC,
  parseCmti,
  parseFinal,
  parseStoredPdus,
  splitParams,
  type AtEvent,
  type AtStep,
} from "../../board/modem/at.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => Buffer.from(b).toString("latin1");
const writesOf = (step: AtStep): string[] => step.writes.map(dec);

function pushAll(p: AtParser, chunks: readonly string[]): AtEvent[] {
  return chunks.flatMap((c) => p.push(enc(c)));
}

/** Every way of cutting `text` into two chunks, plus byte-by-byte. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], Array.from({ length: text.length }, (_, i) => text.charAt(i))];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

describe("AtParser", () => {
  it("classifies final results, information lines and URCs", () => {
    const events = pushAll(new AtParser(), [
      '\r\n+CPMS: "SM",0,30\r\n\r\nOK\r\n',
      "\r\nERROR\r\n",
      "\r\n+CME ERROR: 10\r\n",
      "\r\n+CMS ERROR: 321\r\n",
      "\r\n+CME ERROR: SIM not inserted\r\n",
      '\r\n+CMTI: "SM",3\r\n',
      "\r\nRING\r\n",
    ]);
    assert.deepEqual(events, [
      { type: "info", line: '+CPMS: "SM",0,30' },
      { type: "final", final: { kind: "ok" }, line: "OK" },
      { type: "final", final: { kind: "error" }, line: "ERROR" },
      { type: "final", final: { kind: "cme", code: 10, text: "10" }, line: "+CME ERROR: 10" },
      { type: "final", final: { kind: "cms", code: 321, text: "321" }, line: "+CMS ERROR: 321" },
      {
        type: "final",
        final: { kind: "cme", code: undefined, text: "SIM not inserted" },
        line: "+CME ERROR: SIM not inserted",
      },
      { type: "urc", urc: { name: "+CMTI", line: '+CMTI: "SM",3', pdu: undefined } },
      { type: "urc", urc: { name: "RING", line: "RING", pdu: undefined } },
    ]);
  });

  it("sees the `> ` prompt with no line end after it", () => {
    assert.deepEqual(pushAll(new AtParser(), ["\r\n> "]), [{ type: "prompt" }]);
  });

  it("sees the prompt however the chunks are cut, and nothing twice", () => {
    for (const chunks of splits("\r\n> ")) {
      assert.deepEqual(pushAll(new AtParser(), chunks), [{ type: "prompt" }], JSON.stringify(chunks));
    }
  });

  it("does not take a lone `>` for the prompt until the space comes", () => {
    const p = new AtParser();
    assert.deepEqual(p.push(enc("\r\n>")), []);
    assert.deepEqual(p.push(enc(" ")), [{ type: "prompt" }]);
    assert.equal(p.buffered, 0);
  });

  it("joins a response split at every byte into the same events", () => {
    const text = '\r\n+CMGR: 0,,5\r\n0011223344\r\n\r\nOK\r\n\r\n+CMTI: "SM",4\r\n';
    const whole = pushAll(new AtParser(), [text]);
    assert.equal(whole.length, 4);
    for (const chunks of splits(text)) assert.deepEqual(pushAll(new AtParser(), chunks), whole);
  });

  it("pairs a two-line +CMT URC with its PDU line, even across chunks", () => {
    const p = new AtParser();
    assert.deepEqual(p.push(enc("\r\n+CMT: ,24\r\n")), []);
    assert.deepEqual(p.push(enc("0791AABB\r\n")), [
      { type: "urc", urc: { name: "+CMT", line: "+CMT: ,24", pdu: "0791AABB" } },
    ]);
  });

  it("accepts bare CR or LF line ends", () => {
    assert.deepEqual(
      pushAll(new AtParser(), ["OK\rOK\nOK\r\n"]).map((e) => e.type),
      ["final", "final", "final"],
    );
  });

  it("discards an over-long line, reports it, and recovers at the next line end", () => {
    const p = new AtParser({ maxLineLength: 16 });
    const first = p.push(enc("X".repeat(20)));
    assert.equal(first.length, 1);
    assert.ok(first[0]?.type === "discarded");
    assert.equal(first[0].discard.bytes.length, 20);
    assert.deepEqual(p.push(enc("YYYY\r\nOK\r\n")), [{ type: "final", final: { kind: "ok" }, line: "OK" }]);
  });

  it("parseFinal leaves other lines alone", () => {
    assert.equal(parseFinal("+CMGS: 4"), undefined);
    assert.equal(parseFinal("OKAY"), undefined);
  });
});

describe("AtSession", () => {
  it("writes one command at a time and collects its lines", () => {
    const s = new AtSession();
    const a = s.enqueue({ text: "AT+CPMS?" }, 0);
    const b = s.enqueue({ text: "AT+CMGL=4" }, 0);
    assert.deepEqual(writesOf(s.drain()), ["AT+CPMS?\r"]);
    assert.equal(s.queued, 1);
    s.receive(enc('\r\n+CPMS: "SM",1,30\r\n\r\nOK\r\n'), 10);
    const step = s.drain();
    assert.deepEqual(step.completions, [
      { id: a, command: { text: "AT+CPMS?" }, outcome: { kind: "ok", lines: ['+CPMS: "SM",1,30'] } },
    ]);
    assert.deepEqual(writesOf(step), ["AT+CMGL=4\r"]);
    s.receive(enc("\r\n+CMS ERROR: 302\r\n"), 20);
    const second = s.drain().completions[0];
    assert.equal(second?.id, b);
    assert.deepEqual(second.outcome, {
      kind: "error",
      final: { kind: "cms", code: 302, text: "302" },
      lines: [],
    });
    assert.equal(s.busy, false);
  });

  it("passes URCs that arrive between and inside responses, keeping them out of the lines", () => {
    const s = new AtSession();
    s.enqueue({ text: "AT+CMGR=1" }, 0);
    s.drain();
    s.receive(enc('\r\n+CMTI: "SM",2\r\n\r\n+CMGR: 0,,3\r\n\r\n+CMTI: "SM",3\r\n001122\r\n\r\nOK\r\n'), 1);
    const step = s.drain();
    assert.deepEqual(
      step.urcs.map((u) => u.line),
      ['+CMTI: "SM",2', '+CMTI: "SM",3'],
    );
    assert.deepEqual(step.completions[0]?.outcome, { kind: "ok", lines: ["+CMGR: 0,,3", "001122"] });
    s.receive(enc('\r\n+CMTI: "SM",4\r\n'), 2);
    assert.deepEqual(
      s.drain().urcs.map((u) => u.line),
      ['+CMTI: "SM",4'],
    );
  });

  it("answers the prompt with the body and Ctrl-Z, then waits for the final", () => {
    const s = new AtSession();
    s.enqueue({ text: "AT+CMGS=5", body: "0011AABBCC" }, 0);
    assert.deepEqual(writesOf(s.drain()), ["AT+CMGS=5\r"]);
    s.receive(enc("\r\n> "), 1);
    assert.deepEqual(writesOf(s.drain()), [`0011AABBCC${String.fromCharCode(CTRL_Z)}`]);
    s.receive(enc("\r\n+CMGS: 7\r\n\r\nOK\r\n"), 2);
    assert.deepEqual(s.drain().completions[0]?.outcome, { kind: "ok", lines: ["+CMGS: 7"] });
  });

  it("reports a prompt nobody asked for as unexpected", () => {
    const s = new AtSession();
    s.enqueue({ text: "AT" }, 0);
    s.receive(enc("> "), 1);
    assert.deepEqual(s.drain().unexpected, ["> "]);
  });

  it("times a command out at its deadline and starts the next", () => {
    const s = new AtSession({ defaultTimeoutMs: 100 });
    const a = s.enqueue({ text: "AT" }, 1000);
    s.enqueue({ text: "ATE0", timeoutMs: 50 }, 1000);
    s.drain();
    assert.equal(s.nextDeadline(), 1100);
    s.tick(1099);
    assert.deepEqual(s.drain().completions, []);
    s.tick(1100);
    const step = s.drain();
    assert.deepEqual(step.completions, [
      { id: a, command: { text: "AT" }, outcome: { kind: "timeout", awaited: "final", lines: [] } },
    ]);
    assert.deepEqual(writesOf(step), ["ATE0\r"]);
    assert.equal(s.nextDeadline(), 1150);
  });

  it("cancels a prompt that never came with ESC", () => {
    const s = new AtSession({ defaultTimeoutMs: 100 });
    s.enqueue({ text: "AT+CMGS=5", body: "00" }, 0);
    s.drain();
    s.tick(100);
    const step = s.drain();
    assert.deepEqual(writesOf(step), [String.fromCharCode(ESC)]);
    assert.deepEqual(step.completions[0]?.outcome, { kind: "timeout", awaited: "prompt", lines: [] });
  });

  it("skips the echo of the command (before ATE0 takes effect)", () => {
    const s = new AtSession();
    s.enqueue({ text: "ATE0" }, 0);
    s.receive(enc("ATE0\r\r\nOK\r\n"), 1);
    assert.deepEqual(s.drain().completions[0]?.outcome, { kind: "ok", lines: [] });
  });

  it("reports finals and lines with no command in flight as unexpected", () => {
    const s = new AtSession();
    s.receive(enc("\r\nOK\r\n\r\n+CSQ: 1,2\r\n"), 0);
    assert.deepEqual(s.drain().unexpected, ["OK", "+CSQ: 1,2"]);
  });

  it("abortAll completes the command in flight and the queued ones, and forgets partial input", () => {
    const s = new AtSession();
    const a = s.enqueue({ text: "AT+CMGL=4" }, 0);
    const b = s.enqueue({ text: "AT" }, 0);
    s.receive(enc("\r\n+CMGL: 1,0,,3\r\n00"), 1);
    s.abortAll("link closed");
    const step = s.drain();
    assert.deepEqual(
      step.completions.map((c) => [c.id, c.outcome]),
      [
        [a, { kind: "aborted", reason: "link closed", lines: ["+CMGL: 1,0,,3"] }],
        [b, { kind: "aborted", reason: "link closed", lines: [] }],
      ],
    );
    assert.equal(s.busy, false);
    assert.equal(s.nextDeadline(), undefined);
  });
});

describe("TS 27.005 response helpers", () => {
  it("splitParams respects quotes", () => {
    assert.deepEqual(splitParams('"SM",3'), ["SM", "3"]);
    assert.deepEqual(splitParams('1, "a,b" ,,7'), ["1", "a,b", "", "7"]);
  });

  it("parseCmti reads the storage and index", () => {
    assert.deepEqual(parseCmti('+CMTI: "SM",3'), { mem: "SM", index: 3 });
    assert.deepEqual(parseCmti('+CMTI: "ME", 12'), { mem: "ME", index: 12 });
    assert.equal(parseCmti('+CMTI: "SM"'), undefined);
    assert.equal(parseCmti("+CMTI: ,x"), undefined);
  });

  it("parseStoredPdus pairs +CMGL headers with PDU lines and rejects the rest", () => {
    const { messages, rejected } = parseStoredPdus(
      ["+CMGL: 1,0,,3", "001122", '+CMGL: 2,1,"Bob, Jr",2', "AABB", "+CMGL: 3,0,,2", "+CMGL: x", "junk"],
      "+CMGL",
    );
    assert.deepEqual(messages, [
      { index: 1, stat: 0, length: 3, hex: "001122" },
      { index: 2, stat: 1, length: 2, hex: "AABB" },
    ]);
    assert.deepEqual(rejected, ["+CMGL: 3,0,,2", "+CMGL: x", "junk"]);
  });

  it("parseStoredPdus reads a +CMGR answer", () => {
    assert.deepEqual(parseStoredPdus(["+CMGR: 0,,128", "0791"], "+CMGR").messages, [
      { index: undefined, stat: 0, length: 128, hex: "0791" },
    ]);
  });
});
