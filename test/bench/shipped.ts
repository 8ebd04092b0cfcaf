/**
 * Benchmarks measure the code the gateway ships: the tsc output in dist/, not the TypeScript
 * sources run through tsx (whose on-the-fly transform made the codec up to 1.8x slower). `npm run
 * bench` builds dist/ first; the types still come from src/.
 */
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as Codec from "../../src/syncml/index.js";
import { BenchError } from "./common.js";

type Codec = typeof Codec;

const DIST_CODEC = fileURLToPath(new URL("../../dist/src/syncml/index.js", import.meta.url));

export async function loadShippedCodec(): Promise<Codec> {
  if (!existsSync(DIST_CODEC)) {
    throw new BenchError(`${DIST_CODEC} is missing: run "npm run build" (npm run bench does it first)`);
  }
  return (await import(pathToFileURL(DIST_CODEC).href)) as Codec;
}

/** Any module of dist/src, by its path below it (`tree/store.js`); type it from src. */
export async function loadShipped<T>(relative: string): Promise<T> {
  const file = distFile(relative);
  if (!existsSync(file)) {
    throw new BenchError(`${file} is missing: run "npm run build" (npm run bench does it first)`);
  }
  return (await import(pathToFileURL(file).href)) as T;
}

/** The path of a dist/src module (`sim/dm-server.js`); it may not exist yet. */
export function distFile(relative: string): string {
  return fileURLToPath(new URL(`../../dist/src/${relative}`, import.meta.url));
}
