/**
 * SenML JSON (RFC 8428) as LwM2M 1.1 uses it (Core 7.4.5), content format 110: pure encode and
 * decode. Each record's full name is the base name in force (`bn`, sticky across records) plus `n`;
 * names are LwM2M paths (`/3/0/0`). Values: `v` number, `vs` string, `vb` boolean, `vd` opaque
 * (base64url, RFC 8428 4.3), `vlo` object link. `bt`/`t` are read and ignored (the gateway keeps no
 * history). Hostile input throws GatewayError(Codec_*).
 */
import { ErrorCode, GatewayError } from "../../src/core/errors.js";

export type SenmlValue = number | string | boolean | Uint8Array;

export interface SenmlRecord {
  /** The full name: base name + name, an LwM2M path such as `/3/0/0`. */
  readonly name: string;
  /** Undefined for a record that names without a value (a Read-Composite request). */
  readonly value: SenmlValue | undefined;
  /** `vlo`: an object link `obj:inst`. */
  readonly objlnk?: string;
}

/** Limits for decoding what a device sent. */
export const SENML_MAX_BYTES = 1 << 20;
export const SENML_MAX_RECORDS = 10_000;

/**
 * Encodes records, factoring the longest common prefix ending in `/` into `bn` of the first record.
 */
export function encodeSenml(records: readonly SenmlRecord[]): Uint8Array {
  const base = commonBase(records.map((r) => r.name));
  const out = records.map((r, i) => {
    const rec: Record<string, unknown> = {};
    if (i === 0 && base !== "") rec["bn"] = base;
    const n = r.name.slice(base.length);
    if (n !== "") rec["n"] = n;
    const v = r.value;
    if (r.objlnk !== undefined) rec["vlo"] = r.objlnk;
    else if (typeof v === "number") rec["v"] = v;
    else if (typeof v === "string") rec["vs"] = v;
    else if (typeof v === "boolean") rec["vb"] = v;
    else if (v instanceof Uint8Array) rec["vd"] = Buffer.from(v).toString("base64url");
    return rec;
  });
  return new TextEncoder().encode(JSON.stringify(out));
}

function commonBase(names: readonly string[]): string {
  const [first, ...rest] = names;
  if (first === undefined) return "";
  let prefix = first.slice(0, first.lastIndexOf("/") + 1);
  for (const n of rest) {
    while (prefix !== "" && !n.startsWith(prefix))
      prefix = prefix.slice(0, prefix.lastIndexOf("/", prefix.length - 2) + 1);
  }
  return prefix;
}

/** Decodes a SenML JSON pack. @throws GatewayError(Codec_TooLarge | Codec_InvalidEncoding | Codec_InvalidStructure | Codec_TooManyElements). */
export function decodeSenml(bytes: Uint8Array): SenmlRecord[] {
  if (bytes.length > SENML_MAX_BYTES) {
    throw new GatewayError(`SenML pack of ${bytes.length} bytes`, ErrorCode.Codec_TooLarge, {
      context: { limit: SENML_MAX_BYTES },
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new GatewayError("SenML pack is not UTF-8 JSON", ErrorCode.Codec_InvalidEncoding, { cause: e });
  }
  if (!Array.isArray(parsed))
    throw new GatewayError("SenML pack is not an array", ErrorCode.Codec_InvalidStructure);
  if (parsed.length > SENML_MAX_RECORDS) {
    throw new GatewayError(`SenML pack of ${parsed.length} records`, ErrorCode.Codec_TooManyElements, {
      context: { limit: SENML_MAX_RECORDS },
    });
  }
  let bn = "";
  const out: SenmlRecord[] = [];
  parsed.forEach((raw: unknown, index) => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw bad(index, "a record is not an object");
    }
    const r = raw as Record<string, unknown>;
    if ("bn" in r) {
      if (typeof r["bn"] !== "string") throw bad(index, "bn is not a string");
      bn = r["bn"];
    }
    const n = r["n"] ?? "";
    if (typeof n !== "string") throw bad(index, "n is not a string");
    const name = bn + n;
    if (!/^\/\d+(\/\d+){0,3}\/?$/.test(name))
      throw bad(index, `name ${JSON.stringify(name.slice(0, 40))} is not an LwM2M path`);
    const present = ["v", "vs", "vb", "vd", "vlo"].filter((k) => k in r);
    if (present.length > 1) throw bad(index, `several values (${present.join(", ")})`);
    let value: SenmlValue | undefined;
    let objlnk: string | undefined;
    if ("v" in r) {
      if (typeof r["v"] !== "number" || !Number.isFinite(r["v"])) throw bad(index, "v is not a number");
      value = r["v"];
    } else if ("vs" in r) {
      if (typeof r["vs"] !== "string") throw bad(index, "vs is not a string");
      value = r["vs"];
    } else if ("vb" in r) {
      if (typeof r["vb"] !== "boolean") throw bad(index, "vb is not a boolean");
      value = r["vb"];
    } else if ("vd" in r) {
      const vd = r["vd"];
      if (typeof vd !== "string" || !/^[A-Za-z0-9_\-+/]*={0,2}$/.test(vd))
        throw bad(index, "vd is not base64");
      value = new Uint8Array(Buffer.from(vd, "base64url"));
    } else if ("vlo" in r) {
      if (typeof r["vlo"] !== "string" || !/^\d+:\d+$/.test(r["vlo"]))
        throw bad(index, "vlo is not obj:inst");
      objlnk = r["vlo"];
      value = objlnk;
    }
    out.push(objlnk === undefined ? { name, value } : { name, value, objlnk });
  });
  return out;
}

function bad(index: number, what: string): GatewayError {
  return new GatewayError(`SenML record ${index}: ${what}`, ErrorCode.Codec_InvalidStructure, {
    context: { record: index },
  });
}
