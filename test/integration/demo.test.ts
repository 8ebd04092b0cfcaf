/**
 * `dmgw demo` (issue #8), as a user runs it: the built CLI in a child process, with its own TMPDIR
 * so that what it leaves behind (a process whose command line names that directory, a file in it)
 * can be told apart from other tests'. socat, dbus-daemon and mosquitto are test dependencies
 * (.ci/run installs them), so every transport runs here.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dmUriToPath } from "../../drivers/coap/mapping.js";
import { planDevices } from "../../src/sim/demo.js";
import { topicMatches } from "../../src/sim/mqtt-broker.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = fileURLToPath(new URL("../../dist/src/main.js", import.meta.url));

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built `dmgw` with `args`; `onLine` sees each stdout line as it comes (and may act). */
async function dmgw(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  onLine?: (line: string, child: ReturnType<typeof spawn>) => void,
): Promise<Run> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 150_000,
  });
  let stdout = "";
  let stderr = "";
  let pending = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (s: string) => {
    stdout += s;
    pending += s;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) onLine?.(line, child);
  });
  child.stderr.on("data", (s: string) => {
    stderr += s;
  });
  const status = await new Promise<number | null>((resolve) =>
    child.once("close", (code) => {
      resolve(code);
    }),
  );
  return { status, stdout, stderr };
}

/** PIDs of processes whose command line mentions `text`. */
function processesMentioning(text: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(text)) out.push(`${pid}: ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

interface DemoJson {
  devices: number;
  succeeded: number;
  failed: number;
  seconds: number;
  alertAcknowledged: boolean;
  transports: Record<
    string,
    { devices?: number; succeeded?: number; failed?: number; peer?: string; skipped?: string }
  >;
}

function lastJson(stdout: string): DemoJson {
  const last = stdout.trimEnd().split("\n").at(-1) ?? "";
  return JSON.parse(last) as DemoJson;
}

describe("dmgw demo (issue #8)", function () {
  this.timeout(180_000);
  let tmp: string;
  let env: NodeJS.ProcessEnv;

  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), "dmgw-demo-test-"));
    env = { ...process.env, TMPDIR: tmp };
  });

  afterEach(() => {
    const left = processesMentioning(tmp);
    const files = readdirSync(tmp);
    rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(left, [], "processes left running");
    assert.deepEqual(files, [], "files left in TMPDIR");
  });

  it("--devices 200 --json: every device on every transport succeeds, the alert is acknowledged", async () => {
    const run = await dmgw(["demo", "--devices", "200", "--json"], env);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const report = lastJson(run.stdout);
    assert.equal(report.devices, 200);
    assert.equal(report.succeeded, 200);
    assert.equal(report.failed, 0);
    assert.equal(report.alertAcknowledged, true);
    assert.ok(report.seconds > 0);
    // Serial and BLE are capped (4 and 16); the rest is spread over HTTP, CoAP and MQTT.
    const counts = Object.fromEntries(Object.entries(report.transports).map(([t, s]) => [t, s.devices]));
    assert.deepEqual(counts, { http: 60, coap: 60, mqtt: 60, serial: 4, ble: 16 });
    for (const [t, s] of Object.entries(report.transports)) {
      assert.equal(s.failed, 0, t);
      assert.equal(s.succeeded, s.devices, t);
    }
    assert.equal(report.transports["mqtt"]?.peer, "mosquitto");
    // A table per transport, a row per device, and the summary line.
    assert.match(run.stdout, /^serial \(socat pty pairs\): 4\/4 succeeded$/m);
    assert.match(run.stdout, /^ble-16 +1\.0\.0 +200 +200 +200 +yes +ok$/m);
    assert.match(run.stdout, /^coap-60 +1\.0\.0 +200 +200 +200 +yes +ok$/m);
    assert.match(run.stdout, /^job Completed: 200 devices, 200 succeeded, 0 failed in /m);
  });

  it("--transports http,coap --devices 20: only those two, ten devices each", async () => {
    const run = await dmgw(["demo", "--transports", "http,coap", "--devices", "20", "--json"], env);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const report = lastJson(run.stdout);
    assert.equal(report.succeeded, 20);
    assert.deepEqual(Object.keys(report.transports), ["http", "coap"]);
    assert.equal(report.transports["http"]?.devices, 10);
    assert.equal(report.transports["coap"]?.devices, 10);
    assert.doesNotMatch(run.stdout, /mosquitto|socat|dbus-daemon/);
  });

  it("--broker embedded: the MQTT devices meet the gateway on the in-process MQTT 5 broker", async () => {
    const run = await dmgw(
      ["demo", "--transports", "mqtt", "--devices", "12", "--broker", "embedded", "--json"],
      env,
    );
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const report = lastJson(run.stdout);
    assert.deepEqual(report.transports, {
      mqtt: { devices: 12, succeeded: 12, failed: 0, peer: "embedded broker" },
    });
    assert.match(run.stdout, /starting the embedded MQTT broker/);
  });

  it("SIGINT while the job runs: exit 130, every helper process stopped, the temporary directory gone", async () => {
    let sent = false;
    const run = await dmgw(["demo", "--devices", "200"], env, (line, child) => {
      if (!sent && line.includes("the DM Server creates group")) {
        sent = true;
        child.kill("SIGINT");
      }
    });
    assert.ok(sent, run.stdout);
    assert.equal(run.status, 130, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /interrupted; everything it started was stopped/);
  });

  for (const [args, message] of [
    [["--devices", "0"], /--devices takes a whole number 1\.\.2000, not "0"/],
    [["--transports", "http,zigbee"], /unknown transport "zigbee" in --transports/],
    [["--broker", "hivemq"], /--broker takes auto, mosquitto, embedded, not "hivemq"/],
    [["--devices", "30", "--transports", "serial"], /30 devices do not fit on serial \(at most serial 4\)/],
    [["--verbose"], /Unknown option '--verbose'/],
  ] as const) {
    it(`${args.join(" ")}: exit 64 with the problem and the usage`, async () => {
      const run = await dmgw(["demo", ...args], env);
      assert.equal(run.status, 64, run.stderr);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /usage: dmgw demo/);
      assert.equal(run.stdout, "");
    });
  }
});

describe("demo planning and the embedded broker's topic matching", () => {
  it("spreads devices evenly, serial and BLE capped", () => {
    assert.deepEqual(
      [...planDevices(50, ["http", "coap", "mqtt", "serial", "ble"])],
      [
        ["http", 12],
        ["coap", 12],
        ["mqtt", 11],
        ["serial", 4],
        ["ble", 11],
      ],
    );
    // Fewer devices than transports: one each while they last.
    assert.equal(
      [...planDevices(3, ["http", "coap", "mqtt", "serial", "ble"]).values()].filter((n) => n > 0).length,
      3,
    );
    assert.deepEqual(
      [...planDevices(200, ["http", "serial"])],
      [
        ["http", 196],
        ["serial", 4],
      ],
    );
    assert.throws(() => planDevices(20, ["ble"]), /20 devices do not fit on ble \(at most ble 16\)/);
  });

  it("the job's Get ./DevDetail/FwV reaches LwM2M devices as /3/0/3 (the DM<->LwM2M mapping)", () => {
    assert.deepEqual(dmUriToPath("./DevDetail/FwV"), [3, 0, 3]);
    assert.deepEqual(dmUriToPath("./DevDetail/SwV"), [3, 0, 19]);
    assert.equal(dmUriToPath("./DevDetail/Bogus"), undefined);
    assert.deepEqual(dmUriToPath("./3/0/14"), [3, 0, 14]);
  });

  it("matches + and # as MQTT 5.0 4.7 says", () => {
    assert.ok(topicMatches("dmgw/+/dm/up", "dmgw/dev-1/dm/up"));
    assert.ok(!topicMatches("dmgw/+/dm/up", "dmgw/a/b/dm/up"));
    assert.ok(topicMatches("dmgw/#", "dmgw"));
    assert.ok(topicMatches("dmgw/#", "dmgw/a/b"));
    assert.ok(!topicMatches("#", "$SYS/broker"));
    assert.ok(!topicMatches("dmgw/+", "dmgw/a/b"));
  });
});
