/**
 * The libwbxml reference for the codec bench: builds `libwbxml-harness.c` with the system `cc`
 * against Debian's libwbxml2 (into test/bench/.build/, again only when the .c is newer than the
 * binary), runs it as a child process, and cross-checks our WBXML against `xml2wbxml -n -v 1.2`.
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BenchError, median, type RoundTimer } from "./common.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Compiled artifacts and the bench's input files (git-ignored). */
export const BUILD_DIR = path.join(HERE, ".build");
const SOURCE = path.join(HERE, "libwbxml-harness.c");
const BINARY = path.join(BUILD_DIR, "libwbxml-harness");
const INCLUDE_DIR = "/usr/include/libwbxml-1.0";
const CC_ARGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-deprecated-declarations", `-I${INCLUDE_DIR}`];

const NEED_LIBWBXML = "install the Debian package libwbxml2-dev (apt-get install libwbxml2-dev)";
const NEED_GCC = "install the Debian package gcc (apt-get install gcc)";

export interface HarnessBuild {
  readonly binary: string;
  /** False when the binary was already newer than the source. */
  readonly compiled: boolean;
}

/** Compiles the harness if needed. Throws BenchError naming the Debian package that is missing. */
export function buildHarness(): HarnessBuild {
  mkdirSync(BUILD_DIR, { recursive: true });
  if (existsSync(BINARY) && statSync(BINARY).mtimeMs >= statSync(SOURCE).mtimeMs) {
    return { binary: BINARY, compiled: false };
  }
  if (!existsSync(path.join(INCLUDE_DIR, "wbxml", "wbxml.h"))) {
    throw new BenchError(`libwbxml headers not found in ${INCLUDE_DIR}: ${NEED_LIBWBXML}`);
  }
  const tmp = `${BINARY}.tmp-${process.pid}`;
  const result = spawnSync("cc", [...CC_ARGS, "-o", tmp, SOURCE, "-lwbxml2"], {
    encoding: "utf8",
    timeout: 120_000,
  });
  if (isMissingCommand(result)) throw new BenchError(`C compiler "cc" not found: ${NEED_GCC}`);
  if (result.status !== 0) {
    const detail = (result.stderr || String(result.error ?? "")).trim();
    if (/wbxml|-lwbxml2/.test(detail)) {
      throw new BenchError(`cannot build the libwbxml harness (${firstLine(detail)}): ${NEED_LIBWBXML}`);
    }
    throw new BenchError(`cc failed to build ${SOURCE}:\n${detail}`);
  }
  renameSync(tmp, BINARY);
  return { binary: BINARY, compiled: true };
}

export type HarnessMode = "decode" | "encode";

interface HarnessRun {
  readonly medianUs: number;
  readonly batchesUs: readonly number[];
  readonly iterations: number;
  readonly outBytes: number;
  readonly version: string;
}

export interface HarnessTiming {
  /** Median over the batches of all rounds of each batch's microseconds per operation. */
  readonly medianUs: number;
  readonly minUs: number;
  readonly batches: number;
  readonly iterations: number;
  readonly outBytes: number;
  readonly version: string;
}

/**
 * Times libwbxml in rounds of about `roundMs` of timed operations, one harness run per round. The
 * first round starts with a short run that estimates the cost (and writes the conversion result to
 * `output`, when given) to size the iteration count.
 */
export class LibwbxmlTimer implements RoundTimer {
  readonly #binary: string;
  readonly #mode: HarnessMode;
  readonly #input: string;
  readonly #roundMs: number;
  readonly #output: string | undefined;
  #iterations = 0;
  #runs: HarnessRun[] = [];

  constructor(binary: string, mode: HarnessMode, input: string, roundMs: number, output?: string) {
    this.#binary = binary;
    this.#mode = mode;
    this.#input = input;
    this.#roundMs = roundMs;
    this.#output = output;
  }

  round(): void {
    if (this.#iterations === 0) {
      const estimate = runHarness(this.#binary, this.#mode, this.#input, 210, this.#output);
      this.#iterations = Math.max(
        210,
        Math.round((this.#roundMs * 1000) / Math.max(estimate.medianUs, 0.01)),
      );
    }
    this.#runs.push(runHarness(this.#binary, this.#mode, this.#input, this.#iterations));
  }

  result(): HarnessTiming {
    const batchesUs = this.#runs.flatMap((r) => r.batchesUs);
    const last = this.#runs[this.#runs.length - 1];
    if (last === undefined) throw new Error("LibwbxmlTimer.result() before any round");
    return {
      medianUs: median(batchesUs),
      minUs: Math.min(...batchesUs),
      batches: batchesUs.length,
      iterations: this.#runs.reduce((n, r) => n + r.iterations, 0),
      outBytes: last.outBytes,
      version: last.version,
    };
  }
}

function runHarness(
  binary: string,
  mode: HarnessMode,
  input: string,
  iterations: number,
  output?: string,
): HarnessRun {
  const args = [mode, input, String(iterations), ...(output === undefined ? [] : [output])];
  const result = spawnSync(binary, args, { encoding: "utf8", timeout: 120_000 });
  if (result.status !== 0) {
    const detail = (
      result.stderr || String(result.error ?? `exit ${result.status ?? result.signal ?? "?"}`)
    ).trim();
    if (detail.includes("error while loading shared libraries")) {
      throw new BenchError(
        `the libwbxml harness cannot load libwbxml2 (${firstLine(detail)}): ${NEED_LIBWBXML}`,
      );
    }
    throw new BenchError(`libwbxml harness ${args.join(" ")} failed: ${detail}`);
  }
  const fields = new Map(
    result.stdout
      .trim()
      .split(/\s+/)
      .map((kv): [string, string] => {
        const eq = kv.indexOf("=");
        return [kv.slice(0, eq), kv.slice(eq + 1)];
      }),
  );
  const bad = (key: string): BenchError =>
    new BenchError(`libwbxml harness printed no valid ${key}: ${result.stdout.trim()}`);
  const num = (key: string): number => {
    const value = Number(fields.get(key));
    if (!Number.isFinite(value)) throw bad(key);
    return value;
  };
  const batchesUs = (fields.get("batches_us") ?? "").split(",").map(Number);
  if (batchesUs.length === 0 || !batchesUs.every(Number.isFinite)) throw bad("batches_us");
  return {
    medianUs: num("median_us"),
    batchesUs,
    iterations: num("iterations"),
    outBytes: num("out_bytes"),
    version: fields.get("libwbxml") ?? "?",
  };
}

/**
 * `xml2wbxml -n -v 1.2` of the XML file, or a reason it could not run (the tool is in the Debian
 * package libwbxml2-utils). The tool also prints a success line on stdout, hence the output file.
 */
export function xml2wbxml(
  xmlPath: string,
  outPath: string,
): { readonly bytes: Uint8Array } | { readonly error: string } {
  const result = spawnSync("xml2wbxml", ["-n", "-v", "1.2", "-o", outPath, xmlPath], {
    encoding: "utf8",
    timeout: 60_000,
  });
  if (isMissingCommand(result)) return { error: "xml2wbxml not found (Debian package libwbxml2-utils)" };
  if (result.status !== 0) return { error: `xml2wbxml failed: ${(result.stderr || result.stdout).trim()}` };
  return { bytes: new Uint8Array(readFileSync(outPath)) };
}

/** Offset of the first differing byte, or undefined when equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number | undefined {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? undefined : n;
}

function isMissingCommand(result: SpawnSyncReturns<string>): boolean {
  return (result.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}
