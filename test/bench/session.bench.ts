/**
 * Session bench (issue goals: >= 300 sessions/s on 2 cores, WBXML <= 40% of the XML bytes): whole
 * OMA DM management sessions of the client (`runManagementSession` over `HttpTransport`, keep-alive)
 * against the DM server simulator (`DmServerSimulator`) on loopback HTTP, in one node process: the
 * gateways on the main thread, the simulator in a worker thread (the two sides on the two cores).
 *
 *   session   client-initiated (Alert 1201), MD5 digest auth on both sides (CLCRED and SRVCRED,
 *             nonces rolled and persisted every session); the simulator's queue holds 10 Gets
 *             (./DevInfo/{DevId,Man,Mod,DmV,Lang}, ./DevDetail/{DevTyp,OEM,FwV,SwV,HwV}) and 5
 *             Replaces (./Vendor/Setting0..4, chr, a new value each session) for it
 *   gateway   per device a file-backed tree (WAL, synchronous=FULL) seeded with the standard MOs and
 *             one DMAcc account, an empty alert outbox and its own HttpTransport
 *   checks    every session must end ok, server-authenticated, with 15 command records in the
 *             simulator each answered 200 (and one Results per Get) and the last Replace's value in
 *             the tree; anything else aborts the bench (no figures of failing sessions). Queueing
 *             before and checking after a session are messages to the worker, inside the timing.
 *   timing    50 warm-up sessions per encoding, then per encoding two runs of at least 2 s and 500
 *             sessions: one device (sessions one after another) and 4 devices in parallel (each
 *             device one session at a time, as a gateway runs them)
 *   bytes     request + response body bytes of one session (the summary's bytesSent + bytesReceived),
 *             mean over the measured sessions
 *
 * The figures reported (and in --json) are the parallel run's; the sequential run is printed too.
 * Everything runs on the tsc output in dist/ (npm run bench builds it), typed from src/.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type * as StandardModule from "../../src/mo/standard.js";
import type * as TransportModule from "../../src/northbound/http-transport.js";
import type * as OutboxModule from "../../src/northbound/outbox.js";
import type * as RunnerModule from "../../src/northbound/session-runner.js";
import type { Command, Encoding } from "../../src/syncml/index.js";
import type * as StoreModule from "../../src/tree/store.js";
import type * as TreeModule from "../../src/tree/tree.js";
import { formatTable, type BenchContext, type BenchReport } from "./common.js";
import { distFile, loadShipped } from "./shipped.js";

const { standardMoPlugins } = await loadShipped<typeof StandardModule>("mo/standard.js");
const { HttpTransport } = await loadShipped<typeof TransportModule>("northbound/http-transport.js");
const { AlertOutbox } = await loadShipped<typeof OutboxModule>("northbound/outbox.js");
const { runManagementSession } = await loadShipped<typeof RunnerModule>("northbound/session-runner.js");
const { Store } = await loadShipped<typeof StoreModule>("tree/store.js");
const { DmTree } = await loadShipped<typeof TreeModule>("tree/tree.js");

export interface EncodingFigures {
  readonly sessionsPerSecond: number;
  readonly bytesPerSession: number;
}

export interface SessionReport extends BenchReport {
  readonly bench: "session";
  readonly xml: EncodingFigures;
  readonly wbxml: EncodingFigures;
}

const GOALS = { sessionsPerSecond: 300, wbxmlRatio: 0.4 } as const;

const SERVER_ID = "bench-srv";
const ACCOUNT = "./DMAcc/benchsrv";
const CLCRED = { name: "gw", secret: "client-secret" };
const SRVCRED = { name: SERVER_ID, secret: "server-secret" };
const START_NONCE = { client: Uint8Array.from([1, 2, 3, 4]), server: Uint8Array.from([5, 6, 7, 8]) };
const MAX_MSG_SIZE = 16_384;

const GET_LEAVES = [
  "./DevInfo/DevId",
  "./DevInfo/Man",
  "./DevInfo/Mod",
  "./DevInfo/DmV",
  "./DevInfo/Lang",
  "./DevDetail/DevTyp",
  "./DevDetail/OEM",
  "./DevDetail/FwV",
  "./DevDetail/SwV",
  "./DevDetail/HwV",
] as const;
const REPLACE_LEAVES = [0, 1, 2, 3, 4].map((i) => `./Vendor/Setting${i}`);
const COMMANDS = GET_LEAVES.length + REPLACE_LEAVES.length;

const WARMUP_SESSIONS = 50;
const MIN_MS = 2_000;
const MIN_SESSIONS = 500;
const PARALLEL_DEVICES = 4;

function devIdOf(index: number): string {
  return `IMEI:35000000000${String(index).padStart(4, "0")}`;
}

/**
 * The simulator's side, in a worker thread (the second core): the dist DmServerSimulator with the
 * devices, which answers `queue` (push one command list) and `check` (verify the device's last
 * recorded session) messages. Plain JS, so the worker needs no TypeScript loader.
 */
const SIM_WORKER = `
(async () => {
  const { parentPort, workerData } = await import("node:worker_threads");
  const { DmServerSimulator } = await import(workerData.simUrl);
  const sim = new DmServerSimulator();
  const { url } = await sim.start();
  const nonce = (a) => Uint8Array.from(a);
  for (const devId of workerData.devIds) {
    sim.addDevice(devId, {
      clientAuth: { scheme: "md5", ...workerData.clcred },
      serverAuth: { scheme: "md5", ...workerData.srvcred },
      clientNonce: nonce(workerData.clientNonce),
      serverNonce: nonce(workerData.serverNonce),
    });
  }
  const check = (devId, expected, commands) => {
    const outcomes = sim.sessions(devId);
    const o = outcomes[outcomes.length - 1];
    if (outcomes.length !== expected || o === undefined)
      return "the simulator recorded " + outcomes.length + " sessions, not " + expected;
    if (o.error !== undefined) return "the simulator says " + o.error.code + ": " + o.error.reason;
    if (!o.authenticated) return "the simulator did not authenticate the client";
    const answered = o.commands.filter(
      (c) => c.status === 200 && c.results.length === (c.command.kind === "Get" ? 1 : 0),
    ).length;
    if (o.commands.length !== commands || answered !== commands)
      return "the simulator recorded " + answered + " of " + commands + " commands answered 200 (statuses " +
        o.commands.map((c) => c.status ?? "none").join(",") + ")";
    return undefined;
  };
  parentPort.on("message", async (m) => {
    if (m.op === "queue") {
      sim.queue(m.devId, m.commands);
      parentPort.postMessage({ id: m.id });
    } else if (m.op === "check") {
      parentPort.postMessage({ id: m.id, problem: check(m.devId, m.expected, m.commands) });
    } else if (m.op === "stop") {
      const open = sim.openSessions;
      await sim.stop();
      parentPort.postMessage({ id: m.id, problem: open === 0 ? undefined : "the simulator still holds " + open + " sessions" });
    }
  });
  parentPort.postMessage({ id: 0, url });
})();
`;

interface SimAnswer {
  readonly id: number;
  readonly url?: string;
  readonly problem?: string;
}

/** The main thread's handle on the simulator worker: one request-answer pair per call. */
class SimWorker {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve: (a: SimAnswer) => void; reject: (e: Error) => void }>();
  #next = 1;
  #failure: Error | undefined;

  constructor(devIds: readonly string[]) {
    this.#worker = new Worker(SIM_WORKER, {
      eval: true,
      workerData: {
        simUrl: pathToFileURL(distFile("sim/dm-server.js")).href,
        devIds,
        clcred: CLCRED,
        srvcred: SRVCRED,
        clientNonce: [...START_NONCE.client],
        serverNonce: [...START_NONCE.server],
      },
    });
    this.#worker.on("message", (a: SimAnswer) => {
      const waiting = this.#waiting.get(a.id);
      this.#waiting.delete(a.id);
      waiting?.resolve(a);
    });
    this.#worker.on("error", (e: Error) => {
      this.#failure = e;
      for (const waiting of this.#waiting.values()) waiting.reject(e);
      this.#waiting.clear();
    });
  }

  /** Resolves with the simulator's base URL once it listens. */
  started(): Promise<string> {
    return this.#wait(0).then((a) => a.url ?? "");
  }

  async queue(devId: string, commands: readonly Command[]): Promise<void> {
    await this.#call({ op: "queue", devId, commands });
  }

  /** A description of what is wrong with the device's `expected`-th session, or undefined. */
  async check(devId: string, expected: number): Promise<string | undefined> {
    return (await this.#call({ op: "check", devId, expected, commands: COMMANDS })).problem;
  }

  /** Stops the simulator (a description of sessions left open, or undefined) and the worker. */
  async stop(): Promise<string | undefined> {
    try {
      return this.#failure === undefined ? (await this.#call({ op: "stop" })).problem : undefined;
    } finally {
      await this.#worker.terminate();
    }
  }

  #call(message: Record<string, unknown>): Promise<SimAnswer> {
    const id = this.#next++;
    const answer = this.#wait(id);
    this.#worker.postMessage({ ...message, id });
    return answer;
  }

  #wait(id: number): Promise<SimAnswer> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
    });
  }
}

/** One gateway: its tree file, outbox and transport, known to the simulator as `devId`. */
interface Gateway {
  readonly devId: string;
  readonly store: StoreModule.Store;
  readonly tree: TreeModule.DmTree;
  readonly outbox: OutboxModule.AlertOutbox;
  readonly transport: TransportModule.HttpTransport;
  sessions: number;
}

function openGateway(dir: string, index: number, url: string): Gateway {
  const devId = devIdOf(index);
  const store = Store.open(join(dir, `gw${index}.sqlite`));
  const nonce = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
  const tree = new DmTree(store, {
    plugins: standardMoPlugins(
      {
        devId,
        man: "ACME",
        mod: "GW-1",
        dmV: "1.2",
        lang: "en-US",
        oem: "ACME",
        fwV: "1.0",
        swV: "0.1.0",
        hwV: "A",
        uriLimits: { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 },
      },
      [
        {
          name: "benchsrv",
          serverId: SERVER_ID,
          addr: url,
          clientCred: { type: "DIGEST", ...CLCRED, nonce: nonce(START_NONCE.client) },
          serverCred: { type: "DIGEST", ...SRVCRED, nonce: nonce(START_NONCE.server) },
        },
      ],
    ),
  });
  tree.seed();
  tree.write({ path: "./Vendor", format: "node", acl: `Get=${SERVER_ID}&Replace=${SERVER_ID}` });
  for (const leaf of REPLACE_LEAVES) tree.write({ path: leaf, format: "chr", value: "0" });
  const outbox = new AlertOutbox(store, { maxCount: 100, maxBytes: 1 << 20 });
  return { devId, store, tree, outbox, transport: new HttpTransport(), sessions: 0 };
}

function sessionCommands(tag: string): Command[] {
  const gets: Command[] = GET_LEAVES.map((locUri, i) => ({
    kind: "Get",
    cmdId: String(i + 1),
    items: [{ target: { locUri } }],
  }));
  const replaces: Command[] = REPLACE_LEAVES.map((locUri, i) => ({
    kind: "Replace",
    cmdId: String(GET_LEAVES.length + i + 1),
    items: [{ target: { locUri }, meta: { format: "chr" }, data: { kind: "text", text: `${tag}.${i}` } }],
  }));
  return [...gets, ...replaces];
}

/** Runs one session of `g` and checks both sides; returns its body bytes or throws. */
async function oneSession(g: Gateway, sim: SimWorker, url: string, encoding: Encoding): Promise<number> {
  const tag = `v${++g.sessions}`;
  await sim.queue(g.devId, sessionCommands(tag));
  const summary = await runManagementSession({
    tree: g.tree,
    outbox: g.outbox,
    transport: g.transport,
    account: {
      accountPath: ACCOUNT,
      serverId: SERVER_ID,
      serverUri: url,
      clientScheme: "md5",
      serverScheme: "md5",
    },
    devId: g.devId,
    trigger: { kind: "client" },
    encoding,
    maxMsgSize: MAX_MSG_SIZE,
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    timeoutMs: 5_000,
    maxMessages: 10,
  });
  const where = `${g.devId} ${encoding} session ${g.sessions}`;
  if (!summary.ok || !summary.serverAuthenticated) {
    throw new Error(`${where} failed: ${summary.reason ?? "the server was not authenticated"}`);
  }
  const problem = await sim.check(g.devId, g.sessions);
  if (problem !== undefined) throw new Error(`${where}: ${problem}`);
  const last = REPLACE_LEAVES.length - 1;
  const value = g.tree.read(REPLACE_LEAVES[last] ?? "")?.value;
  if (value !== `${tag}.${last}`) throw new Error(`${where}: the Replace left ${String(value)}`);
  return summary.bytesSent + summary.bytesReceived;
}

interface Run {
  readonly devices: number;
  readonly sessions: number;
  readonly ms: number;
  readonly sessionsPerSecond: number;
  readonly bytesPerSession: number;
  readonly minBytes: number;
  readonly maxBytes: number;
}

/**
 * Each gateway runs sessions one after another until the run has lasted `minMs` and done
 * `minSessions` sessions in all; the gateways run in parallel.
 */
async function timeRun(
  gateways: readonly Gateway[],
  sim: SimWorker,
  url: string,
  encoding: Encoding,
  minMs: number,
  minSessions: number,
): Promise<Run> {
  const bytes: number[] = [];
  const t0 = process.hrtime.bigint();
  const elapsedMs = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
  const loop = async (g: Gateway): Promise<void> => {
    while (bytes.length < minSessions || elapsedMs() < minMs) {
      bytes.push(await oneSession(g, sim, url, encoding));
    }
  };
  await Promise.all(gateways.map(loop));
  const ms = elapsedMs();
  return {
    devices: gateways.length,
    sessions: bytes.length,
    ms,
    sessionsPerSecond: (bytes.length * 1e3) / ms,
    bytesPerSession: bytes.reduce((a, b) => a + b, 0) / bytes.length,
    minBytes: Math.min(...bytes),
    maxBytes: Math.max(...bytes),
  };
}

export async function run(ctx: BenchContext): Promise<SessionReport> {
  const dir = mkdtempSync(join(tmpdir(), "dmgw-bench-session-"));
  const sim = new SimWorker(Array.from({ length: PARALLEL_DEVICES }, (_, i) => devIdOf(i)));
  const gateways: Gateway[] = [];
  let stopped = false;
  try {
    const url = await sim.started();
    for (let i = 0; i < PARALLEL_DEVICES; i++) gateways.push(openGateway(dir, i, url));
    const encodings = ["xml", "wbxml"] as const;
    for (const encoding of encodings) await timeRun(gateways, sim, url, encoding, 0, WARMUP_SESSIONS);
    const runs = new Map<Encoding, { sequential: Run; parallel: Run }>();
    for (const encoding of encodings) {
      const sequential = await timeRun(gateways.slice(0, 1), sim, url, encoding, MIN_MS, MIN_SESSIONS);
      const parallel = await timeRun(gateways, sim, url, encoding, MIN_MS, MIN_SESSIONS);
      runs.set(encoding, { sequential, parallel });
    }
    stopped = true;
    const left = await sim.stop();
    if (left !== undefined) throw new Error(left);

    const figures = (encoding: Encoding): EncodingFigures => {
      const r = runs.get(encoding);
      if (r === undefined) throw new Error(`no run for ${encoding}`);
      return {
        sessionsPerSecond: Math.round(r.parallel.sessionsPerSecond * 10) / 10,
        bytesPerSession: Math.round(r.parallel.bytesPerSession),
      };
    };
    const report: SessionReport = { bench: "session", xml: figures("xml"), wbxml: figures("wbxml") };

    ctx.log(
      `client-initiated sessions, MD5 both sides, 10 Gets + 5 Replaces each, loopback HTTP keep-alive, ` +
        `file-backed trees (WAL, synchronous=FULL); gateways on the main thread, the simulator in a worker ` +
        `thread; ${WARMUP_SESSIONS} warm-up sessions per encoding; figures below from ${PARALLEL_DEVICES} devices in parallel`,
    );
    ctx.log("");
    const rows: string[][] = [];
    for (const encoding of encodings) {
      const r = runs.get(encoding);
      if (r === undefined) continue;
      for (const x of [r.sequential, r.parallel]) {
        rows.push([
          encoding,
          x.devices === 1 ? "1 (sequential)" : `${x.devices} in parallel`,
          String(x.sessions),
          (x.ms / 1e3).toFixed(2),
          x.sessionsPerSecond.toFixed(1),
          (x.ms / x.sessions).toFixed(2),
          Math.round(x.bytesPerSession).toLocaleString("en-US"),
          `${x.minBytes}..${x.maxBytes}`,
        ]);
      }
    }
    for (const line of formatTable(
      ["encoding", "devices", "sessions", "s", "sessions/s", "ms/session", "bytes/session", "range"],
      rows,
      [false, false, true, true, true, true, true, true],
    ))
      ctx.log(line);

    const ratio = report.wbxml.bytesPerSession / report.xml.bytesPerSession;
    const check = (ok: boolean): string => (ok ? "pass" : "FAIL");
    ctx.log("");
    for (const encoding of encodings) {
      const sps = report[encoding].sessionsPerSecond;
      ctx.log(
        `${check(sps >= GOALS.sessionsPerSecond)}: ${encoding} ${sps.toFixed(1)} sessions/s ` +
          `(${PARALLEL_DEVICES} devices in parallel) >= ${GOALS.sessionsPerSecond}`,
      );
    }
    ctx.log(
      `${check(ratio <= GOALS.wbxmlRatio)}: WBXML/XML bytes per session ${ratio.toFixed(3)} ` +
        `(${report.wbxml.bytesPerSession} / ${report.xml.bytesPerSession}) <= ${GOALS.wbxmlRatio.toFixed(2)}`,
    );
    return report;
  } finally {
    for (const g of gateways) {
      g.transport.close();
      g.store.close();
    }
    if (!stopped) await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
