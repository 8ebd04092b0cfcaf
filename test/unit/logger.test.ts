import assert from "node:assert/strict";
import { createLogger, REDACTED_KEYS, type LoggerOptions } from "../../src/core/logger.js";
import type { LogLevel } from "../../src/core/log.js";

/** A destination that keeps every `write()` (one per event). */
class Collector {
  readonly writes: string[] = [];
  isTTY?: boolean;
  write(line: string): void {
    this.writes.push(line);
  }
  get text(): string {
    return this.writes.join("");
  }
}

function setup(options: Omit<LoggerOptions, "destination"> = {}) {
  const out = new Collector();
  const log = createLogger({ format: "json", ...options, destination: out });
  return { out, log };
}

function parsed(line: string | undefined): Record<string, unknown> {
  assert.ok(line !== undefined, "a line was written");
  assert.ok(line.endsWith("\n"), "each event ends with a newline");
  assert.equal(line.indexOf("\n"), line.length - 1, "one line per event");
  return JSON.parse(line) as Record<string, unknown>;
}

function journald(line: string | undefined): { priority: number; record: Record<string, unknown> } {
  assert.ok(line !== undefined, "a line was written");
  const match = /^<(\d)>(\{.*\}\n)$/s.exec(line);
  assert.ok(match, `journald line: ${line}`);
  return { priority: Number(match[1]), record: parsed(match[2]) };
}

const ENV_KEYS = ["INVOCATION_ID", "JOURNAL_STREAM"] as const;

describe("createLogger", () => {
  describe("formats", () => {
    it("writes json with the level name, ns, msg, ISO time and fields", () => {
      const { out, log } = setup({ format: "json" });
      log.info("link up", { port: "/dev/serial/by-id/x", count: 3 });
      assert.equal(out.writes.length, 1);
      const record = parsed(out.writes[0]);
      assert.equal(typeof record["time"], "string");
      assert.equal(new Date(String(record["time"])).toISOString(), record["time"]);
      assert.deepEqual(
        { ...record, time: "T" },
        { level: "info", time: "T", ns: "dmgw", msg: "link up", port: "/dev/serial/by-id/x", count: 3 },
      );
    });

    it("writes journald lines with the syslog priority prefix and no time", () => {
      const { out, log } = setup({ format: "journald", level: "trace" });
      log.error("e");
      log.warn("w");
      log.info("i", { n: 1 });
      log.debug("d");
      log.trace("t");
      const lines = out.writes.map(journald);
      assert.deepEqual(
        lines.map((l) => l.priority),
        [3, 4, 6, 7, 7],
      );
      assert.deepEqual(
        lines.map((l) => l.record["level"]),
        ["error", "warn", "info", "debug", "trace"],
      );
      assert.deepEqual(lines[2]?.record, { level: "info", ns: "dmgw", msg: "i", n: 1 });
      for (const l of lines) assert.equal("time" in l.record, false);
    });

    it("writes pretty lines as HH:MM:SS.mmm LEVEL namespace text key=value", () => {
      const { out, log } = setup({ format: "pretty", level: "debug" });
      log.info("link up", { port: "ttyS0", count: 3, label: "two words", nested: { a: 1 } });
      log.debug("packet\nsplit");
      assert.equal(out.writes.length, 2);
      assert.match(
        out.writes[0] ?? "",
        /^\d\d:\d\d:\d\d\.\d{3} INFO {2}dmgw link up port=ttyS0 count=3 label="two words" nested=\{"a":1\}\n$/,
      );
      assert.match(out.writes[1] ?? "", /^\d\d:\d\d:\d\d\.\d{3} DEBUG dmgw packet\\nsplit\n$/);
    });

    it("leaves % in the text alone", () => {
      const { out, log } = setup();
      log.info("100%s done %d", { a: 1 });
      assert.equal(parsed(out.writes[0])["msg"], "100%s done %d");
    });

    it("keeps a field named like a line key apart from it", () => {
      const { out, log } = setup();
      log.info("text", { level: "x", msg: "y", ns: "z" });
      const record = parsed(out.writes[0]);
      assert.equal(record["level"], "info");
      assert.equal(record["msg"], "text");
      assert.equal(record["ns"], "dmgw");
      assert.deepEqual([record["_level"], record["_msg"], record["_ns"]], ["x", "y", "z"]);
    });
  });

  describe("auto format", () => {
    const saved = new Map<string, string | undefined>();
    beforeEach(() => {
      for (const key of ENV_KEYS) {
        saved.set(key, process.env[key]);
        // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- unsetting an env variable
        delete process.env[key];
      }
    });
    afterEach(() => {
      for (const key of ENV_KEYS) {
        const value = saved.get(key);
        // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- restoring an unset env variable
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    });

    it("picks journald when INVOCATION_ID is set", () => {
      process.env["INVOCATION_ID"] = "0123456789abcdef0123456789abcdef";
      const { out, log } = setup({ format: "auto" });
      log.warn("w");
      assert.equal(journald(out.writes[0]).priority, 4);
    });

    it("picks journald when JOURNAL_STREAM is set", () => {
      process.env["JOURNAL_STREAM"] = "8:12345";
      const { out, log } = setup({ format: "auto" });
      log.info("i");
      assert.equal(journald(out.writes[0]).priority, 6);
    });

    it("picks json when neither is set and the destination is no TTY", () => {
      const { out, log } = setup({ format: "auto" });
      log.info("i");
      assert.equal(typeof parsed(out.writes[0])["time"], "string");
    });

    it("reads the environment it is given, not process.env", () => {
      const { out, log } = setup({ format: "auto", env: { JOURNAL_STREAM: "8:12345" } });
      log.error("e");
      assert.equal(journald(out.writes[0]).priority, 3);
      const plain = setup({ format: "auto", env: {} });
      process.env["INVOCATION_ID"] = "x";
      plain.log.info("i");
      assert.equal(typeof parsed(plain.out.writes[0])["time"], "string");
    });

    it("picks pretty on a TTY", () => {
      process.env["INVOCATION_ID"] = "x";
      const out = new Collector();
      out.isTTY = true;
      createLogger({ destination: out }).info("hello");
      assert.match(out.writes[0] ?? "", /^\d\d:\d\d:\d\d\.\d{3} INFO {2}dmgw hello\n$/);
    });
  });

  describe("levels", () => {
    it("defaults to info", () => {
      const { out, log } = setup();
      log.debug("hidden");
      log.trace("hidden");
      log.info("shown");
      assert.equal(out.writes.length, 1);
      assert.equal(parsed(out.writes[0])["msg"], "shown");
    });

    const table: readonly [LogLevel, readonly LogLevel[]][] = [
      ["error", ["error"]],
      ["warn", ["error", "warn"]],
      ["info", ["error", "warn", "info"]],
      ["debug", ["error", "warn", "info", "debug"]],
      ["trace", ["error", "warn", "info", "debug", "trace"]],
    ];
    for (const [level, written] of table) {
      it(`at ${level} writes ${written.join(", ")} and says so in enabled()`, () => {
        const { out, log } = setup({ level });
        for (const l of ["error", "warn", "info", "debug", "trace"] as const) log[l](l);
        assert.deepEqual(
          out.writes.map((w) => parsed(w)["level"]),
          written,
        );
        for (const l of ["error", "warn", "info", "debug", "trace"] as const) {
          assert.equal(log.enabled(l), written.includes(l), `enabled(${l})`);
        }
      });
    }

    it("does not build lazy text for a disabled level", () => {
      const { out, log } = setup({ level: "info" });
      let calls = 0;
      log.debug(() => {
        calls += 1;
        return "costly";
      });
      assert.equal(calls, 0);
      assert.equal(out.writes.length, 0);
    });

    it("builds lazy text once for an enabled level", () => {
      const { out, log } = setup({ level: "debug" });
      let calls = 0;
      log.debug(() => {
        calls += 1;
        return "built";
      });
      assert.equal(calls, 1);
      assert.equal(parsed(out.writes[0])["msg"], "built");
    });

    it("writes a placeholder when lazy text throws", () => {
      const { out, log } = setup();
      assert.doesNotThrow(() => {
        log.info(() => {
          throw new Error("bad text");
        });
      });
      assert.equal(parsed(out.writes[0])["msg"], "[log text threw: bad text]");
    });
  });

  describe("child", () => {
    it("appends to the namespace and keeps level, format and destination", () => {
      const { out, log } = setup({ format: "journald", level: "warn", namespace: "gw" });
      const session = log.child("northbound").child("session");
      session.info("hidden");
      session.warn("shown");
      log.warn("root");
      assert.equal(session.enabled("info"), false);
      assert.equal(out.writes.length, 2);
      assert.deepEqual(journald(out.writes[0]).record, {
        level: "warn",
        ns: "gw:northbound:session",
        msg: "shown",
      });
      assert.deepEqual(journald(out.writes[1]).record, { level: "warn", ns: "gw", msg: "root" });
    });
  });

  describe("redaction", () => {
    const SECRET = "s3cr3t-value-9f2c";
    const keys = [...REDACTED_KEYS, "mqttToken"];

    for (const key of keys) {
      it(`redacts ${key} at depth 1 and 3`, () => {
        for (const format of ["json", "journald", "pretty"] as const) {
          const { out, log } = setup({ format, redact: ["mqttToken"] });
          log.info("fields", { [key]: SECRET, outer: { inner: { [key]: SECRET, id: 7 } } });
          assert.equal(out.writes.length, 1);
          assert.equal(out.text.includes(SECRET), false, `${format}: ${out.text}`);
          if (format === "pretty") continue;
          const record = format === "json" ? parsed(out.writes[0]) : journald(out.writes[0]).record;
          assert.equal(record[key], "[redacted]");
          assert.deepEqual(record["outer"], { inner: { [key]: "[redacted]", id: 7 } });
        }
      });
    }

    it("redacts whatever the value is, matching keys case-insensitively", () => {
      const { out, log } = setup();
      log.info("fields", {
        Authorization: `Basic ${SECRET}`,
        list: [{ nonce: new TextEncoder().encode(SECRET) }],
        map: new Map([["HMAC", SECRET]]),
        creds: { cred: { user: SECRET } },
      });
      assert.equal(out.text.includes(SECRET), false, out.text);
      assert.equal(out.text.includes(Buffer.from(SECRET).toString("hex")), false, out.text);
      const record = parsed(out.writes[0]);
      assert.equal(record["Authorization"], "[redacted]");
      assert.deepEqual(record["list"], [{ nonce: "[redacted]" }]);
      assert.deepEqual(record["map"], { HMAC: "[redacted]" });
      assert.deepEqual(record["creds"], { cred: "[redacted]" });
    });

    it("does not redact a key that only contains a redacted name", () => {
      const { out, log } = setup();
      log.info("fields", { keyId: 4, passwordLength: 8 });
      const record = parsed(out.writes[0]);
      assert.equal(record["keyId"], 4);
      assert.equal(record["passwordLength"], 8);
    });
  });

  describe("values", () => {
    it("writes a Uint8Array as its length and the first 32 bytes in hex", () => {
      const { out, log } = setup();
      const long = Uint8Array.from({ length: 40 }, (_v, i) => i);
      const short = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);
      const view = long.subarray(8, 12);
      log.warn("malformed", { data: long, head: short, view, nested: { buf: Buffer.from([1, 2]) } });
      const record = parsed(out.writes[0]);
      assert.deepEqual(record["data"], {
        bytes: 40,
        hex: Buffer.from(long.subarray(0, 32)).toString("hex"),
      });
      assert.deepEqual(record["head"], { bytes: 4, hex: "deadbeef" });
      assert.deepEqual(record["view"], { bytes: 4, hex: "08090a0b" });
      assert.deepEqual(record["nested"], { buf: { bytes: 2, hex: "0102" } });
    });

    it("writes a cyclic field as a placeholder without throwing", () => {
      const { out, log } = setup();
      const node: Record<string, unknown> = { id: 1 };
      node["self"] = node;
      const list: unknown[] = [node];
      list.push(list);
      assert.doesNotThrow(() => {
        log.info("cycle", { node, list });
      });
      const record = parsed(out.writes[0]);
      assert.deepEqual(record["node"], { id: 1, self: "[circular]" });
      assert.deepEqual(record["list"], [{ id: 1, self: "[circular]" }, "[circular]"]);
    });

    it("writes the same object twice when it is shared, not cyclic", () => {
      const { out, log } = setup();
      const shared = { id: 2 };
      log.info("shared", { a: shared, b: [shared, shared] });
      const record = parsed(out.writes[0]);
      assert.deepEqual(record["a"], { id: 2 });
      assert.deepEqual(record["b"], [{ id: 2 }, { id: 2 }]);
    });

    it("writes placeholders for values that throw while serialised", () => {
      const { out, log } = setup({ format: "pretty" });
      const getter = {
        ok: 1,
        get broken(): never {
          throw new Error("getter");
        },
      };
      const toJson = {
        toJSON(): never {
          throw new Error("toJSON");
        },
      };
      const proxy = new Proxy(
        {},
        {
          ownKeys() {
            throw new Error("ownKeys");
          },
        },
      );
      assert.doesNotThrow(() => {
        log.info("hostile", { getter, toJson, proxy, big: 12n, fn: () => 1 });
      });
      assert.equal(out.writes.length, 1);
      const json = setup();
      json.log.info("hostile", { getter, toJson, proxy, big: 12n });
      const record = parsed(json.out.writes[0]);
      assert.deepEqual(record["getter"], { ok: 1, broken: "[unserialisable: getter]" });
      assert.equal(record["toJson"], "[unserialisable: toJSON]");
      assert.equal(record["proxy"], "[unserialisable: ownKeys]");
      assert.equal(record["big"], "12");
    });

    it("writes an Error with its type, message, code and stack", () => {
      const { out, log } = setup();
      log.error("failed", { err: Object.assign(new TypeError("boom"), { code: "E_X" }) });
      const err = parsed(out.writes[0])["err"] as Record<string, unknown>;
      assert.equal(err["type"], "TypeError");
      assert.equal(err["message"], "boom");
      assert.equal(err["code"], "E_X");
      assert.equal(typeof err["stack"], "string");
    });

    it("stops at a depth limit instead of walking forever", () => {
      const { out, log } = setup();
      let deep: Record<string, unknown> = { leaf: true };
      for (let i = 0; i < 20; i += 1) deep = { down: deep };
      log.info("deep", { deep });
      assert.match(out.text, /"\[too deep\]"/);
    });
  });

  describe("flush", () => {
    it("calls the destination's flush when it has one", () => {
      let flushed = 0;
      const log = createLogger({
        format: "json",
        destination: {
          write: () => undefined,
          flush: () => {
            flushed += 1;
          },
        },
      });
      log.flush();
      assert.equal(flushed, 1);
    });
  });
});
