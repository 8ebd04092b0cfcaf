/**
 * Bench runner: `npm run bench -- <name> [--json] [args...]`.
 *
 * Prints the bench's human-readable lines; with `--json` the last line of stdout is the bench's
 * report as one JSON object. An unknown name exits 2, a bench that cannot run (missing tool) exits 1.
 */
import { BenchError, type BenchContext, type BenchModule } from "./common.js";

/** The benches, by name. Adding one is adding a line. */
const BENCHES: ReadonlyMap<string, () => Promise<BenchModule>> = new Map([
  ["codec", () => import("./codec.bench.js")],
  ["tree", (): Promise<BenchModule> => import("./tree.bench.js")],
  ["session", (): Promise<BenchModule> => import("./session.bench.js")],
  ["southbound", (): Promise<BenchModule> => import("./southbound.bench.js")],
  ["fanout", (): Promise<BenchModule> => import("./fanout.bench.js")],
  ["runtime", (): Promise<BenchModule> => import("./runtime.bench.js")],
]);

async function main(argv: readonly string[]): Promise<number> {
  const json = argv.includes("--json");
  const [name, ...args] = argv.filter((a) => a !== "--json");
  const load = name === undefined ? undefined : BENCHES.get(name);
  if (name === undefined || load === undefined) {
    const what =
      name === undefined ? "no bench given (npm run bench -- <name> [--json])" : `unknown bench "${name}"`;
    process.stderr.write(`bench: ${what}; known benches: ${[...BENCHES.keys()].join(", ")}\n`);
    return 2;
  }
  const ctx: BenchContext = {
    json,
    args,
    log: (line) => process.stdout.write(`${line}\n`),
    warn: (line) => process.stdout.write(`WARNING: ${line}\n`),
  };
  try {
    const bench = await load();
    const report = await bench.run(ctx);
    if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof BenchError) {
      process.stderr.write(`bench ${name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
