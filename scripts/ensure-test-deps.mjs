#!/usr/bin/env node
// pretest: make sure the Debian packages the tests use as real peers are installed. Installs what is
// missing when it can (root, or passwordless sudo); otherwise stops with the exact command to run.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/** Debian package -> a file whose presence proves it is installed. */
const REQUIRED = [
  { pkg: "libwbxml2-utils", probe: "/usr/bin/xml2wbxml", why: "WBXML interop tests (xml2wbxml, wbxml2xml)" },
  { pkg: "socat", probe: "/usr/bin/socat", why: "serial tests on pty pairs (the modem simulator)" },
  { pkg: "openssl", probe: "/usr/bin/openssl", why: "HTTPS tests (a throwaway certificate)" },
  { pkg: "mosquitto", probe: "/usr/sbin/mosquitto", why: "MQTT driver tests (a real MQTT 5 broker)" },
  {
    pkg: "libcoap3-bin",
    probe: "/usr/bin/coap-client-notls",
    why: "CoAP interop tests (coap-client-notls, coap-server-notls)",
  },
  {
    // Debian 12 ships the daemon in its own package (the `dbus` package before bookworm).
    pkg: "dbus-daemon",
    probe: "/usr/bin/dbus-daemon",
    why: "BLE driver tests (a private system bus for node-ble and the fake org.bluez)",
  },
  {
    // systemd-analyze, systemd-notify, systemd-sysusers and systemd-tmpfiles; PID 1 need not be systemd.
    pkg: "systemd",
    probe: "/usr/bin/systemd-notify",
    why: "service tests (sd_notify via systemd-notify, systemd-analyze verify/security of the unit)",
  },
];

const missing = REQUIRED.filter((r) => !existsSync(r.probe));
if (missing.length === 0) process.exit(0);

const pkgs = missing.map((m) => m.pkg);
const line = `apt-get install -y ${pkgs.join(" ")}`;
for (const m of missing) console.error(`pretest: ${m.pkg} is missing (needed for ${m.why})`);

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const canSudo = !isRoot && spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0;
if (!isRoot && !canSudo) {
  console.error(`pretest: run this, then npm test again:\n  sudo ${line}`);
  process.exit(1);
}
const prefix = isRoot ? [] : ["sudo", "-n"];
const run = (args) => {
  const [cmd, ...rest] = [...prefix, ...args];
  execFileSync(cmd, rest, { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
};
try {
  console.error(`pretest: installing ${pkgs.join(", ")}`);
  run(["apt-get", "update", "-qq"]);
  run(["apt-get", "install", "-y", "-qq", ...pkgs]);
} catch {
  console.error(
    `pretest: the install failed; run this, then npm test again:\n  ${isRoot ? "" : "sudo "}${line}`,
  );
  process.exit(1);
}
const still = missing.filter((m) => !existsSync(m.probe));
if (still.length > 0) {
  console.error(`pretest: still missing after install: ${still.map((m) => m.pkg).join(", ")}`);
  process.exit(1);
}
