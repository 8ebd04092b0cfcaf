import { spawn, spawnSync } from "node:child_process";
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

/**
 * `runCli` without blocking the event loop: for a CLI that talks to a server running in this very
 * process (the control socket), which a synchronous spawn would starve.
 */
export async function runCliAsync(
  args: readonly string[],
  options: { readonly input?: string; readonly env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: options.env ?? process.env,
    stdio: ["pipe", "pipe", "pipe"],
    timeout: 30_000,
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (c: Buffer) => out.push(c));
  child.stderr.on("data", (c: Buffer) => err.push(c));
  child.stdin.end(options.input ?? "");
  const status = await new Promise<number | null>((resolve) =>
    child.once("close", (code) => {
      resolve(code);
    }),
  );
  return { status, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8") };
}
