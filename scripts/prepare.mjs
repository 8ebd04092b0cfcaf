#!/usr/bin/env node
/**
 * npm's `prepare` (run by `npm ci` and `npm pack`): compiles TypeScript into dist/ in a checkout.
 * In an installed package (`npm ci --omit=dev` in /opt/dmgw, systemd/README.md) TypeScript is not
 * there and dist/ came built in the package: nothing to do. A checkout with TypeScript always
 * compiles, and a compile error fails, so a stale dist/ never hides one.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve("typescript/bin/tsc");
} catch {
  tsc = undefined;
}
if (tsc === undefined) {
  if (existsSync(new URL("../dist/src/main.js", import.meta.url))) {
    process.stdout.write("prepare: no TypeScript (a production install); dist/ is already built\n");
    process.exit(0);
  }
  process.stderr.write("prepare: neither TypeScript nor a built dist/: run `npm ci` with dev dependencies\n");
  process.exit(1);
}
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { stdio: "inherit" });
process.exit(result.status ?? 1);
