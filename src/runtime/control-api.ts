/**
 * The methods of the local control socket (control-server.ts), built from the gateway's parts. The
 * `dmgw` CLI is their only intended caller: a local administrator, so no DM ACL applies, but secrets
 * are never returned (DMAcc AAuthSecret/AAuthData and every node the tree flags secret).
 *
 *   status           uptime, board, health, northbound servers, outbox, devices by transport x status,
 *                    southbound sessions, drivers, running jobs
 *   devices          the inventory records
 *   groups           the Gateway Config MO's groups and their members
 *   fanout.start     an operator's job: written under the Fanout MO in one tree transaction, then
 *                    FanoutEngine.start, exactly as a server's Add + Exec Start would
 *   fanout.jobs      every job of the journal with its progress
 *   fanout.progress  one job, per transport: total, done, succeeded, failed
 *   fanout.watch     (stream) progress events until the job ends
 *   fanout.results   each device's DeviceID, status and result XML
 *   tree.get         one node (a leaf's value, an interior node's children)
 *   tree.list        a node and its descendants to a depth
 *   tree.set         a leaf's value, as `dmgw tree set` does offline (tree-admin.ts)
 *
 * Every method returns its outcome as a value (`MethodOutcome`); the server only moves JSON. A
 * failure is a Control_* code and a message that names what was asked, never a secret.
 */
import { ErrorCode } from "../core/errors.js";
import { DEFAULT_GWMO_CONFIG_ROOT, GWMO_CONFIG_MOID, resolveGroup } from "../mo/gwmo-config.js";
import { DEFAULT_GWMO_FANOUT_ROOT, GWMO_FANOUT_MOID, gwmoFanoutPlugin } from "../mo/gwmo-fanout.js";
import type { DeviceRecord } from "../southbound/device-registry.js";
import { decodeCommandFragment, encodeCommandFragment } from "../syncml/index.js";
import type { TreeNode } from "../tree/tree.js";
import { childPath, parseUri } from "../tree/uri.js";
import type { OutboxStats } from "../northbound/outbox.js";
import type { NorthboundStats } from "../northbound/service.js";
import {
  jobDevices,
  jobProgress,
  jobs,
  snapshot,
  type DeviceCounts,
  type JobProgress,
  type Snapshot,
} from "./observe.js";
import type { GatewayParts, HealthReport } from "./parts.js";
import { setLeaf, settableFormat, SETTABLE_FORMATS } from "./tree-admin.js";

export type Params = Readonly<Record<string, unknown>>;

export interface ControlFailure {
  readonly code: ErrorCode;
  readonly message: string;
}

export type MethodOutcome =
  { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly error: ControlFailure };

export type ControlMethod =
  | { readonly kind: "call"; call(params: Params): MethodOutcome }
  | {
      readonly kind: "stream";
      /** Emits events until the stream ends by itself (its outcome) or `signal` aborts. */
      run(params: Params, emit: (event: unknown) => void, signal: AbortSignal): Promise<MethodOutcome>;
    };

/** A node as the control socket returns it: bytes as `{ base64 }`, a secret without its value. */
export interface WireNode {
  readonly path: string;
  readonly name: string;
  readonly format: string;
  readonly type?: string;
  readonly value?: string | { readonly base64: string };
  readonly secret?: true;
  readonly acl?: string;
  readonly title?: string;
  readonly tstamp?: string;
  readonly verNo?: number;
  readonly size?: number;
  /** An interior node's child names (tree.get only). */
  readonly children?: readonly string[];
}

/** A job as fanout.start takes it. */
export interface FanoutStartParams {
  /** The job node's name below the Fanout root; default `job-<time>`. */
  readonly name?: string;
  /** The SyncML command fragment (Add/Replace/Get/Delete/Exec/Atomic/Sequence), as text. */
  readonly commands: string;
  /** A GroupID, or the URI of a Groups/<x> node. */
  readonly group: string;
  /** `<job>/Ext/Options/<name>` values. */
  readonly options?: Readonly<Record<string, string | number>>;
  /** Who hears the completion alert; default the first northbound server. */
  readonly serverId?: string;
  readonly correlator?: string;
}

/** `status`. */
export interface StatusResult {
  readonly pid: number;
  readonly uptimeMs: number;
  readonly startedAt: string;
  readonly board: string;
  readonly health: HealthReport;
  readonly northbound: NorthboundStats | null;
  readonly outbox: OutboxStats;
  readonly devices: DeviceCounts;
  readonly southbound: Snapshot["southbound"];
  readonly drivers: Snapshot["drivers"];
  readonly memory: { readonly rssBytes: number };
  readonly jobs: readonly JobProgress[];
}

/** One record of `devices`. */
export interface DeviceJson {
  readonly deviceId: string;
  readonly transport: string;
  readonly mode: string;
  readonly address: string;
  readonly status: string;
  readonly lastSeen: string | null;
  readonly attachedAt: string;
  readonly devInfo: Readonly<Record<string, string>>;
}

/** One group of `groups`. */
export interface GroupJson {
  readonly node: string;
  readonly groupId: string | null;
  readonly name: string | null;
  readonly members: readonly string[];
}

/** `fanout.start`. */
export interface FanoutStarted {
  readonly job: string;
  readonly status: number;
  readonly serverId: string;
}

/** `fanout.results`. */
export interface FanoutResults {
  readonly job: string;
  readonly status: string;
  readonly state: string;
  readonly devices: readonly {
    readonly n: number;
    readonly deviceId: string;
    readonly transport: string;
    readonly state: string;
    /** The device's code (2xx: it succeeded); null until it is done. */
    readonly status: number | null;
    readonly resultXml: string | null;
  }[];
}

const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SECRET_LEAVES: ReadonlySet<string> = new Set(["AAuthSecret", "AAuthData"]);
const OPTION_RULES: Readonly<Record<string, RegExp>> = {
  Concurrency: /^[0-9]{1,9}$/,
  DeviceTimeout: /^[0-9]{1,9}$/,
  Retries: /^[0-9]{1,9}$/,
  AbortThreshold: /^[0-9]{1,9}$/,
  ResultFormat: /^(xml|wbxml)$/,
  AlertType: /^(completionstatus|resultaggregation)$/,
};
const MIN_WATCH_MS = 50;
const DEFAULT_WATCH_MS = 250;

/** The methods, by name. */
export function controlApi(parts: GatewayParts): ReadonlyMap<string, ControlMethod> {
  const call = (fn: (params: Params) => MethodOutcome): ControlMethod => ({ kind: "call", call: fn });
  return new Map<string, ControlMethod>([
    ["status", call(() => ok(status(parts)))],
    ["devices", call(() => ok(parts.south.registry.list().map(deviceJson)))],
    ["groups", call(() => ok(groups(parts)))],
    ["fanout.start", call((p) => fanoutStart(parts, p))],
    ["fanout.jobs", call(() => ok(jobs(parts)))],
    [
      "fanout.progress",
      call((p) => {
        const job = jobParam(parts, p);
        if (!job.ok) return job;
        const progress = jobProgress(parts, job.result);
        return progress === undefined ? noJob(job.result) : ok(progress);
      }),
    ],
    ["fanout.watch", { kind: "stream", run: (p, emit, signal) => fanoutWatch(parts, p, emit, signal) }],
    ["fanout.results", call((p) => fanoutResults(parts, p))],
    ["tree.get", call((p) => treeGet(parts, p))],
    ["tree.list", call((p) => treeList(parts, p))],
    ["tree.set", call((p) => treeSet(parts, p))],
  ]);
}

// ---------------------------------------------------------------- status, devices, groups

function status(parts: GatewayParts): StatusResult {
  const s = snapshot(parts);
  return {
    pid: process.pid,
    uptimeMs: s.uptimeMs,
    startedAt: new Date(parts.startedAtMs).toISOString(),
    board: s.board,
    health: s.health,
    northbound: s.northbound ?? null,
    outbox: s.outbox,
    devices: s.devices,
    southbound: s.southbound,
    drivers: s.drivers,
    memory: { rssBytes: s.rssBytes },
    jobs: s.runningJobs,
  };
}

function deviceJson(r: DeviceRecord): DeviceJson {
  return {
    deviceId: r.deviceId,
    transport: r.transport,
    mode: r.mode,
    address: r.address,
    status: r.status,
    lastSeen: r.lastSeenMs === undefined ? null : new Date(r.lastSeenMs).toISOString(),
    attachedAt: new Date(r.attachedMs).toISOString(),
    devInfo: r.devInfo,
  };
}

function configRoot(parts: GatewayParts): string {
  return parts.tree.findByMoid(GWMO_CONFIG_MOID)[0] ?? DEFAULT_GWMO_CONFIG_ROOT;
}

function fanoutRoot(parts: GatewayParts): string {
  return parts.tree.findByMoid(GWMO_FANOUT_MOID)[0] ?? DEFAULT_GWMO_FANOUT_ROOT;
}

function groups(parts: GatewayParts): GroupJson[] {
  const root = configRoot(parts);
  const tree = parts.tree;
  return (tree.childNames(`${root}/Groups`) ?? []).map((name) => {
    const path = childPath(`${root}/Groups`, name);
    const resolved = resolveGroup(tree, path, root);
    return {
      node: path,
      groupId: textOf(tree.read(`${path}/GroupID`)) ?? null,
      name: textOf(tree.read(`${path}/Name`)) ?? null,
      members: resolved.ok ? resolved.members : [],
    };
  });
}

// ---------------------------------------------------------------- fan-out

/** Thrown inside the job's transaction to roll it back; turned into a failure outside. */
class Refusal extends Error {
  constructor(readonly failure: ControlFailure) {
    super(failure.message);
  }
}

function fanoutStart(parts: GatewayParts, p: Params): MethodOutcome {
  const commands = stringParam(p, "commands");
  const group = stringParam(p, "group");
  if (commands === undefined || commands.trim() === "")
    return bad("fanout.start needs commands (a SyncML command fragment)");
  if (group === undefined || group.trim() === "") return bad("fanout.start needs a group");
  const name = stringParam(p, "name") ?? `job-${Date.now().toString(36)}`;
  if (!JOB_NAME.test(name))
    return bad(`job name ${JSON.stringify(name)}: letters, digits, . _ - (at most 64, not first)`);
  const correlator = stringParam(p, "correlator");
  const serverId = stringParam(p, "serverId") ?? parts.northbound?.stats().servers[0]?.serverId;
  if (serverId === undefined || serverId === "")
    return bad("no DM server to report the job to: the gateway has none; give serverId");
  const options = optionsParam(p);
  if (!options.ok) return options;
  // The commands are checked here too, so a typo is refused before anything is written.
  const decoded = decodeCommandFragment(commands);
  if (!decoded.ok) return bad(`the commands do not parse: ${decoded.error.message}`);

  const root = fanoutRoot(parts);
  const jobPath = childPath(root, name);
  const parsed = parseUri(jobPath, parts.tree.uriLimits);
  if (!parsed.ok) return bad(`job path ${jobPath}: ${parsed.reason}`);
  // The DDF children a server's Add of the job gets (Start, Status, Progress, Options, Results).
  const ddf = gwmoFanoutPlugin({ root, serverIds: [], control: () => undefined });
  const hooks: (() => void)[] = [];
  const tree = parts.tree;
  let outcome: { status: number; reason?: string } = { status: 0 };
  try {
    tree.transaction(() => {
      if (tree.read(jobPath) !== undefined) {
        throw new Refusal({ code: ErrorCode.Control_Refused, message: `job ${jobPath} exists` });
      }
      tree.write({ path: jobPath, format: "node" });
      for (const spec of ddf.added?.(jobPath, parsed.uri.segments) ?? []) tree.write(spec);
      tree.write({ path: `${jobPath}/FanOut/FanOutCommands`, format: "xml", value: commands });
      tree.write({ path: `${jobPath}/FanOut/TargetGroupRef`, format: "chr", value: group });
      for (const [option, value] of options.result) {
        const format = /^[0-9]/.test(value) ? "int" : "chr";
        tree.write({ path: `${jobPath}/Ext/Options/${option}`, format, value });
      }
      outcome = parts.engine.start(jobPath, serverId, correlator, (fn) => hooks.push(fn));
      if (outcome.status >= 300) {
        const code = outcome.status === 404 ? ErrorCode.Control_NotFound : ErrorCode.Control_Refused;
        throw new Refusal({ code, message: `job not started (${outcome.status}): ${outcome.reason ?? ""}` });
      }
    });
  } catch (e) {
    if (e instanceof Refusal) return { ok: false, error: e.failure };
    throw e;
  }
  // The run starts once the job is committed, as after a server's message.
  for (const hook of hooks) hook();
  parts.log.info("fan-out job started from the control socket", { job: jobPath, serverId });
  const started: FanoutStarted = { job: jobPath, status: outcome.status, serverId };
  return ok(started);
}

function optionsParam(
  p: Params,
): { ok: true; result: [string, string][] } | { ok: false; error: ControlFailure } {
  const raw = p["options"];
  if (raw === undefined) return { ok: true, result: [] };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return bad("options must be an object");
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(raw)) {
    const rule = OPTION_RULES[name];
    if (rule === undefined)
      return bad(`unknown job option ${name} (${Object.keys(OPTION_RULES).join(", ")})`);
    const text = typeof value === "number" ? String(value) : typeof value === "string" ? value : undefined;
    if (text === undefined || !rule.test(text)) return bad(`job option ${name}: ${JSON.stringify(value)}`);
    out.push([name, text]);
  }
  return { ok: true, result: out };
}

/** `job`: a job's URI, or its name below the Fanout root. */
function jobParam(
  parts: GatewayParts,
  p: Params,
): { ok: true; result: string } | { ok: false; error: ControlFailure } {
  const job = stringParam(p, "job");
  if (job === undefined || job === "") return bad("a job is needed (its name or URI)");
  return {
    ok: true,
    result: job.startsWith("./") ? job.replace(/\/+$/, "") : childPath(fanoutRoot(parts), job),
  };
}

async function fanoutWatch(
  parts: GatewayParts,
  p: Params,
  emit: (event: unknown) => void,
  signal: AbortSignal,
): Promise<MethodOutcome> {
  const job = jobParam(parts, p);
  if (!job.ok) return job;
  const interval = Math.max(MIN_WATCH_MS, numberParam(p, "intervalMs") ?? DEFAULT_WATCH_MS);
  let last = "";
  for (;;) {
    const progress: JobProgress | undefined = jobProgress(parts, job.result);
    if (progress === undefined) return noJob(job.result);
    const text = JSON.stringify(progress);
    if (text !== last) {
      last = text;
      emit(progress);
    }
    if (progress.state !== "running") return ok(progress);
    if (!(await delay(interval, signal))) return ok(progress);
  }
}

function fanoutResults(parts: GatewayParts, p: Params): MethodOutcome {
  const job = jobParam(parts, p);
  if (!job.ok) return job;
  const progress = jobProgress(parts, job.result);
  if (progress === undefined) return noJob(job.result);
  const tree = parts.tree;
  const devices = jobDevices(parts, job.result).map((d) => {
    const base = `${job.result}/Results/${d.n}`;
    return {
      n: d.n,
      deviceId: d.deviceId,
      transport: d.transport,
      state: d.state,
      status: d.status ?? null,
      resultXml:
        d.state === "done"
          ? resultXml(tree.read(`${base}/DevResultXML`), tree.read(`${base}/DevResultWBXML`))
          : null,
    };
  });
  const results: FanoutResults = { job: job.result, status: progress.status, state: progress.state, devices };
  return ok(results);
}

/** The device's result as XML; a WBXML result is re-encoded so the operator reads one form. */
function resultXml(xml: TreeNode | undefined, wbxml: TreeNode | undefined): string | null {
  const text = textOf(xml);
  if (text !== undefined) return text;
  if (!(wbxml?.value instanceof Uint8Array)) return null;
  const decoded = decodeCommandFragment(wbxml.value, { allow: "replies" });
  return decoded.ok ? new TextDecoder().decode(encodeCommandFragment(decoded.value, "xml")) : null;
}

// ---------------------------------------------------------------- tree

function treeGet(parts: GatewayParts, p: Params): MethodOutcome {
  const uri = nodeUriParam(parts, p);
  if (!uri.ok) return uri;
  const node = parts.tree.read(uri.result);
  if (node === undefined) return notFound(`${uri.result} not found`);
  const children = node.format === "node" ? (parts.tree.childNames(uri.result) ?? []) : undefined;
  return ok({ ...wireNode(node), ...(children !== undefined && { children }) });
}

function treeList(parts: GatewayParts, p: Params): MethodOutcome {
  const uri = nodeUriParam(parts, p);
  if (!uri.ok) return uri;
  const depthParam = numberParam(p, "depth");
  if (
    p["depth"] !== undefined &&
    (depthParam === undefined || depthParam < 0 || !Number.isInteger(depthParam))
  )
    return bad("depth is a number of levels, 0 or more");
  const maxDepth = depthParam ?? Number.POSITIVE_INFINITY;
  const tree = parts.tree;
  const top = tree.read(uri.result);
  if (top === undefined) return notFound(`${uri.result} not found`);
  const out: WireNode[] = [];
  // Depth first, children in the store's order: parents before their descendants.
  const walk = (node: TreeNode, depth: number): void => {
    out.push(wireNode(node));
    if (node.format !== "node" || depth >= maxDepth) return;
    for (const name of tree.childNames(node.path) ?? []) {
      const child = tree.read(childPath(node.path, name));
      if (child !== undefined) walk(child, depth + 1);
    }
  };
  walk(top, 0);
  return ok(out);
}

function treeSet(parts: GatewayParts, p: Params): MethodOutcome {
  const uri = stringParam(p, "uri");
  const value = stringParam(p, "value") ?? "";
  const formatText = stringParam(p, "format");
  if (uri === undefined) return bad("a uri is needed");
  const format = formatText === undefined ? undefined : settableFormat(formatText);
  if (formatText !== undefined && format === undefined)
    return bad(`format must be one of ${SETTABLE_FORMATS.join(", ")}`);
  const outcome = setLeaf(parts.tree, uri, value, format);
  if (outcome.ok) {
    parts.log.info("a node was set from the control socket", { path: outcome.path });
    return ok({ path: outcome.path });
  }
  const code = outcome.kind === "input" ? ErrorCode.Control_BadRequest : ErrorCode.Control_Refused;
  return { ok: false, error: { code, message: outcome.message } };
}

function nodeUriParam(
  parts: GatewayParts,
  p: Params,
): { ok: true; result: string } | { ok: false; error: ControlFailure } {
  const text = stringParam(p, "uri");
  if (text === undefined) return bad("a uri is needed");
  const parsed = parseUri(text, parts.tree.uriLimits);
  if (!parsed.ok) return bad(`invalid URI ${JSON.stringify(text)}: ${parsed.reason}`);
  if (parsed.uri.query !== undefined) return bad(`URI ${JSON.stringify(text)} has a query: give a node URI`);
  return { ok: true, result: parsed.uri.path };
}

/**
 * A node for the wire, secrets removed: a node the tree flags secret, and (should a flag ever be
 * missing) any DMAcc AAuthSecret/AAuthData, lose their value and its size.
 */
export function wireNode(n: TreeNode): WireNode {
  const secret = n.secret === true || (n.path.startsWith("./DMAcc/") && SECRET_LEAVES.has(n.name));
  const value = n.format === "node" || secret || n.value === undefined ? undefined : n.value;
  return {
    path: n.path,
    name: n.name,
    format: n.format,
    ...(n.type !== undefined && { type: n.type }),
    ...(value !== undefined && { value: typeof value === "string" ? value : { base64: base64(value) } }),
    ...(secret && { secret: true as const }),
    ...(n.acl !== undefined && { acl: n.acl }),
    ...(n.title !== undefined && { title: n.title }),
    ...(n.tstamp !== undefined && { tstamp: n.tstamp }),
    ...(n.verNo !== undefined && { verNo: n.verNo }),
    ...(n.size !== undefined && !secret && { size: n.size }),
  };
}

// ---------------------------------------------------------------- helpers

function ok(result: unknown): MethodOutcome {
  return { ok: true, result };
}

function bad(message: string): { ok: false; error: ControlFailure } {
  return { ok: false, error: { code: ErrorCode.Control_BadRequest, message } };
}

function notFound(message: string): { ok: false; error: ControlFailure } {
  return { ok: false, error: { code: ErrorCode.Control_NotFound, message } };
}

function noJob(job: string): MethodOutcome {
  return notFound(`no fan-out job ${job}`);
}

function stringParam(p: Params, name: string): string | undefined {
  const v = p[name];
  return typeof v === "string" ? v : undefined;
}

function numberParam(p: Params, name: string): number | undefined {
  const v = p[name];
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function textOf(node: TreeNode | undefined): string | undefined {
  const v = node?.value;
  if (v === undefined) return undefined;
  return typeof v === "string" ? v : new TextDecoder().decode(v);
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Waits `ms`; false when `signal` aborted first. Leaves no timer behind either way. */
function delay(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
