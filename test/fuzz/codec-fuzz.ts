/**
 * Mutation fuzzing of the SyncML DM decoders (XML and WBXML, nested TNDS documents included).
 *
 *   npm run fuzz -- [--count N] [--seed S] [--strict] [--no-save]
 *
 * Seeds: messages from test/helpers/arbitraries.ts encoded both ways, the files of
 * test/fixtures/syncml/ (and their WBXML re-encoding) and of test/fixtures/malformed/. Each input is
 * a seed after 1..4 mutations: bit flips, byte set/insert/delete, span duplicate/repeat/delete,
 * truncation, splices of two seeds, mb_u_int32 values written where lengths and indexes live, WBXML
 * tokens and XML snippets.
 *
 * For each input `tryDecodeMessage` must return ok or a GatewayError with a Codec_* code and leave
 * the input unchanged. Anything else is a failure, as is a decode slower than 250 ms or heap growth
 * out of proportion to the input (> 64 x its bytes + 8 MB): the input is saved as
 * test/fixtures/malformed/fuzz-<kind>-<hash>.bin and the run exits 1. A message that decodes is
 * also encoded again, in its own format and in the other one, and decoded: a different model (UTF-8
 * opaque Data becoming text in XML aside, which is by design) is reported and saved as "unstable"
 * (a failure with --strict).
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import v8 from "node:v8";
import vm from "node:vm";
import fc from "fast-check";
import { ErrorCode, GatewayError, isGatewayError } from "../../src/core/errors.js";
import {
  DEFAULT_LIMITS,
  decodeMessage,
  encodeMessage,
  messageToElement,
  tryDecodeMessage,
  type DecodeLimits,
  type Encoding,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import { syncMLMessage, xmlSpelling } from "../helpers/arbitraries.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
export const MALFORMED_DIR = `${FIXTURES}malformed/`;
const SYNCML_DIR = `${FIXTURES}syncml/`;

/** Seeds larger than this are left out: they would dominate the time of a run. */
const MAX_SEED_BYTES = 32 * 1024;
/** Mutated inputs are cut to this size. */
const MAX_INPUT_BYTES = 256 * 1024;
const HEAP_BATCH = 256;

export interface Seed {
  readonly name: string;
  readonly bytes: Uint8Array;
}

export type FailureKind = "crash" | "slow" | "heap" | "impure" | "unstable";

export interface FuzzFailure {
  readonly kind: FailureKind;
  readonly input: Uint8Array;
  readonly detail: string;
  /** Where the input was saved, when it was. */
  readonly file?: string;
}

export interface FuzzOptions {
  /** Mutated inputs to run (after every seed as it is). */
  readonly count: number;
  readonly seed: number;
  /** Default: loadSeeds(seed). */
  readonly seeds?: readonly Seed[];
  /** A single decode slower than this fails the run. Default 250. */
  readonly maxDecodeMs?: number;
  /** Check heap growth per batch of inputs. Default true. */
  readonly heapCheck?: boolean;
  /** Re-encode what decodes and compare. Default true. */
  readonly reencodeCheck?: boolean;
  /** Make an unstable re-encoding a failure. Default false: it is reported. */
  readonly strict?: boolean;
  /** Save failing inputs here (a directory path ending in /). Default: not saved. */
  readonly saveDir?: string;
  /** Stop after this many failures. Default 5. */
  readonly maxFailures?: number;
  readonly progress?: (done: number, total: number) => void;
}

export interface FuzzSummary {
  readonly seed: number;
  readonly seeds: number;
  readonly inputs: number;
  readonly inputBytes: number;
  readonly ok: number;
  readonly errors: ReadonlyMap<string, number>;
  readonly reencoded: { readonly stable: number; readonly refused: number; readonly unstable: number };
  readonly slowest: { readonly ms: number; readonly bytes: number };
  readonly worstPerByte: { readonly usPerByte: number; readonly ms: number; readonly bytes: number };
  readonly maxHeapGrowth: { readonly bytes: number; readonly batchInputBytes: number; readonly gc: boolean };
  readonly durationMs: number;
  readonly failures: readonly FuzzFailure[];
  /** Examples of unstable re-encodings (first few), when not strict. */
  readonly unstable: readonly FuzzFailure[];
}

// ---- randomness ----

/** mulberry32: small, fast, seedable; good enough to pick mutations. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.next() / 0x100000000) * n);
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error("pick from an empty list");
    return item;
  }
}

// ---- seeds ----

/**
 * Known amplifiers (see the pending tests in test/unit/codec-hostile.test.ts): each decode of one of
 * these or a mutation of it costs ~25 ms, a fifth of a run's time for 1/200 of its seeds.
 */
const SLOW_SEED = /^amplification-/;

function readSeeds(dir: string, prefix: string): Seed[] {
  if (!existsSync(dir)) return [];
  const seeds: Seed[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (SLOW_SEED.test(name)) continue;
    const path = dir + name;
    if (!statSync(path).isFile() || statSync(path).size > MAX_SEED_BYTES) continue;
    seeds.push({ name: `${prefix}${name}`, bytes: new Uint8Array(readFileSync(path)) });
  }
  return seeds;
}

/** Arbitrary messages (both encodings), the SyncML fixtures (and their WBXML form), the malformed inputs. */
export function loadSeeds(seed: number, generated = 40): Seed[] {
  const seeds: Seed[] = [];
  const add = (name: string, message: SyncMLMessage, encoding: Encoding): void => {
    try {
      seeds.push({ name, bytes: encodeMessage(message, encoding) });
    } catch (e) {
      if (!(e instanceof GatewayError)) throw e; // Codec_EncodeFailed: the format cannot carry it
    }
  };
  const small = { maxContainerDepth: 1 };
  fc.sample(syncMLMessage({ ...small, target: "wbxml" }), { seed, numRuns: generated }).forEach((m, i) => {
    add(`arbitrary-${i}.wbxml`, m, "wbxml");
  });
  fc.sample(syncMLMessage({ ...small, target: "xml" }), { seed: seed + 1, numRuns: generated }).forEach(
    (m, i) => {
      // Half as the encoder writes XML, half in other spellings (prefixes, CDATA, comments, DOCTYPE).
      if (i % 2 === 0) add(`arbitrary-${i}.xml`, m, "xml");
      else
        seeds.push({
          name: `arbitrary-${i}-spelling.xml`,
          bytes: xmlSpelling(messageToElement(m, "xml"), seed + i),
        });
    },
  );
  for (const s of readSeeds(SYNCML_DIR, "syncml/")) {
    seeds.push(s);
    const decoded = tryDecodeMessage(s.bytes);
    if (decoded.ok && decoded.value.encoding === "xml")
      add(`${s.name}.wbxml`, decoded.value.message, "wbxml");
  }
  seeds.push(...readSeeds(MALFORMED_DIR, "malformed/"));
  return seeds;
}

// ---- mutations ----

const INTERESTING_BYTES = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x40, 0x41, 0x43, 0x44, 0x45, 0x7f, 0x80, 0x81, 0x83, 0x84, 0xc0, 0xc3, 0xc4,
  0xff, 0x3c, 0x3e, 0x26, 0x0a, 0x0d,
];

/** Values for mb_u_int32 fields: boundaries of the 7-bit groups, 2^32 +- 1, and tiny ones. */
const INTERESTING_UINTS = [
  0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x3fff, 0x4000, 0x1fffff, 0x200000, 0xfffffff, 0x10000000, 0x7fffffff,
  0xffffffff, 0x100000000, 0x7ffffffff,
];

/** WBXML global tokens and SyncML/MetInf tag tokens, bare and with the content/attribute bits. */
const WBXML_TOKENS = [
  [0x00, 0x00],
  [0x00, 0x01],
  [0x00, 0x02],
  [0x01],
  [0x02, 0x41],
  [0x03, 0x41, 0x00],
  [0x03, 0x00],
  [0x04, 0x00],
  [0x44, 0x00],
  [0x83, 0x00],
  [0xc3, 0x00],
  [0xc3, 0x01, 0x41],
  [0x43],
  [0x40],
  [0x80],
  [0xc0],
  [0x84],
  [0xc4],
];

const SYNCML_TAGS = [
  "SyncML",
  "SyncHdr",
  "SyncBody",
  "VerDTD",
  "VerProto",
  "SessionID",
  "MsgID",
  "Target",
  "Source",
  "LocURI",
  "LocName",
  "Cred",
  "Meta",
  "Data",
  "Item",
  "Alert",
  "Add",
  "Replace",
  "Get",
  "Exec",
  "Atomic",
  "Sequence",
  "Status",
  "Results",
  "CmdID",
  "MsgRef",
  "CmdRef",
  "Cmd",
  "Chal",
  "Final",
  "NoResp",
  "MoreData",
  "Correlator",
  "TargetRef",
  "SourceRef",
  "Sync",
  "MgmtTree",
  "Node",
  "NodeName",
  "Value",
  "Type",
  "Format",
  "MetInf",
  "Anchor",
  "Mem",
  "EMI",
];

const XML_SNIPPETS = [
  "<",
  ">",
  "&",
  "&amp;",
  "&#13;",
  "&#0;",
  "&#x10FFFF;",
  "&#xD800;",
  "&lt",
  "]]>",
  "<![CDATA[",
  "<![CDATA[&<>]]>",
  "<!--",
  "-->",
  "<!-- & -->",
  "<?x y?>",
  "<?xml version='1.0'?>",
  "<!DOCTYPE SyncML>",
  "<!DOCTYPE a [<!ENTITY e 'x'>]>",
  "&e;",
  "</",
  "/>",
  ' xmlns="syncml:metinf"',
  ' xmlns="syncml:dmddf1.2"',
  ' xmlns:m="syncml:metinf"',
  ' a="b"',
  "m:",
  "\r\n",
  "\t",
  "\u0000",
  "\ufeff",
  "\uffff",
  " encoding='latin1'",
  " encoding='UTF-16'",
];

function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(Math.min(length, MAX_INPUT_BYTES));
  let at = 0;
  for (const p of parts) {
    if (at >= out.length) break;
    const take = p.subarray(0, out.length - at);
    out.set(take, at);
    at += take.length;
  }
  return out;
}

export function mbUint32Bytes(value: number, overlong = 0): Uint8Array {
  const out = [value % 128];
  let v = Math.floor(value / 128);
  while (v > 0) {
    out.unshift((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  for (let i = 0; i < overlong; i++) out.unshift(0x80);
  return Uint8Array.from(out);
}

/** XML markup and name characters: random bytes for XML inputs come mostly from here, to stay UTF-8. */
const XML_BYTES = [...new TextEncoder().encode(`<>&;#x"'/=![]?-:_. \t\r\naZ09`)];

/** A random byte: for XML input mostly ASCII that means something to XML, for WBXML any byte. */
function randomByte(rng: Rng, xml: boolean): number {
  if (xml && rng.chance(0.7)) return rng.chance(0.6) ? rng.pick(XML_BYTES) : 0x20 + rng.int(0x5f);
  return rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
}

function randomBytes(rng: Rng, n: number, xml: boolean): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = randomByte(rng, xml);
  return out;
}

function isXml(bytes: Uint8Array): boolean {
  const first = bytes[0];
  return (
    first === 0x3c || first === 0xef || first === 0x20 || first === 0x09 || first === 0x0a || first === 0x0d
  );
}

/** A position where a length or index is likely: in the header, or after OPAQUE, STR_T, LITERAL, ENTITY. */
function lengthPosition(rng: Rng, b: Uint8Array): number {
  if (rng.chance(0.3)) return 1 + rng.int(Math.min(4, Math.max(1, b.length - 1)));
  for (let tries = 0; tries < 8; tries++) {
    const i = rng.int(b.length);
    const t = b[i];
    if (t === 0xc3 || t === 0x83 || t === 0x04 || t === 0x44 || t === 0x02) return i + 1;
  }
  return rng.int(b.length + 1);
}

type Mutator = (rng: Rng, b: Uint8Array, seeds: readonly Seed[]) => Uint8Array;

const MUTATORS: readonly { readonly name: string; readonly weight: number; readonly run: Mutator }[] = [
  {
    name: "bit flip",
    weight: 4,
    run: (rng, b) => {
      const out = b.slice();
      if (out.length === 0) return out;
      const xml = isXml(b); // in XML, mostly flip the low 7 bits: the input stays UTF-8
      for (let n = 1 + rng.int(3); n > 0; n--) {
        const i = rng.int(out.length);
        out[i] = (out[i] ?? 0) ^ (1 << rng.int(xml && rng.chance(0.8) ? 7 : 8));
      }
      return out;
    },
  },
  {
    name: "byte set",
    weight: 3,
    run: (rng, b) => {
      const out = b.slice();
      if (out.length > 0) out[rng.int(out.length)] = randomByte(rng, isXml(b));
      return out;
    },
  },
  {
    name: "insert bytes",
    weight: 2,
    run: (rng, b) => {
      const i = rng.int(b.length + 1);
      return concat(b.subarray(0, i), randomBytes(rng, 1 + rng.int(8), isXml(b)), b.subarray(i));
    },
  },
  {
    name: "delete span",
    weight: 2,
    run: (rng, b) => {
      const i = rng.int(b.length);
      return concat(b.subarray(0, i), b.subarray(Math.min(b.length, i + 1 + rng.int(16))));
    },
  },
  {
    name: "duplicate span",
    weight: 2,
    run: (rng, b) => {
      const i = rng.int(b.length);
      const span = b.subarray(i, Math.min(b.length, i + 1 + rng.int(64)));
      const at = rng.int(b.length + 1);
      return concat(b.subarray(0, at), span, b.subarray(at));
    },
  },
  {
    name: "repeat span",
    weight: 1,
    run: (rng, b) => {
      const i = rng.int(b.length);
      const span = b.subarray(i, Math.min(b.length, i + 1 + rng.int(16)));
      const times = 2 + rng.int(rng.chance(0.2) ? 2000 : 64);
      const repeated = new Uint8Array(Math.min(span.length * times, MAX_INPUT_BYTES));
      for (let at = 0; at < repeated.length; at += span.length)
        repeated.set(span.subarray(0, repeated.length - at), at);
      return concat(b.subarray(0, i), repeated, b.subarray(i));
    },
  },
  {
    name: "truncate",
    weight: 2,
    run: (rng, b) => b.slice(0, rng.int(b.length + 1)),
  },
  {
    name: "splice",
    weight: 2,
    run: (rng, b, seeds) => {
      const other = rng.pick(seeds).bytes;
      return concat(b.subarray(0, rng.int(b.length + 1)), other.subarray(rng.int(other.length + 1)));
    },
  },
  {
    name: "mb_u_int32",
    weight: 3,
    run: (rng, b) => {
      const at = lengthPosition(rng, b);
      const value = rng.chance(0.7)
        ? rng.pick(INTERESTING_UINTS)
        : rng.chance(0.5)
          ? rng.int(b.length + 16)
          : rng.next();
      const encoded = mbUint32Bytes(value, rng.chance(0.1) ? 1 + rng.int(2) : 0);
      // Replace the old value's bytes (it ends at the first byte without the high bit).
      let end = at;
      while (end < b.length && end - at < 6 && ((b[end] ?? 0) & 0x80) !== 0) end++;
      return concat(b.subarray(0, at), encoded, b.subarray(Math.min(b.length, end + 1)));
    },
  },
  {
    name: "token",
    weight: 3,
    run: (rng, b) => {
      const at = rng.int(b.length + 1);
      let insert: Uint8Array;
      if (isXml(b)) {
        const snippet = rng.chance(0.4)
          ? `<${rng.chance(0.3) ? "/" : ""}${rng.pick(SYNCML_TAGS)}${rng.chance(0.3) ? "/" : ""}>`
          : rng.pick(XML_SNIPPETS);
        insert = new TextEncoder().encode(snippet);
      } else if (rng.chance(0.5)) {
        insert = Uint8Array.from(rng.pick(WBXML_TOKENS));
      } else {
        // A tag token of page 0 or 1 with random content/attribute bits.
        insert = Uint8Array.from([
          (0x05 + rng.int(0x3b)) | (rng.chance(0.6) ? 0x40 : 0) | (rng.chance(0.05) ? 0x80 : 0),
        ]);
      }
      return concat(b.subarray(0, at), insert, b.subarray(at));
    },
  },
];

const TOTAL_WEIGHT = MUTATORS.reduce((s, m) => s + m.weight, 0);

/** One fuzz input: a seed after 1..4 mutations. */
export function mutate(rng: Rng, seeds: readonly Seed[]): Uint8Array {
  let bytes = rng.pick(seeds).bytes;
  const rounds = 1 + (rng.chance(0.5) ? 0 : rng.int(4));
  for (let r = 0; r < rounds; r++) {
    let pick = rng.int(TOTAL_WEIGHT);
    for (const m of MUTATORS) {
      pick -= m.weight;
      if (pick < 0) {
        bytes = m.run(rng, bytes, seeds);
        break;
      }
    }
  }
  return bytes;
}

// ---- the run ----

function findGc(): (() => void) | undefined {
  const global = globalThis as { gc?: () => void };
  if (typeof global.gc === "function") return global.gc;
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

function hash(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

function hexPreview(bytes: Uint8Array, max = 96): string {
  const hex = Buffer.from(bytes.subarray(0, max)).toString("hex");
  return bytes.length > max ? `${hex}... (${bytes.length} bytes)` : hex;
}

interface DecodeRun {
  readonly options: { encoding?: Encoding; limits?: DecodeLimits };
  readonly label: string;
}

/** Most inputs are auto-detected with the default limits; some are forced or get small limits. */
function decodeRun(rng: Rng): DecodeRun {
  const roll = rng.int(20);
  if (roll === 0) return { options: { encoding: "xml" }, label: "as xml" };
  if (roll === 1) return { options: { encoding: "wbxml" }, label: "as wbxml" };
  if (roll === 2) {
    const limits: DecodeLimits = {
      maxBytes: rng.chance(0.5) ? DEFAULT_LIMITS.maxBytes : 16 + rng.int(4096),
      maxDepth: 1 + rng.int(12),
      maxElements: 1 + rng.int(200),
    };
    return { options: { limits }, label: `limits ${JSON.stringify(limits)}` };
  }
  return { options: {}, label: "" };
}

/** Runs `count` mutated inputs through the decoders. Pure apart from saving failing inputs. */
export function runFuzz(options: FuzzOptions): FuzzSummary {
  const started = performance.now();
  const rng = new Rng(options.seed);
  const seeds = options.seeds ?? loadSeeds(options.seed);
  if (seeds.length === 0) throw new Error("no fuzz seeds");
  const maxMs = options.maxDecodeMs ?? 250;
  const maxFailures = options.maxFailures ?? 5;
  const gc = options.heapCheck === false ? undefined : findGc();
  const heapCheck = options.heapCheck !== false;

  const errors = new Map<string, number>();
  const failures: FuzzFailure[] = [];
  const unstable: FuzzFailure[] = [];
  const reencoded = { stable: 0, refused: 0, unstable: 0 };
  let ok = 0;
  let inputs = 0;
  let inputBytes = 0;
  let slowest = { ms: 0, bytes: 0 };
  let worstPerByte = { usPerByte: 0, ms: 0, bytes: 0 };
  let maxHeapGrowth = { bytes: 0, batchInputBytes: 0, gc: gc !== undefined };

  const fail = (kind: FailureKind, input: Uint8Array, detail: string): void => {
    let file: string | undefined;
    if (options.saveDir !== undefined) {
      file = `${options.saveDir}fuzz-${kind}-${hash(input)}.bin`;
      if (!existsSync(file)) writeFileSync(file, input);
    }
    const failure: FuzzFailure = { kind, input, detail, ...(file !== undefined && { file }) };
    if (kind === "unstable" && options.strict !== true) {
      // Keep one example of each kind of instability (the detail's first line, numbers aside).
      const signature = (d: string): string => (d.split("\n")[0] ?? "").replace(/\d+/g, "#");
      if (unstable.length < 10 && !unstable.some((u) => signature(u.detail) === signature(detail)))
        unstable.push(failure);
    } else {
      failures.push(failure);
    }
  };

  /** Decodes once; returns the time taken. With `record`, counts the outcome and records failures. */
  const decodeOnce = (input: Uint8Array, run: DecodeRun, record = true): number => {
    const copy = input.slice();
    const t0 = performance.now();
    let result: ReturnType<typeof tryDecodeMessage> | undefined;
    try {
      result = tryDecodeMessage(input, run.options);
    } catch (e) {
      const what = e instanceof Error ? (e.stack ?? e.message) : String(e);
      if (record) fail("crash", input, `${run.label ? `(${run.label}) ` : ""}${what}`);
    }
    const ms = performance.now() - t0;
    if (!record) return ms;
    if (!isDeepStrictEqual(input, copy)) fail("impure", input, "decoding changed its input");
    if (result === undefined) return ms;
    if (result.ok) {
      ok++;
      if (options.reencodeCheck !== false) reencode(input, result.value.message, result.value.encoding);
    } else {
      const error = result.error;
      if (!(error instanceof GatewayError) || !error.code.startsWith("Codec_")) {
        fail("crash", input, `not a Codec_* GatewayError: ${String(error)}`);
      } else {
        errors.set(error.code, (errors.get(error.code) ?? 0) + 1);
      }
    }
    return ms;
  };

  /** Encodes a decoded message in both formats and decodes it again: it must come back the same. */
  const reencode = (input: Uint8Array, message: SyncMLMessage, decodedAs: Encoding): void => {
    for (const encoding of [decodedAs, decodedAs === "xml" ? "wbxml" : "xml"] as const) {
      let bytes: Uint8Array;
      try {
        bytes = encodeMessage(message, encoding);
      } catch (e) {
        if (isGatewayError(e, ErrorCode.Codec_EncodeFailed)) {
          reencoded.refused++; // what the format cannot carry (binary in XML, Correlator in 1.1 WBXML...)
          continue;
        }
        const what = e instanceof Error ? (e.stack ?? e.message) : String(e);
        fail("crash", input, `encoding the decoded message as ${encoding} threw: ${what}`);
        continue;
      }
      let again: SyncMLMessage | undefined;
      let problem = "";
      try {
        again = decodeMessage(bytes, { encoding }).message;
      } catch (e) {
        problem = `the re-encoding does not decode: ${e instanceof Error ? e.message : String(e)}`;
      }
      // By design XML has no opaque form: bytes that are UTF-8 text travel as text (see xml-encode.ts).
      const expected = encoding === "xml" && decodedAs === "wbxml" ? opaqueAsText(message) : message;
      if (again !== undefined && isDeepStrictEqual(again, expected)) {
        reencoded.stable++;
        continue;
      }
      reencoded.unstable++;
      if (problem === "") {
        problem = `decode(encode(m)) != m at ${again === undefined ? "-" : firstDifference(expected, again)}`;
      }
      fail("unstable", input, `${decodedAs} -> ${encoding}: ${problem}`);
    }
  };

  let batchBytes = 0;
  let batchStartHeap = 0;
  let batchInputs: { input: Uint8Array; run: DecodeRun }[] = [];
  const startBatch = (): void => {
    gc?.();
    batchStartHeap = process.memoryUsage().heapUsed;
    batchBytes = 0;
    batchInputs = [];
  };
  const endBatch = (): void => {
    const growth = process.memoryUsage().heapUsed - batchStartHeap;
    if (growth > maxHeapGrowth.bytes)
      maxHeapGrowth = { bytes: growth, batchInputBytes: batchBytes, gc: gc !== undefined };
    if (growth <= 64 * batchBytes + 8 * 1024 * 1024) return;
    // Over budget: find the input responsible, one at a time.
    for (const { input, run } of batchInputs) {
      gc?.();
      const before = process.memoryUsage().heapUsed;
      decodeOnce(input, run, false);
      const used = process.memoryUsage().heapUsed - before;
      if (used > 64 * input.length + 8 * 1024 * 1024) {
        fail(
          "heap",
          input,
          `heap grew by ${(used / 1e6).toFixed(1)} MB for ${input.length} bytes (${run.label || "auto"})`,
        );
        return;
      }
    }
  };

  if (heapCheck) startBatch();
  // Every seed as it is first (saved crashes are seeds: a regression shows at once), then mutations.
  const total = seeds.length + options.count;
  for (let n = 0; n < total && failures.length < maxFailures; n++) {
    const input = n < seeds.length ? (seeds[n]?.bytes ?? new Uint8Array(0)) : mutate(rng, seeds);
    const run: DecodeRun = n < seeds.length ? { options: {}, label: "" } : decodeRun(rng);
    let ms = decodeOnce(input, run);
    if (ms > maxMs) {
      // A GC pause can make any decode slow once: it must be slow twice to count.
      ms = Math.min(ms, decodeOnce(input, run, false));
      if (ms > maxMs)
        fail(
          "slow",
          input,
          `decoding took ${ms.toFixed(0)} ms for ${input.length} bytes (${run.label || "auto"})`,
        );
    }
    inputs++;
    inputBytes += input.length;
    // A new record is timed again (the faster of two): JIT warm-up and GC pauses are not the input's.
    const record = (): number => (ms = Math.min(ms, decodeOnce(input, run, false)));
    if (ms > slowest.ms && record() > slowest.ms) slowest = { ms, bytes: input.length };
    if (input.length >= 64 && (ms * 1000) / input.length > worstPerByte.usPerByte) {
      record();
      const usPerByte = (ms * 1000) / input.length;
      if (usPerByte > worstPerByte.usPerByte) worstPerByte = { usPerByte, ms, bytes: input.length };
    }
    if (heapCheck) {
      batchBytes += input.length;
      batchInputs.push({ input, run });
      if (batchInputs.length >= HEAP_BATCH) {
        endBatch();
        startBatch();
      }
    }
    if (options.progress !== undefined && (n + 1) % 10_000 === 0) options.progress(n + 1, total);
  }
  if (heapCheck && batchInputs.length > 0) endBatch();

  return {
    seed: options.seed,
    seeds: seeds.length,
    inputs,
    inputBytes,
    ok,
    errors,
    reencoded,
    slowest,
    worstPerByte,
    maxHeapGrowth,
    durationMs: performance.now() - started,
    failures,
    unstable,
  };
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The model with every opaque Data that is UTF-8 as text Data: what XML makes of it. */
function opaqueAsText<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v: unknown) => opaqueAsText(v)) as T;
  if (typeof value !== "object" || value === null || value instanceof Uint8Array) return value;
  const record = value as Record<string, unknown>;
  if (record["kind"] === "opaque" && record["bytes"] instanceof Uint8Array) {
    try {
      return { kind: "text", text: STRICT_UTF8.decode(record["bytes"]) } as T;
    } catch {
      return value;
    }
  }
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, opaqueAsText(v)])) as T;
}

function show(v: unknown): string {
  const json = JSON.stringify(v, (_k, x: unknown) =>
    x instanceof Uint8Array ? `<${Buffer.from(x).toString("hex")}>` : x,
  );
  return json.length > 300 ? `${json.slice(0, 300)}...` : json;
}

/** The path of the first place two values differ, with both values there. */
export function firstDifference(a: unknown, b: unknown, path = "$"): string {
  if (isDeepStrictEqual(a, b)) return "";
  const objects = typeof a === "object" && a !== null && typeof b === "object" && b !== null;
  if (
    objects &&
    !(a instanceof Uint8Array) &&
    !(b instanceof Uint8Array) &&
    Array.isArray(a) === Array.isArray(b)
  ) {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    for (const key of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
      if (!(key in ra) || !(key in rb) || !isDeepStrictEqual(ra[key], rb[key])) {
        if (key in ra && key in rb) return firstDifference(ra[key], rb[key], `${path}.${key}`);
        return `${path}.${key}: ${key in ra ? show(ra[key]) : "(absent)"} -> ${key in rb ? show(rb[key]) : "(absent)"}`;
      }
    }
  }
  return `${path}: ${show(a)} -> ${show(b)}`;
}
/** The one-line summary `npm run fuzz` prints. */
export function formatSummary(s: FuzzSummary): string {
  const seconds = s.durationMs / 1000;
  const errors = [...s.errors.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code.replace(/^Codec_/, "")} ${n}`)
    .join(", ");
  return (
    `fuzz: ${s.inputs} inputs (seed ${s.seed}, ${s.seeds} seeds) in ${seconds.toFixed(1)} s, ` +
    `${Math.round(s.inputs / seconds)}/s, ${(s.inputBytes / 1e6 / seconds).toFixed(1)} MB/s; ` +
    `ok ${s.ok}; errors: ${errors || "none"}; ` +
    `re-encoded ok ${s.reencoded.stable}, refused ${s.reencoded.refused}, unstable ${s.reencoded.unstable}; ` +
    `slowest ${s.slowest.ms.toFixed(1)} ms (${s.slowest.bytes} B), ` +
    `worst ${s.worstPerByte.usPerByte.toFixed(2)} us/B (${s.worstPerByte.ms.toFixed(1)} ms, ${s.worstPerByte.bytes} B); ` +
    `max heap growth ${(s.maxHeapGrowth.bytes / 1e6).toFixed(1)} MB per ${HEAP_BATCH} inputs ` +
    `(${(s.maxHeapGrowth.batchInputBytes / 1e6).toFixed(2)} MB of input${s.maxHeapGrowth.gc ? "" : ", no gc"}); ` +
    `failures ${s.failures.length}`
  );
}

export function describeFailure(f: FuzzFailure): string {
  return `${f.kind.toUpperCase()}${f.file === undefined ? "" : ` saved as ${f.file}`}\n  input: ${hexPreview(f.input)}\n  ${f.detail.replace(/\n/g, "\n  ")}`;
}

function parseArgs(argv: readonly string[]): { count: number; seed: number; strict: boolean; save: boolean } {
  let count = 100_000;
  let seed = Math.floor(Math.random() * 0x7fffffff);
  let strict = false;
  let save = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${arg ?? ""} needs a non-negative integer`);
      return v;
    };
    if (arg === "--count") count = value();
    else if (arg === "--seed") seed = value();
    else if (arg === "--strict") strict = true;
    else if (arg === "--no-save") save = false;
    else throw new Error(`unknown option ${arg ?? ""} (--count N, --seed S, --strict, --no-save)`);
  }
  return { count, seed, strict, save };
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const summary = runFuzz({
    count: args.count,
    seed: args.seed,
    strict: args.strict,
    ...(args.save && { saveDir: MALFORMED_DIR }),
    progress: (done, total) => {
      process.stderr.write(`fuzz: ${done} / ${total}\n`);
    },
  });
  for (const u of summary.unstable) console.log(describeFailure(u));
  for (const f of summary.failures) console.error(describeFailure(f));
  console.log(formatSummary(summary));
  process.exitCode = summary.failures.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main();
