/**
 * Reads the configuration file (JSON or YAML) and validates it (schema.ts).
 *
 *   file ──► read ──► .json: JSON.parse   .yaml/.yml: YAML   other: `{`/`[` first → JSON, else YAML
 *                         │ (a syntax error: Config_Unreadable with its line and column)
 *                         ▼
 *                    validateConfig (relative paths against the file's directory)
 *                         ▼
 *              GatewayConfig | GatewayError(Config_Invalid, context.problems: every problem)
 *
 * YAML is read with the `yaml` package as YAML 1.2 core schema: `on`/`yes` stay strings, so a
 * typo'd boolean is a reported problem, not a silent true.
 */
import { readFileSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { ErrorCode, GatewayError } from "../core/errors.js";
import { configInvalid, validateConfig, type GatewayConfig, type ValidateOptions } from "./schema.js";

export type ConfigSyntax = "json" | "yaml";

/** The syntax of `file`: by extension, else by its first non-blank character. */
export function configSyntax(file: string, text: string): ConfigSyntax {
  const ext = extname(file).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".yaml" || ext === ".yml") return "yaml";
  return /^\s*[{[]/.test(text) ? "json" : "yaml";
}

/**
 * Parses the text of a config file.
 * @throws GatewayError(Config_Unreadable) for a syntax error (the message says where).
 */
export function parseConfigText(text: string, syntax: ConfigSyntax, file = "<config>"): unknown {
  try {
    if (syntax === "json") return JSON.parse(text) as unknown;
    return parseYaml(text, { schema: "core", prettyErrors: true, uniqueKeys: true }) as unknown;
  } catch (cause) {
    const detail =
      cause instanceof YAMLParseError
        ? // The first line holds the message and position; the rest is a code excerpt, which may
          // show a secret on the offending line.
          (cause.message.split("\n")[0] ?? cause.message)
        : cause instanceof Error
          ? cause.message
          : String(cause);
    throw new GatewayError(
      `${file} is not valid ${syntax.toUpperCase()}: ${detail}`,
      ErrorCode.Config_Unreadable,
      {
        cause,
        context: { file },
      },
    );
  }
}

/**
 * Reads, parses and validates `file`.
 * @throws GatewayError(Config_Unreadable) when the file cannot be read or parsed;
 *   GatewayError(Config_Invalid) with every problem (`context.problems`) when it is not a valid config.
 */
export function loadConfigFile(file: string, options: Omit<ValidateOptions, "baseDir"> = {}): GatewayConfig {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new GatewayError(
      `cannot read the configuration ${path} (${(cause as NodeJS.ErrnoException).code ?? "error"})`,
      ErrorCode.Config_Unreadable,
      { cause, context: { file: path } },
    );
  }
  const raw = parseConfigText(text, configSyntax(path, text), path);
  const result = validateConfig(raw, { ...options, baseDir: dirname(path) });
  if (!result.ok) throw configInvalid(result.problems, path);
  return result.config;
}
