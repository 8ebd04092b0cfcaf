import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { configSyntax, loadConfigFile, parseConfigText } from "../../src/config/load.js";
import { defaultConfigFile, envDirectories, resolvePaths } from "../../src/config/paths.js";
import {
  CONFIG_DEFAULTS,
  machineDevId,
  parseConfig,
  validateConfig,
  type ConfigProblem,
} from "../../src/config/schema.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";

const EXAMPLE = fileURLToPath(new URL("../../systemd/config.example.yaml", import.meta.url));
const SECRET = "s3cr3t-never-printed";

const server = (extra: Record<string, unknown> = {}) => ({
  serverId: "dms",
  uri: "https://dms.example.com/dm",
  clientAuth: { scheme: "hmac", name: "gw", secret: SECRET },
  serverAuth: { scheme: "hmac", name: "dms", secret: SECRET },
  ...extra,
});

function problemsOf(raw: unknown, env: Record<string, string> = {}): readonly ConfigProblem[] {
  const r = validateConfig(raw, { env, machineIdPath: "/nonexistent" });
  assert.ok(!r.ok, "expected problems");
  return r.problems;
}

describe("config (src/config)", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-config-"));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("validation", () => {
    it("reports every problem at once, each with its path", () => {
      const problems = problemsOf({
        board: "banana-pi",
        servers: [
          server({ uri: "ftp://dms.example.com/", encoding: "json", checkInSeconds: -5 }),
          { serverId: "dms", clientAuth: { scheme: "sha1", name: "gw" } },
        ],
        northbound: { udpPush: { port: 70_000 }, sms: { enabled: "yes" } },
        southbound: { drivers: { mqtt: { prefix: "x" }, http: { port: "8080" }, zigbee: {} } },
        metrics: { host: "127.0.0.1" },
        log: { level: "loud" },
        extra: 1,
      });
      const paths = problems.map((p) => p.path);
      for (const expected of [
        "board",
        "identity.devId",
        "servers[0].uri",
        "servers[0].encoding",
        "servers[0].checkInSeconds",
        "servers[1].serverId",
        "servers[1].uri",
        "servers[1].clientAuth.scheme",
        "servers[1].clientAuth.secret",
        "servers[1].serverAuth",
        "northbound.udpPush.port",
        "northbound.sms.enabled",
        "southbound.drivers.zigbee",
        "southbound.drivers.mqtt.url",
        "southbound.drivers.http.port",
        "metrics.port",
        "log.level",
        "extra",
      ]) {
        assert.ok(paths.includes(expected), `${expected} missing from ${JSON.stringify(paths)}`);
      }
      const uri = problems.find((p) => p.path === "servers[0].uri");
      assert.equal(uri?.message, "must be an http(s) URL");
      assert.match(problems.find((p) => p.path === "servers[1].serverId")?.message ?? "", /another server/);
    });

    it("fills the defaults", () => {
      const config = parseConfig(
        { identity: { devId: "IMEI:1" } },
        { env: { STATE_DIRECTORY: "/var/lib/dmgw", RUNTIME_DIRECTORY: "/run/dmgw" } },
      );
      assert.equal(config.board, "auto");
      assert.deepEqual(config.paths, {
        state: "/var/lib/dmgw",
        runtime: "/run/dmgw",
        db: "/var/lib/dmgw/dmgw.db",
      });
      assert.deepEqual(config.servers, []);
      assert.deepEqual(config.northbound.udpPush, CONFIG_DEFAULTS.udpPush);
      assert.equal(config.northbound.sms.enabled, false);
      assert.equal(config.northbound.maxMsgSize, 16_384);
      assert.equal(config.southbound.gatewayServerId, "dmgw");
      assert.deepEqual(config.southbound.drivers, {});
      assert.equal(config.metrics, false);
      assert.deepEqual(config.control, { socket: "/run/dmgw/dmgw.sock" });
      assert.deepEqual(config.log, { level: "info", format: "auto" });
      assert.equal(config.identity.man, "dmgw");
      assert.equal(config.identity.dmV, "1.2");
      const s = parseConfig({ identity: { devId: "x" }, servers: [server()] }, { env: {} }).servers[0];
      assert.equal(s?.account, "dms");
      assert.equal(s.encoding, "wbxml");
      assert.equal(s.checkInSeconds, CONFIG_DEFAULTS.checkInSeconds);
      assert.equal(s.clientAuth.secret, SECRET);
    });

    it("is deep-readonly at run time", () => {
      const config = parseConfig({ identity: { devId: "x" }, servers: [server()] }, { env: {} });
      assert.ok(Object.isFrozen(config));
      assert.ok(Object.isFrozen(config.servers));
      assert.ok(Object.isFrozen(config.servers[0]?.clientAuth));
      assert.throws(() => {
        (config.northbound as { maxMsgSize: number }).maxMsgSize = 1;
      }, TypeError);
    });

    it("never puts a secret in a problem or an error message", () => {
      const secretFile = path.join(dir, "secret");
      fs.writeFileSync(secretFile, `${SECRET}\n`);
      const raw = {
        servers: [
          server({ clientAuth: { scheme: "md5", name: "gw", secret: SECRET, secretFile }, uri: SECRET }),
          server({ serverId: "b", serverAuth: { scheme: "md5", name: "b", secret: 42 } }),
        ],
        southbound: {
          enrolmentSecret: SECRET,
          enrolment: { secret: SECRET },
          drivers: { mqtt: { url: SECRET, password: SECRET } },
        },
      };
      const r = validateConfig(raw, { env: {}, machineIdPath: "/nonexistent" });
      assert.ok(!r.ok);
      assert.ok(r.problems.length >= 4, JSON.stringify(r.problems));
      assert.ok(!JSON.stringify(r.problems).includes(SECRET), JSON.stringify(r.problems));
      assert.throws(
        () => parseConfig(raw, { env: {} }),
        (e: unknown) => isGatewayError(e, ErrorCode.Config_Invalid) && !e.message.includes(SECRET),
      );
    });

    it("reads secretFile (relative to the config's directory) and reports an unreadable one", () => {
      fs.writeFileSync(path.join(dir, "client.secret"), `${SECRET}\n`);
      const ok = parseConfig(
        {
          identity: { devId: "x" },
          servers: [server({ clientAuth: { scheme: "md5", name: "gw", secretFile: "client.secret" } })],
        },
        { env: {}, baseDir: dir },
      );
      assert.equal(ok.servers[0]?.clientAuth.secret, SECRET);
      const problems = problemsOf({
        identity: { devId: "x" },
        servers: [
          server({ clientAuth: { scheme: "md5", name: "gw", secretFile: path.join(dir, "missing") } }),
        ],
      });
      assert.deepEqual(
        problems.map((p) => p.path),
        ["servers[0].clientAuth.secretFile"],
      );
      assert.match(problems[0]?.message ?? "", /cannot read .*ENOENT/);
    });

    it("checks driver sections field by field and keeps only configured drivers", () => {
      const config = parseConfig(
        {
          identity: { devId: "x" },
          southbound: {
            drivers: {
              http: { host: "127.0.0.1", port: 0 },
              coap: { port: 5683, observeDevInfo: false },
              serial: {
                ports: [{ path: "/dev/serial/by-id/usb-x" }],
                reconnect: { initialMs: 100, jitter: 0.1 },
              },
            },
          },
        },
        { env: {} },
      );
      assert.deepEqual(Object.keys(config.southbound.drivers).sort(), ["coap", "http", "serial"]);
      assert.deepEqual(config.southbound.drivers.serial?.reconnect, { initialMs: 100, jitter: 0.1 });
      const problems = problemsOf({
        identity: { devId: "x" },
        southbound: {
          drivers: {
            serial: { ports: [{ path: "/dev/ttyUSB0" }], maxPacketLength: 10, reconnect: { jitter: 2 } },
          },
        },
      });
      assert.deepEqual(problems.map((p) => p.path).sort(), [
        "southbound.drivers.serial.maxPacketLength",
        "southbound.drivers.serial.ports[0].path",
        "southbound.drivers.serial.reconnect.jitter",
      ]);
    });

    it("derives devId from the machine id, and requires it without one", () => {
      const file = path.join(dir, "machine-id");
      fs.writeFileSync(file, "0123456789abcdef0123456789abcdef\n");
      const id = machineDevId(file);
      assert.match(
        id ?? "",
        /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      // Stable, and not the machine id itself (machine-id(5)).
      assert.equal(machineDevId(file), id);
      assert.ok(!(id ?? "").replace(/-/g, "").includes("0123456789abcdef"));
      const config = parseConfig({}, { env: {}, machineIdPath: file });
      assert.equal(config.identity.devId, id);
      assert.deepEqual(
        problemsOf({}).map((p) => p.path),
        ["identity.devId"],
      );
    });
  });

  describe("files", () => {
    it("reads YAML and JSON alike", () => {
      const raw = { identity: { devId: "IMEI:1" }, servers: [server()], log: { level: "debug" } };
      const json = path.join(dir, "config.json");
      fs.writeFileSync(json, JSON.stringify(raw));
      const yaml = path.join(dir, "config.yaml");
      fs.writeFileSync(
        yaml,
        [
          "identity:",
          "  devId: IMEI:1",
          "servers:",
          "  - serverId: dms",
          "    uri: https://dms.example.com/dm",
          "    clientAuth: { scheme: hmac, name: gw, secret: " + SECRET + " }",
          "    serverAuth:",
          "      scheme: hmac",
          "      name: dms",
          "      secret: " + SECRET,
          "log:",
          "  level: debug",
        ].join("\n"),
      );
      const env = { DMGW_DATA: dir };
      assert.deepEqual(loadConfigFile(yaml, { env }), loadConfigFile(json, { env }));
      assert.equal(configSyntax("/etc/dmgw/config", "{}"), "json");
      assert.equal(configSyntax("/etc/dmgw/config", "a: 1"), "yaml");
    });

    it("loads the example config", () => {
      const machineId = path.join(dir, "machine-id");
      fs.writeFileSync(machineId, "0123456789abcdef0123456789abcdef\n");
      const config = loadConfigFile(EXAMPLE, { env: {}, machineIdPath: machineId });
      assert.equal(config.servers.length, 1);
      assert.deepEqual(Object.keys(config.southbound.drivers).sort(), ["coap", "http"]);
    });

    it("reports a syntax error with its position, and a missing file, as Config_Unreadable", () => {
      assert.throws(
        () => parseConfigText("servers:\n  - serverId: [x\n", "yaml", "c.yaml"),
        (e: unknown) => isGatewayError(e, ErrorCode.Config_Unreadable) && /line \d+/.test(e.message),
      );
      assert.throws(
        () => parseConfigText(`{"secret": "${SECRET}",}`, "json", "c.json"),
        (e: unknown) => isGatewayError(e, ErrorCode.Config_Unreadable),
      );
      assert.throws(
        () => loadConfigFile(path.join(dir, "nope.yaml")),
        (e: unknown) => isGatewayError(e, ErrorCode.Config_Unreadable) && /ENOENT/.test(e.message),
      );
    });

    it("a YAML 1.1 boolean word stays a string and is reported", () => {
      const file = path.join(dir, "c.yaml");
      fs.writeFileSync(file, "identity: { devId: x }\nnorthbound:\n  sms:\n    enabled: yes\n");
      assert.throws(
        () => loadConfigFile(file, { env: {} }),
        (e: unknown) =>
          isGatewayError(e, ErrorCode.Config_Invalid) && /northbound\.sms\.enabled/.test(e.message),
      );
    });
  });

  describe("paths", () => {
    it("takes the systemd directories (the first of a list)", () => {
      const env = {
        STATE_DIRECTORY: "/var/lib/dmgw:/var/lib/other",
        RUNTIME_DIRECTORY: "/run/dmgw",
        CONFIGURATION_DIRECTORY: "/etc/dmgw",
      };
      assert.deepEqual(resolvePaths(env), {
        state: "/var/lib/dmgw",
        runtime: "/run/dmgw",
        db: "/var/lib/dmgw/dmgw.db",
      });
      assert.equal(defaultConfigFile(env), "/etc/dmgw/config.yaml");
    });

    it("DMGW_DATA puts state and runtime below it and overrides systemd's", () => {
      const env = { DMGW_DATA: dir, STATE_DIRECTORY: "/var/lib/dmgw" };
      assert.deepEqual(envDirectories(env), {
        state: path.join(dir, "state"),
        runtime: path.join(dir, "runtime"),
        config: dir,
      });
      fs.writeFileSync(path.join(dir, "config.json"), "{}");
      assert.equal(defaultConfigFile(env), path.join(dir, "config.json"));
      const config = parseConfig({ identity: { devId: "x" } }, { env });
      assert.equal(config.paths.db, path.join(dir, "state", "dmgw.db"));
      assert.deepEqual(config.control, { socket: path.join(dir, "runtime", "dmgw.sock") });
    });

    it("config keys win over the environment; relative ones are against the config's directory", () => {
      const config = parseConfig(
        { identity: { devId: "x" }, paths: { state: "st", runtime: "/tmp/rt" } },
        { env: { DMGW_DATA: "/elsewhere" }, baseDir: dir },
      );
      assert.equal(config.paths.state, path.join(dir, "st"));
      assert.equal(config.paths.runtime, "/tmp/rt");
    });

    it("defaults to /var/lib/dmgw, /run/dmgw and /etc/dmgw", () => {
      assert.deepEqual(resolvePaths({}), {
        state: "/var/lib/dmgw",
        runtime: "/run/dmgw",
        db: "/var/lib/dmgw/dmgw.db",
      });
      assert.equal(envDirectories({}).config, "/etc/dmgw");
    });
  });
});
