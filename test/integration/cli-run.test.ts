/**
 * `dmgw run` (src/cli/run.ts): a bad configuration prints every problem and exits 78 (as a child
 * process, as systemd sees it); a good one starts, logs `ready`, stops on the signal and returns 0.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runService } from "../../src/cli/run.js";
import { waitFor } from "../helpers/wait.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SECRET = "hunter2-never-printed";

/** Every problem of this file: five paths. */
const BAD_YAML = `
board: banana-pi
servers:
  - serverId: dms
    uri: ftp://dms.example.com/
    clientAuth: { scheme: sha1, name: gw, secret: ${SECRET} }
    serverAuth: { scheme: md5, name: dms, secret: ${SECRET} }
northbound:
  udpPush: { port: 99999 }
log: { level: loud }
`;
const BAD_PATHS = [
  "board",
  "servers[0].uri",
  "servers[0].clientAuth.scheme",
  "northbound.udpPush.port",
  "log.level",
];

class Sink {
  text = "";
  write(chunk: string | Uint8Array): void {
    this.text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  }
}

describe("dmgw run (cli/run.ts)", function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-cli-run-"));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("prints every problem of a bad config with its path and exits 78 (child process)", () => {
    const file = path.join(dir, "bad.yaml");
    fs.writeFileSync(file, BAD_YAML);
    const mainSource = fs.readFileSync(path.join(ROOT, "src/main.ts"), "utf8");
    // Through `dmgw run` once src/main.ts has the subcommand; until then through runService itself.
    const args = mainSource.includes("runService")
      ? ["--import", "tsx", "src/main.ts", "run", "--config", file]
      : [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          'import { runService } from "./src/cli/run.ts"; process.exitCode = await runService(process.argv.slice(1), { stdout: process.stdout, stderr: process.stderr });',
          "--",
          "--config",
          file,
        ];
    const r = spawnSync(process.execPath, args, {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 20_000,
      env: { ...process.env, DMGW_DATA: dir },
    });
    assert.equal(r.status, 78, r.stderr);
    for (const p of BAD_PATHS)
      assert.ok(r.stderr.includes(`${file}: ${p}: `), `${p} missing from:\n${r.stderr}`);
    assert.ok(r.stderr.includes("servers[0].uri: must be an http(s) URL"), r.stderr);
    assert.ok(!r.stderr.includes(SECRET) && !r.stdout.includes(SECRET), "a secret was printed");
  });

  it("returns 78 for an unreadable or unparsable config, 64 for a bad command line", async () => {
    const io = { stdout: new Sink(), stderr: new Sink(), env: { DMGW_DATA: dir } };
    assert.equal(await runService(["--config", path.join(dir, "missing.yaml")], io), 78);
    assert.match(io.stderr.text, /cannot read the configuration .*missing\.yaml \(ENOENT\)/);
    fs.writeFileSync(path.join(dir, "broken.json"), `{"secret": "${SECRET}",`);
    assert.equal(await runService(["--config", path.join(dir, "broken.json")], io), 78);
    assert.ok(!io.stderr.text.includes(SECRET));
    assert.equal(await runService(["--bogus"], io), 64);
    // Without --config: $DMGW_DATA/config.yaml, named in the message.
    assert.equal(await runService([], io), 78);
    assert.ok(io.stderr.text.includes(path.join(dir, "config.yaml")));
  });

  it("--check validates and exits 0", async () => {
    const file = path.join(dir, "config.json");
    fs.writeFileSync(file, JSON.stringify({ board: "sim", identity: { devId: "IMEI:1" } }));
    const io = { stdout: new Sink(), stderr: new Sink(), env: { DMGW_DATA: dir } };
    assert.equal(await runService(["--check", "--config", file], io), 0);
    assert.match(io.stdout.text, /configuration OK/);
  });

  it("starts, logs one JSON line per event with ready, stops on the signal and returns 0", async () => {
    const file = path.join(dir, "config.yaml");
    fs.writeFileSync(
      file,
      [
        "board: sim",
        "identity: { devId: 'IMEI:1' }",
        "northbound: { udpPush: false }",
        "southbound:",
        "  drivers:",
        "    http: { host: 127.0.0.1, port: 0 }",
        "log: { format: json }",
      ].join("\n"),
    );
    const stdout = new Sink();
    const io = {
      stdout,
      stderr: new Sink(),
      env: { DMGW_DATA: dir },
      stopSignal: new AbortController().signal,
    };
    const controller = new AbortController();
    const done = runService(["--config", file], { ...io, stopSignal: controller.signal });
    await waitFor("ready", () => stdout.text.includes('"msg":"ready"'), 15_000);
    assert.ok(fs.existsSync(path.join(dir, "runtime", "dmgw.sock")), "the control socket");
    controller.abort();
    assert.equal(await done, 0, io.stderr.text);
    const lines = stdout.text.trim().split("\n");
    for (const line of lines) JSON.parse(line);
    assert.ok(lines.some((l) => l.includes('"msg":"stopped"')));
  });

  it("under systemd (INVOCATION_ID) writes journald lines with syslog prefixes, never a secret", async () => {
    const file = path.join(dir, "config.yaml");
    fs.writeFileSync(
      file,
      [
        "board: sim",
        "identity: { devId: 'IMEI:1' }",
        "servers:",
        "  - serverId: dms",
        "    uri: http://127.0.0.1:9/dm",
        `    clientAuth: { scheme: md5, name: gw, secret: ${SECRET} }`,
        `    serverAuth: { scheme: md5, name: dms, secret: ${SECRET} }`,
        "    checkInSeconds: 0",
        "northbound: { udpPush: { host: 127.0.0.1, port: 0 } }",
      ].join("\n"),
    );
    const stdout = new Sink();
    const controller = new AbortController();
    const env = { DMGW_DATA: dir, INVOCATION_ID: "0123456789abcdef0123456789abcdef" };
    const done = runService(["--config", file], {
      stdout,
      stderr: new Sink(),
      env,
      stopSignal: controller.signal,
    });
    await waitFor("ready", () => stdout.text.includes('"msg":"ready"'), 15_000);
    controller.abort();
    assert.equal(await done, 0);
    const lines = stdout.text.trim().split("\n");
    for (const line of lines) assert.match(line, /^<[3-7]>\{.*\}$/);
    assert.ok(lines.some((l) => l.startsWith("<6>") && l.includes('"msg":"ready"')));
    assert.ok(!stdout.text.includes(SECRET), "a secret was logged");
  });

  it("a start step that fails returns its exit status: 78 for a board auto cannot detect, 1 for a modem that is not there", async () => {
    const file = path.join(dir, "config.yaml");
    const write = (board: string): void => {
      fs.writeFileSync(
        file,
        [
          `board: ${board}`,
          "identity: { devId: 'IMEI:1' }",
          "servers:",
          "  - serverId: dms",
          "    uri: http://127.0.0.1:9/dm",
          "    clientAuth: { scheme: md5, name: gw, secret: a }",
          "    serverAuth: { scheme: md5, name: dms, secret: b }",
          "    checkInSeconds: 0",
          "northbound: { udpPush: false, sms: { enabled: true } }",
          "log: { format: json }",
        ].join("\n"),
      );
    };
    const modelPath = path.join(dir, "model");
    fs.writeFileSync(modelPath, "Banana Board\0");
    write("auto");
    let stderr = new Sink();
    const run = (): Promise<number> =>
      runService(["--config", file], {
        stdout: new Sink(),
        stderr,
        env: { DMGW_DATA: dir },
        gateway: { modelPath },
      });
    assert.equal(await run(), 78, stderr.text);
    assert.match(stderr.text, /start failed at board: no board profile matches the model "Banana Board"/);
    // The sim board's modem is a serial server on tcp://127.0.0.1:7727, which nothing serves here.
    write("sim");
    stderr = new Sink();
    assert.equal(await run(), 1, stderr.text);
    assert.match(stderr.text, /start failed at sms/);
  });
});
