import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = fileURLToPath(new URL("../../dist/src/main.js", import.meta.url));

export interface CliResult {
  readonly status: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/**
 * Runs `dmgw ARGS` as a child process, with optional stdin: the built entry `dist/src/main.js`, as
 * `npx dmgw` runs it (`npm test` builds first; starting through tsx cost ~1 s a run).
 */
export function runCli(args: readonly string[], input?: Uint8Array | string): CliResult {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    input: input ?? "",
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString("utf8") };
}
