/**
 * The process logger (style.md 2.5), built once by the entry point and handed down as a `Logger`.
 *
 *   Logger call ──► enabled? ──► lazy text built ──► pino (level, child `ns` binding)
 *                                                     │ formatters.log: fields made safe
 *                                                     │ (redaction, bytes, cycles, throwing getters)
 *                                                     ▼
 *                                              Sink.write(JSON line) ──► format ──► destination
 *                                                journald: `<N>` + JSON (no time, journald stamps)
 *                                                json:     JSON with ISO `time`
 *                                                pretty:   `HH:MM:SS.mmm LEVEL ns text k=v ...`
 *
 * Writing is synchronous: one `destination.write()` per event, before the log call returns.
 */

import pino from "pino";
import type { LogFields, Logger, LogLevel, LogText } from "./log.js";

export type LogFormat = "journald" | "json" | "pretty";

/** Where lines go: anything with `write`; `flush` and `isTTY` are used when present. */
export interface LogDestination {
  write(line: string): unknown;
  flush?: () => unknown;
  isTTY?: boolean;
}

export interface LoggerOptions {
  /** Lowest level written. Default `"info"`. */
  level?: LogLevel;
  /** Root namespace. Default `"dmgw"`. */
  namespace?: string;
  /**
   * Line format. Default `"auto"`: `"pretty"` when the destination is a TTY, else `"journald"` when
   * `JOURNAL_STREAM` or `INVOCATION_ID` is set (running under systemd), else `"json"`.
   */
  format?: LogFormat | "auto";
  /** Default `process.stdout`. Each event is exactly one `write()` call of one `\n`-terminated line. */
  destination?: LogDestination;
  /** Field keys to redact besides the built-in ones (matched case-insensitively, at any depth). */
  redact?: readonly string[];
  /** The environment `"auto"` looks at (JOURNAL_STREAM, INVOCATION_ID). Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Field keys always written as `"[redacted]"` (case-insensitive, at any depth). */
export const REDACTED_KEYS: readonly string[] = [
  "password",
  "secret",
  "nonce",
  "nonces",
  "AAuthSecret",
  "AAuthData",
  "authorization",
  "cred",
  "hmac",
  "key",
];

export const REDACTED = "[redacted]";

/** Leading bytes shown as hex for a `Uint8Array` field (style.md 2.5: length and leading hex). */
export const LOG_HEX_BYTES = 32;

/** Objects nested deeper than this (top-level fields are depth 1) are written as a placeholder. */
const MAX_DEPTH = 6;

/** Keys pino writes itself; a field with one of these names is written as `_<key>`. */
const RESERVED_KEYS = new Set(["level", "time", "ns", "msg"]);

/** Syslog priorities journald reads from the `<N>` prefix (sd-daemon.h SD_ERR..SD_DEBUG). */
const SYSLOG_PRIORITY: Readonly<Record<LogLevel, number>> = {
  error: 3,
  warn: 4,
  info: 6,
  debug: 7,
  trace: 7,
};

/**
 * Builds the process logger.
 *
 * @throws Error when `level` is not a known level (pino refuses it).
 */
export function createLogger(options: LoggerOptions = {}): Logger & { flush(): void } {
  const destination = options.destination ?? process.stdout;
  const format = resolveFormat(options.format ?? "auto", destination, options.env ?? process.env);
  const redact = new Set([...REDACTED_KEYS, ...(options.redact ?? [])].map((k) => k.toLowerCase()));
  const sink = new Sink(destination, format);
  const root = pino(
    {
      level: options.level ?? "info",
      base: null,
      messageKey: "msg",
      timestamp: timestampFor(format),
      // Fields are already plain JSON by `safeFields`; pino's `err` serializer would re-type an `err` field.
      serializers: { err: (value: unknown) => value },
      formatters: {
        level: (label) => ({ level: label }),
        log: (fields) => safeFields(fields, redact),
      },
    },
    sink,
  );
  return new PinoLogger(root, options.namespace ?? "dmgw");
}

function resolveFormat(
  format: LogFormat | "auto",
  destination: LogDestination,
  env: Readonly<Record<string, string | undefined>>,
): LogFormat {
  if (format !== "auto") return format;
  if (destination.isTTY === true) return "pretty";
  if (nonEmpty(env["JOURNAL_STREAM"]) || nonEmpty(env["INVOCATION_ID"])) return "journald";
  return "json";
}

function nonEmpty(value: string | undefined): boolean {
  return value !== undefined && value !== "";
}

function timestampFor(format: LogFormat): NonNullable<pino.LoggerOptions["timestamp"]> {
  switch (format) {
    case "journald":
      return false;
    case "json":
      return pino.stdTimeFunctions.isoTime;
    case "pretty":
      return pino.stdTimeFunctions.epochTime;
  }
}

class PinoLogger implements Logger {
  readonly #root: pino.Logger;
  readonly #pino: pino.Logger;
  readonly #namespace: string;

  constructor(root: pino.Logger, namespace: string) {
    this.#root = root;
    this.#namespace = namespace;
    this.#pino = root.child({ ns: namespace });
  }

  error(text: LogText, fields?: LogFields): void {
    this.#log("error", text, fields);
  }
  warn(text: LogText, fields?: LogFields): void {
    this.#log("warn", text, fields);
  }
  info(text: LogText, fields?: LogFields): void {
    this.#log("info", text, fields);
  }
  debug(text: LogText, fields?: LogFields): void {
    this.#log("debug", text, fields);
  }
  trace(text: LogText, fields?: LogFields): void {
    this.#log("trace", text, fields);
  }

  enabled(level: LogLevel): boolean {
    return this.#pino.isLevelEnabled(level);
  }

  child(namespace: string): Logger & { flush(): void } {
    // A child of the root, not of this pino child: nested pino children would repeat `ns` in the line.
    return new PinoLogger(this.#root, `${this.#namespace}:${namespace}`);
  }

  /** Passes `flush()` on to the destination when it has one (the default stdout writes synchronously). */
  flush(): void {
    this.#pino.flush();
  }

  #log(level: LogLevel, text: LogText, fields: LogFields | undefined): void {
    if (!this.#pino.isLevelEnabled(level)) return;
    // No further arguments: pino then leaves `%` in the text alone (no printf formatting).
    this.#pino[level](fields ?? {}, buildText(text));
  }
}

function buildText(text: LogText): string {
  if (typeof text === "string") return text;
  try {
    return text();
  } catch (e) {
    return `[log text threw: ${describeThrown(e)}]`;
  }
}

/**
 * pino's destination. With `Symbol.for("pino.metadata")` (`needsMetadataGsym`) set, pino stores the event's numeric level in
 * `lastLevel` before each `write`, which gives journald its prefix without parsing the line.
 */
class Sink implements pino.DestinationStream {
  readonly [pino.symbols.needsMetadataGsym] = true;
  lastLevel = 30;
  readonly #destination: LogDestination;
  readonly #format: LogFormat;

  constructor(destination: LogDestination, format: LogFormat) {
    this.#destination = destination;
    this.#format = format;
  }

  write(line: string): void {
    switch (this.#format) {
      case "json":
        this.#destination.write(line);
        return;
      case "journald":
        this.#destination.write(`<${SYSLOG_PRIORITY[levelName(this.lastLevel)]}>${line}`);
        return;
      case "pretty":
        this.#destination.write(prettyLine(line));
        return;
    }
  }

  flush(): void {
    if (typeof this.#destination.flush === "function") this.#destination.flush();
  }
}

function levelName(value: number): LogLevel {
  if (value >= 50) return "error";
  if (value >= 40) return "warn";
  if (value >= 30) return "info";
  if (value >= 20) return "debug";
  return "trace";
}

/** `HH:MM:SS.mmm LEVEL namespace text key=value ...` in local time, from pino's JSON line. */
function prettyLine(json: string): string {
  const record = JSON.parse(json) as Record<string, unknown>;
  const { level, time, ns, msg, ...fields } = record;
  const when = new Date(typeof time === "number" ? time : Date.now());
  const clock =
    `${pad(when.getHours(), 2)}:${pad(when.getMinutes(), 2)}:${pad(when.getSeconds(), 2)}` +
    `.${pad(when.getMilliseconds(), 3)}`;
  const parts = [
    clock,
    String(level).toUpperCase().padEnd(5),
    String(ns),
    escapeControls(typeof msg === "string" ? msg : ""),
  ];
  for (const [key, value] of Object.entries(fields)) parts.push(`${key}=${prettyValue(value)}`);
  return `${parts.join(" ")}\n`;
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, "0");
}

function prettyValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=\\]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value);
}

function escapeControls(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point: one line per event
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/**
 * The fields as pino will stringify them: plain JSON values only, redacted keys replaced, bytes as
 * `{ bytes, hex }`, and anything that throws or cycles replaced by a placeholder. Never throws.
 */
function safeFields(fields: Record<string, unknown>, redact: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  try {
    const seen = new Set<object>([fields]);
    for (const key of Object.keys(fields)) {
      const name = RESERVED_KEYS.has(key) ? `_${key}` : key;
      out[name] = safeProperty(fields, key, 1, seen, redact);
    }
  } catch (e) {
    return { fields: `[unserialisable: ${describeThrown(e)}]` };
  }
  return out;
}

function safeProperty(
  owner: object,
  key: string,
  depth: number,
  seen: Set<object>,
  redact: ReadonlySet<string>,
): unknown {
  if (redact.has(key.toLowerCase())) return REDACTED;
  let value: unknown;
  try {
    value = (owner as Record<string, unknown>)[key];
  } catch (e) {
    return `[unserialisable: ${describeThrown(e)}]`;
  }
  return safeValue(value, depth, seen, redact);
}

function safeValue(value: unknown, depth: number, seen: Set<object>, redact: ReadonlySet<string>): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
    case "undefined":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return value.toString();
    case "symbol":
      return value.toString();
    case "function":
      return `[function ${value.name}]`;
    case "object":
      break;
  }
  if (value === null) return null;
  if (value instanceof Uint8Array) return bytesOf(value);
  if (ArrayBuffer.isView(value))
    return bytesOf(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  if (value instanceof ArrayBuffer) return bytesOf(new Uint8Array(value));
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  if (seen.has(value)) return "[circular]";
  if (depth >= MAX_DEPTH) return "[too deep]";
  seen.add(value);
  try {
    return safeObject(value, depth, seen, redact);
  } catch (e) {
    return `[unserialisable: ${describeThrown(e)}]`;
  } finally {
    seen.delete(value);
  }
}

function safeObject(value: object, depth: number, seen: Set<object>, redact: ReadonlySet<string>): unknown {
  const next = depth + 1;
  if (Array.isArray(value)) {
    return value.map((_item, i) => safeProperty(value, String(i), next, seen, redact) ?? null);
  }
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) {
      const key = String(k);
      out[key] = redact.has(key.toLowerCase()) ? REDACTED : safeValue(v, next, seen, redact);
    }
    return out;
  }
  if (value instanceof Set) return [...value].map((v: unknown) => safeValue(v, next, seen, redact) ?? null);
  const out: Record<string, unknown> = {};
  if (value instanceof Error) {
    out["type"] = value.name;
    out["message"] = value.message;
  }
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function" && !(value instanceof Error)) {
    // The replacement may be the object itself or a new one; `seen` already holds `value`.
    const replaced: unknown = toJSON.call(value);
    return replaced === value
      ? plainObject(value, out, next, seen, redact)
      : safeValue(replaced, next, seen, redact);
  }
  plainObject(value, out, next, seen, redact);
  if (value instanceof Error && value.stack !== undefined) out["stack"] = value.stack;
  return out;
}

function plainObject(
  value: object,
  out: Record<string, unknown>,
  depth: number,
  seen: Set<object>,
  redact: ReadonlySet<string>,
): Record<string, unknown> {
  for (const key of Object.keys(value)) out[key] = safeProperty(value, key, depth, seen, redact);
  return out;
}

function bytesOf(bytes: Uint8Array): { bytes: number; hex: string } {
  return {
    bytes: bytes.length,
    hex: Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, LOG_HEX_BYTES)).toString("hex"),
  };
}

function describeThrown(e: unknown): string {
  try {
    return e instanceof Error ? e.message : String(e);
  } catch {
    return "?";
  }
}
