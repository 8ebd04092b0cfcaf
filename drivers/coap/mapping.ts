/**
 * DM <-> LwM2M mapping for adaptation devices (design.md section 3, issue #6): pure.
 *
 *   DM URI (below the device's adapted subtree)     LwM2M path
 *   ./3/0/0, 3/0/0                                  /3/0/0   (numeric paths map directly)
 *   ./DevInfo/Man | Mod | DevId | FwV               /3/0/0 | /3/0/1 | /3/0/2 (serial) | /3/0/3
 *   ./DevDetail/FwV | SwV | HwV | DevTyp            /3/0/3 | /3/0/19 | /3/0/18 | /3/0/17
 *
 * so that a fan-out `Get ./DevDetail/FwV` (where a DM 1.2 device keeps its firmware version) or
 * `Get ./DevInfo/FwV` over mixed transports works on LwM2M devices too.
 *
 *   CoAP response code -> DM status: 2.xx 200; 4.00 400; 4.01, 4.03 425; 4.04 404; 4.05 405;
 *   4.06 406; 4.13 413; 4.15 415; other 4.xx 400; 5.xx 500 (a timeout is the device's 504, decided
 *   by the driver, not here).
 */

/** An LwM2M path: [object], [object, instance], [object, instance, resource] or with a resource instance. */
export type Lwm2mPath = readonly number[];

/** LwM2M ids are 16-bit; 65535 is reserved (Core 7.1 "MAX_ID"). */
const MAX_ID = 65534;

export const DEVINFO_ALIASES: Readonly<Record<string, Lwm2mPath>> = {
  Man: [3, 0, 0],
  Mod: [3, 0, 1],
  DevId: [3, 0, 2],
  FwV: [3, 0, 3],
};

/** The DevDetail leaves (OMA DM 1.2 DevDetail) that have an LwM2M Device object resource. */
export const DEVDETAIL_ALIASES: Readonly<Record<string, Lwm2mPath>> = {
  FwV: [3, 0, 3],
  SwV: [3, 0, 19],
  HwV: [3, 0, 18],
  DevTyp: [3, 0, 17],
};

/** The LwM2M path of a DM URI, or undefined when it maps to none (the command answers 404). */
export function dmUriToPath(uri: string): Lwm2mPath | undefined {
  const rel = uri.startsWith("./") ? uri.slice(2) : uri.startsWith("/") ? uri.slice(1) : uri;
  const segments = rel.replace(/\/$/, "").split("/");
  if (segments[0] === "DevInfo" && segments.length === 2) {
    return DEVINFO_ALIASES[segments[1] ?? ""];
  }
  if (segments[0] === "DevDetail" && segments.length === 2) {
    return DEVDETAIL_ALIASES[segments[1] ?? ""];
  }
  if (segments.length < 1 || segments.length > 4) return undefined;
  const out: number[] = [];
  for (const s of segments) {
    if (!/^\d{1,5}$/.test(s)) return undefined;
    const n = Number(s);
    if (n > MAX_ID) return undefined;
    out.push(n);
  }
  return out;
}

/** `/3/0/1`. */
export function pathToString(path: Lwm2mPath): string {
  return `/${path.join("/")}`;
}

/** Parses `/3/0/1` (or `3/0/1`); undefined when it is not an LwM2M path. */
export function parsePath(text: string): Lwm2mPath | undefined {
  const t = text.replace(/^\//, "").replace(/\/$/, "");
  if (t === "") return [];
  return dmUriToPath(t);
}

/** The DM status for a CoAP response code (`"2.05"`). */
export function coapCodeToDmStatus(code: string): number {
  const m = /^([245])\.(\d\d)$/.exec(code);
  if (m === null) return 500;
  const cls = m[1];
  if (cls === "2") return 200;
  if (cls === "5") return 500;
  switch (code) {
    case "4.01":
    case "4.03":
      return 425;
    case "4.04":
      return 404;
    case "4.05":
      return 405;
    case "4.06":
      return 406;
    case "4.13":
      return 413;
    case "4.15":
      return 415;
    default:
      return 400;
  }
}

export type ResourceType = "string" | "integer" | "float" | "boolean" | "opaque" | "time" | "objlnk" | "none";

export interface ResourceInfo {
  readonly name: string;
  readonly type: ResourceType;
  /** R, W, RW or E (Core appendix E / the OMA object registry). */
  readonly ops: "R" | "W" | "RW" | "E";
  readonly multiple?: true;
}

/** The resources of objects 0, 1, 3 and 5 (OMA LwM2M registry, object versions 1.1/1.0). */
export const RESOURCES: ReadonlyMap<number, ReadonlyMap<number, ResourceInfo>> = new Map([
  [
    0,
    table([
      [0, "LWM2M Server URI", "string", "RW"],
      [1, "Bootstrap-Server", "boolean", "RW"],
      [2, "Security Mode", "integer", "RW"],
      [3, "Public Key or Identity", "opaque", "RW"],
      [4, "Server Public Key", "opaque", "RW"],
      [5, "Secret Key", "opaque", "RW"],
      [10, "Short Server ID", "integer", "RW"],
    ]),
  ],
  [
    1,
    table([
      [0, "Short Server ID", "integer", "R"],
      [1, "Lifetime", "integer", "RW"],
      [2, "Default Minimum Period", "integer", "RW"],
      [3, "Default Maximum Period", "integer", "RW"],
      [4, "Disable", "none", "E"],
      [5, "Disable Timeout", "integer", "RW"],
      [6, "Notification Storing", "boolean", "RW"],
      [7, "Binding", "string", "RW"],
      [8, "Registration Update Trigger", "none", "E"],
    ]),
  ],
  [
    3,
    table([
      [0, "Manufacturer", "string", "R"],
      [1, "Model Number", "string", "R"],
      [2, "Serial Number", "string", "R"],
      [3, "Firmware Version", "string", "R"],
      [4, "Reboot", "none", "E"],
      [5, "Factory Reset", "none", "E"],
      [6, "Available Power Sources", "integer", "R", true],
      [7, "Power Source Voltage", "integer", "R", true],
      [8, "Power Source Current", "integer", "R", true],
      [9, "Battery Level", "integer", "R"],
      [10, "Memory Free", "integer", "R"],
      [11, "Error Code", "integer", "R", true],
      [12, "Reset Error Code", "none", "E"],
      [13, "Current Time", "time", "RW"],
      [14, "UTC Offset", "string", "RW"],
      [15, "Timezone", "string", "RW"],
      [16, "Supported Binding and Modes", "string", "R"],
      [17, "Device Type", "string", "R"],
      [18, "Hardware Version", "string", "R"],
      [19, "Software Version", "string", "R"],
      [20, "Battery Status", "integer", "R"],
      [21, "Memory Total", "integer", "R"],
    ]),
  ],
  [
    5,
    table([
      [0, "Package", "opaque", "W"],
      [1, "Package URI", "string", "RW"],
      [2, "Update", "none", "E"],
      [3, "State", "integer", "R"],
      [5, "Update Result", "integer", "R"],
      [6, "PkgName", "string", "R"],
      [7, "PkgVersion", "string", "R"],
      [8, "Firmware Update Protocol Support", "integer", "R", true],
      [9, "Firmware Update Delivery Method", "integer", "R"],
    ]),
  ],
]);

function table(
  rows: readonly (readonly [number, string, ResourceType, ResourceInfo["ops"], true?])[],
): ReadonlyMap<number, ResourceInfo> {
  return new Map(
    rows.map(([id, name, type, ops, multiple]) => [
      id,
      multiple === true ? { name, type, ops, multiple } : { name, type, ops },
    ]),
  );
}

/** What the gateway knows of a resource, by path; undefined for unknown objects. */
export function resourceInfo(path: Lwm2mPath): ResourceInfo | undefined {
  const [obj, , res] = path;
  if (obj === undefined || res === undefined) return undefined;
  return RESOURCES.get(obj)?.get(res);
}

/** The DM Meta Format of a resource type (DM TND 1.2 section 7.7.7). */
export function dmFormatOf(type: ResourceType | undefined): string {
  switch (type) {
    case "integer":
    case "time":
      return "int";
    case "float":
      return "float";
    case "boolean":
      return "bool";
    case "opaque":
      return "bin";
    case "none":
      return "null";
    case "string":
    case "objlnk":
    case undefined:
      return "chr";
  }
}

/** The DevInfo leaves in a set of /3/0 resource values (path -> text), as `onDeviceSeen` wants them. */
export function devInfoOf(values: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [leaf, path] of Object.entries(DEVINFO_ALIASES)) {
    const v = values.get(pathToString(path));
    if (v !== undefined) out[leaf] = v;
  }
  return out;
}
