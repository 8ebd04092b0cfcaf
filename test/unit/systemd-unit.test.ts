/**
 * The deployment files in systemd/, checked with systemd's own tools (platform.md 8): the unit
 * verifies without a word and its sandbox rates 2.5 or better; the sysusers and tmpfiles files are
 * applied to a scratch root. These tools work offline; PID 1 need not be systemd.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const UNIT = join(ROOT, "systemd", "dmgw.service");
const SYSUSERS = join(ROOT, "systemd", "dmgw.sysusers");
const TMPFILES = join(ROOT, "systemd", "dmgw.tmpfiles");
const NODE = "/usr/bin/node";
const MAX_EXPOSURE = 2.5;

interface Run {
  readonly status: number | null;
  /** stdout and stderr together, as `2>&1` would show them. */
  readonly output: string;
}

function run(command: string, args: readonly string[]): Run {
  const r = spawnSync(command, args, { encoding: "utf8", timeout: 30_000 });
  if (r.error !== undefined) throw new Error(`cannot run ${command}: ${r.error.message}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** The [Service] etc. settings as key -> values (a key may repeat). */
function settings(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";") || line.startsWith("[")) continue;
    const eq = line.indexOf("=");
    assert.ok(eq > 0, `a setting: ${line}`);
    const key = line.slice(0, eq);
    map.set(key, [...(map.get(key) ?? []), line.slice(eq + 1)]);
  }
  return map;
}

describe("systemd/", function () {
  let dir: string;

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), "dmgw-unit-"));
  });

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A copy of the unit, named dmgw.service, to verify. `verify` fails when ExecStart's binary is not
   * executable (platform.md 8); the script path after it is not checked. On a machine without
   * /usr/bin/node (node from nvm, say) the copy's ExecStart names this node instead, and nothing
   * else changes.
   */
  function unitCopy(edit: (text: string) => string = (t) => t): string {
    let text = readFileSync(UNIT, "utf8");
    if (!existsSync(NODE)) text = text.replace(`ExecStart=${NODE} `, `ExecStart=${process.execPath} `);
    const path = join(dir, "dmgw.service");
    writeFileSync(path, edit(text));
    return path;
  }

  describe("dmgw.service", function () {
    it("passes `systemd-analyze verify` without printing anything", function () {
      const r = run("systemd-analyze", ["verify", unitCopy()]);
      // verify exits 0 on warnings, so the output is what counts (platform.md 8).
      assert.equal(r.output, "");
      assert.equal(r.status, 0);
    });

    it("is caught by that check when it has a mistake (the check can fail)", function () {
      const r = run("systemd-analyze", [
        "verify",
        unitCopy((t) => t.replace("[Service]\n", "[Service]\nStartLimitIntervalSec=60\n")),
      ]);
      assert.match(r.output, /Unknown key 'StartLimitIntervalSec' in section \[Service\]/);
    });

    it(`rates ${MAX_EXPOSURE} or better in \`systemd-analyze security --offline=true\``, function () {
      const r = run("systemd-analyze", ["security", "--offline=true", unitCopy()]);
      const m = /Overall exposure level for dmgw\.service: (\d+(?:\.\d+)?)/.exec(r.output);
      assert.ok(m !== null, `no exposure level in:\n${r.output}`);
      const exposure = Number(m[1]);
      assert.ok(exposure <= MAX_EXPOSURE, `exposure ${exposure} > ${MAX_EXPOSURE}:\n${r.output}`);
    });

    it("is rated worse without its sandbox (the rating check can fail)", function () {
      const bare = unitCopy((t) => t.slice(0, t.indexOf("# Sandbox.")));
      const r = run("systemd-analyze", ["security", "--offline=true", bare]);
      const m = /Overall exposure level for dmgw\.service: (\d+(?:\.\d+)?)/.exec(r.output);
      assert.ok(m !== null, r.output);
      assert.ok(Number(m[1]) > MAX_EXPOSURE, `bare exposure ${m[1]}`);
    });

    it("has the settings the issue asks for", function () {
      const s = settings(readFileSync(UNIT, "utf8"));
      const one = (key: string): string | undefined => {
        const v = s.get(key);
        assert.ok(v === undefined || v.length === 1, `${key} is set once`);
        return v?.[0];
      };
      assert.equal(one("Type"), "notify");
      assert.equal(one("NotifyAccess"), "all");
      assert.match(one("WatchdogSec") ?? "", /^\d+$/);
      assert.equal(
        one("ExecStart"),
        "/usr/bin/node --enable-source-maps --unhandled-rejections=strict /opt/dmgw/dist/src/main.js run --config /etc/dmgw/config.yaml",
      );
      assert.equal(one("User"), "dmgw");
      assert.equal(one("DynamicUser"), undefined);
      assert.deepEqual(one("SupplementaryGroups")?.split(" ").sort(), ["bluetooth", "dialout", "gpio"]);
      assert.equal(one("StateDirectory"), "dmgw");
      assert.equal(one("ConfigurationDirectory"), "dmgw");
      assert.equal(one("RuntimeDirectory"), "dmgw");
      assert.equal(one("Restart"), "on-failure");
      assert.equal(one("RestartPreventExitStatus"), "78");
      assert.equal(one("KillSignal"), "SIGTERM");
      assert.match(one("TimeoutStopSec") ?? "", /^\d+$/);
      assert.match(one("MemoryMax") ?? "", /^\d+[KMG]$/);
      assert.equal(one("ProtectSystem"), "strict");
      assert.equal(one("PrivateDevices"), undefined, "serial and GPIO need the host's /dev");
      assert.deepEqual(s.get("DeviceAllow"), [
        "char-ttyUSB rw",
        "char-ttyACM rw",
        "char-ttyAMA rw",
        "char-ttyS rw",
        "char-gpiochip rw",
      ]);
      assert.deepEqual(one("RestrictAddressFamilies")?.split(" ").sort(), [
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
        "AF_UNIX",
      ]);
    });
  });

  describe("dmgw.sysusers and dmgw.tmpfiles", function () {
    it("create the dmgw user, the device groups, /etc/dmgw and the config's mode in a scratch root", function () {
      if (process.getuid?.() !== 0) {
        // systemd-tmpfiles must chown to root:dmgw, which only root can; the sysusers part still runs.
        console.log("      (not root: the tmpfiles part is left out)");
      }
      const root = join(dir, "root");
      mkdirSync(join(root, "etc"), { recursive: true });
      // With --root, systemd 252 still opens a file argument by its host path: pass absolute paths.
      const dry = run("systemd-sysusers", [`--root=${root}`, "--dry-run", SYSUSERS]);
      assert.equal(dry.status, 0, dry.output);
      assert.match(dry.output, /Creating user 'dmgw' \(dmgw OMA DM gateway\) with UID (\d+) and GID \d+/);
      assert.equal(existsSync(join(root, "etc", "passwd")), false, "a dry run writes nothing");

      const real = run("systemd-sysusers", [`--root=${root}`, SYSUSERS]);
      assert.equal(real.status, 0, real.output);
      const passwd = readFileSync(join(root, "etc", "passwd"), "utf8");
      const group = readFileSync(join(root, "etc", "group"), "utf8");
      const user = /^dmgw:x:(\d+):(\d+):[^:]*:[^:]*:\/usr\/sbin\/nologin$/m.exec(passwd);
      assert.ok(user !== null, passwd);
      const dmgwGid = Number(user[2]);
      assert.ok(Number(user[1]) < 1000, "a system account");
      for (const g of ["dmgw", "dialout", "bluetooth", "gpio"])
        assert.match(group, new RegExp(`^${g}:x:\\d+:`, "m"));
      assert.match(group, new RegExp(`^dmgw:x:${dmgwGid}:`, "m"));

      if (process.getuid?.() !== 0) return;
      const tmp = run("systemd-tmpfiles", [`--root=${root}`, "--create", TMPFILES]);
      assert.equal(tmp.status, 0, tmp.output);
      const etc = statSync(join(root, "etc", "dmgw"));
      assert.ok(etc.isDirectory());
      assert.equal(etc.mode & 0o7777, 0o755);
      assert.equal(existsSync(join(root, "etc", "dmgw", "config.yaml")), false, "no config is made up");

      // A config written with a careless umask is fixed to root:dmgw 0640 on the next run.
      copyFileSync(SYSUSERS, join(root, "etc", "dmgw", "config.yaml"));
      const again = run("systemd-tmpfiles", [`--root=${root}`, "--create", TMPFILES]);
      assert.equal(again.status, 0, again.output);
      const config = statSync(join(root, "etc", "dmgw", "config.yaml"));
      assert.equal(config.mode & 0o7777, 0o640);
      assert.equal(config.uid, 0);
      assert.equal(config.gid, dmgwGid);
    });
  });
});
