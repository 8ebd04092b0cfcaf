/**
 * The logger every part of dmgw is handed (style.md 2.5): levels error..trace, namespaces
 * `dmgw:<area>:<module>`, debug and trace text built lazily. Parts take a `Logger` in their options
 * and default to `SILENT_LOGGER`; the process builds the real one (`createLogger`, logger.ts) once.
 *
 * Fields are machine-readable context (lengths, ids, counts). Never pass a secret, a nonce or a
 * password in a message or a field: the output redacts known keys, but the rule is not to try.
 */

export type LogLevel = "error" | "warn" | "info" | "debug" | "trace";

export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug", "trace"];

export type LogFields = Readonly<Record<string, unknown>>;

/** Text, or a function building it only when the level is enabled. */
export type LogText = string | (() => string);

export interface Logger {
  error(text: LogText, fields?: LogFields): void;
  warn(text: LogText, fields?: LogFields): void;
  info(text: LogText, fields?: LogFields): void;
  debug(text: LogText, fields?: LogFields): void;
  trace(text: LogText, fields?: LogFields): void;
  /** True when `level` would be written (to skip building costly fields). */
  enabled(level: LogLevel): boolean;
  /** A logger for a sub-namespace: `dmgw:northbound` + `session` = `dmgw:northbound:session`. */
  child(namespace: string): Logger;
}

const nothing = (): void => undefined;

/** Writes nothing: the default of every part, and of tests that do not look at logs. */
export const SILENT_LOGGER: Logger = {
  error: nothing,
  warn: nothing,
  info: nothing,
  debug: nothing,
  trace: nothing,
  enabled: () => false,
  child: () => SILENT_LOGGER,
};

/** One line as a `MemoryLogger` kept it. */
export interface LogRecord {
  readonly level: LogLevel;
  readonly namespace: string;
  readonly text: string;
  readonly fields: LogFields;
}

/**
 * Keeps every line in memory (tests assert on what was logged, and that no secret was). All levels
 * are enabled, so lazy text is always built. Children share the parent's list.
 */
export class MemoryLogger implements Logger {
  readonly records: LogRecord[];
  readonly #namespace: string;

  constructor(namespace = "dmgw", records: LogRecord[] = []) {
    this.#namespace = namespace;
    this.records = records;
  }

  error(text: LogText, fields?: LogFields): void {
    this.#add("error", text, fields);
  }
  warn(text: LogText, fields?: LogFields): void {
    this.#add("warn", text, fields);
  }
  info(text: LogText, fields?: LogFields): void {
    this.#add("info", text, fields);
  }
  debug(text: LogText, fields?: LogFields): void {
    this.#add("debug", text, fields);
  }
  trace(text: LogText, fields?: LogFields): void {
    this.#add("trace", text, fields);
  }
  enabled(): boolean {
    return true;
  }
  child(namespace: string): Logger {
    return new MemoryLogger(`${this.#namespace}:${namespace}`, this.records);
  }

  /** Every record's text and fields as one string per line (for "never logged" assertions). */
  dump(): string {
    return this.records
      .map((r) => `${r.level} ${r.namespace} ${r.text} ${JSON.stringify(r.fields, jsonBytes)}`)
      .join("\n");
  }

  #add(level: LogLevel, text: LogText, fields: LogFields | undefined): void {
    this.records.push({
      level,
      namespace: this.#namespace,
      text: typeof text === "string" ? text : text(),
      fields: fields ?? {},
    });
  }
}

function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString("hex") : value;
}
