/**
 * Tree bench (issue #3 goals): a 100,000-node management tree in a SQLite file, measured as the
 * gateway uses it.
 *
 *   shape     ./GwMO/Bus<b>/Inventory/Devices/<i>/{DeviceID,Transport,Mode,Address,Status,LastSeen,
 *             DevInfo/{Man,Mod,FwV,SwV,HwV}}: 10 buses of 769 devices, 13 nodes a device, so that
 *             one bus is a 10,000-node subtree; built in one transaction with the gateway-side
 *             `tree.write` (the device inventory is the gateway's own state, not a server's Add)
 *   get       `tree.get(server, leaf)` on random existing leaves, each call timed: median in µs
 *   replace   one DM message of 10 Replace commands on random leaves: decodeMessage (XML) +
 *             executeCommands inside `tree.transaction`, commit and WAL fsync included: median ms
 *   structure `tree.get(server, "./GwMO/Bus<b>?list=StructData")`, 10,000 nodes: median ms
 *   open      Store.open (quick_check included) + new DmTree + a first leaf Get, in a fresh node
 *             process after the file's pages were dropped from the OS page cache (GNU dd
 *             iflag=nocache); in-process and warm-cache figures for comparison
 *   size      (main file + WAL) / nodes after `PRAGMA wal_checkpoint(TRUNCATE)`
 *
 * Everything runs on the tsc output in dist/ (npm run bench builds it), typed from src/.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as ExecutorModule from "../../src/dm/command-executor.js";
import type * as StoreModule from "../../src/tree/store.js";
import type * as TreeModule from "../../src/tree/tree.js";
import { BenchError, formatTable, median, round3, type BenchContext, type BenchReport } from "./common.js";
import { loadShippedCodec } from "./shipped.js";

function distFile(relative: string): string {
  return fileURLToPath(new URL(`../../dist/src/${relative}`, import.meta.url));
}

async function loadShipped<T>(relative: string): Promise<T> {
  const file = distFile(relative);
  if (!existsSync(file)) {
    throw new BenchError(`${file} is missing: run "npm run build" (npm run bench does it first)`);
  }
  return (await import(pathToFileURL(file).href)) as T;
}

const { Store } = await loadShipped<typeof StoreModule>("tree/store.js");
const { DmTree } = await loadShipped<typeof TreeModule>("tree/tree.js");
const { executeCommands } = await loadShipped<typeof ExecutorModule>("dm/command-executor.js");
const { decodeMessage } = await loadShippedCodec();

type DmTree = TreeModule.DmTree;

export interface TreeReport extends BenchReport {
  readonly bench: "tree";
  readonly nodes: number;
  readonly getLeafUs: number;
  readonly replaceMessageMs: number;
  readonly structData10kMs: number;
  readonly openMs: number;
  readonly bytesPerNode: number;
}

const GOALS = { getLeafUs: 20, openMs: 300, structData10kMs: 150, bytesPerNode: 150 } as const;

const SERVER_ID = "bench-srv";
const BUSES = 10;
const DEVICES_PER_BUS = 769;
const LEAVES = ["DeviceID", "Transport", "Mode", "Address", "Status", "LastSeen"] as const;
const DEVINFO = ["Man", "Mod", "FwV", "SwV", "HwV"] as const;
const TRANSPORTS = ["serial", "ble", "coap", "mqtt", "http"] as const;

const GET_WARMUP = 5_000;
const GET_SAMPLES = 50_000;
const REPLACE_WARMUP = 5;
const REPLACE_SAMPLES = 50;
const STRUCT_WARMUP = 2;
const STRUCT_SAMPLES = 20;
const OPEN_SAMPLES = 5;

/** A deterministic generator (mulberry32), so that every run picks the same leaves. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function devicePath(bus: number, device: number): string {
  return `./GwMO/Bus${bus}/Inventory/Devices/${bus * DEVICES_PER_BUS + device}`;
}

function randomLeaf(random: () => number): string {
  const bus = Math.floor(random() * BUSES);
  const device = Math.floor(random() * DEVICES_PER_BUS);
  const k = Math.floor(random() * (LEAVES.length + DEVINFO.length));
  const leaf = k < LEAVES.length ? LEAVES[k] : `DevInfo/${DEVINFO[k - LEAVES.length] ?? "Man"}`;
  return `${devicePath(bus, device)}/${leaf ?? "Status"}`;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

/** Builds the inventory in one transaction with the gateway-side write; returns the build ms. */
function build(tree: DmTree): number {
  const t0 = process.hrtime.bigint();
  tree.transaction(() => {
    // The server may read everything and change what is below ./GwMO (the Replace message).
    tree.write({
      path: "./GwMO",
      format: "node",
      acl: `Add=${SERVER_ID}&Delete=${SERVER_ID}&Get=*&Replace=${SERVER_ID}`,
    });
    for (let bus = 0; bus < BUSES; bus++) {
      for (let d = 0; d < DEVICES_PER_BUS; d++) {
        const i = bus * DEVICES_PER_BUS + d;
        const base = devicePath(bus, d);
        const transport = TRANSPORTS[i % TRANSPORTS.length] ?? "ble";
        const mac = `02:00:${hex((i >> 16) & 255, 2)}:${hex((i >> 8) & 255, 2)}:${hex(i & 255, 2)}:${hex(bus, 2)}`;
        const values: Record<(typeof LEAVES)[number], string> = {
          DeviceID: `urn:dev:mac:${mac.replace(/:/g, "")}`,
          Transport: transport,
          Mode: "proxy",
          Address: transport === "serial" ? `/dev/ttyUSB${i % 4}:${i % 247}` : mac,
          Status: i % 7 === 0 ? "offline" : "online",
          LastSeen: `20250601T${hex(i % 24, 2).replace(/[a-f]/g, "0")}1530Z`,
        };
        for (const leaf of LEAVES)
          tree.write({ path: `${base}/${leaf}`, format: "chr", value: values[leaf] });
        const devInfo: Record<(typeof DEVINFO)[number], string> = {
          Man: "Acme Sensors",
          Mod: `TH-${200 + (i % 5) * 10}`,
          FwV: `1.${i % 9}.${i % 13}`,
          SwV: "2.0.1",
          HwV: `rev ${"ABC"[i % 3] ?? "A"}`,
        };
        for (const leaf of DEVINFO)
          tree.write({ path: `${base}/DevInfo/${leaf}`, format: "chr", value: devInfo[leaf] });
      }
    }
  });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

function timeGets(tree: DmTree, random: () => number): number[] {
  const paths = Array.from({ length: GET_SAMPLES }, () => randomLeaf(random));
  for (let i = 0; i < GET_WARMUP; i++) {
    const r = tree.get(SERVER_ID, paths[i % paths.length] ?? "");
    if (r.status !== 200) throw new Error(`Get ${paths[i % paths.length]} answered ${r.status}`);
  }
  const us: number[] = [];
  for (const path of paths) {
    const t0 = process.hrtime.bigint();
    const r = tree.get(SERVER_ID, path);
    us.push(Number(process.hrtime.bigint() - t0) / 1e3);
    if (r.kind !== "node") throw new Error(`Get ${path} answered ${r.status}`);
  }
  return us;
}

function replaceMessage(msgId: number, random: () => number): Uint8Array {
  const items: string[] = [];
  for (let c = 0; c < 10; c++) {
    const path = randomLeaf(random);
    items.push(
      `<Replace><CmdID>${c + 1}</CmdID><Item><Target><LocURI>${path}</LocURI></Target>` +
        `<Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>v${msgId}.${c}</Data></Item></Replace>`,
    );
  }
  return new TextEncoder().encode(
    `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>` +
      `<SessionID>1</SessionID><MsgID>${msgId}</MsgID><Target><LocURI>IMEI:bench</LocURI></Target>` +
      `<Source><LocURI>https://dm.example/bench</LocURI></Source></SyncHdr>` +
      `<SyncBody>${items.join("")}<Final/></SyncBody></SyncML>`,
  );
}

function timeReplaceMessages(tree: DmTree, random: () => number): number[] {
  const ms: number[] = [];
  for (let m = 1; m <= REPLACE_WARMUP + REPLACE_SAMPLES; m++) {
    const bytes = replaceMessage(m, random);
    const t0 = process.hrtime.bigint();
    const { message } = decodeMessage(bytes, { encoding: "xml" });
    let next = 0;
    const replies = tree.transaction(() =>
      executeCommands(message.body.commands, {
        tree,
        serverId: SERVER_ID,
        encoding: "xml",
        msgId: message.hdr.msgId,
        nextCmdId: () => String(++next),
      }),
    );
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    const failed = replies.filter((r) => r.kind === "Status" && r.data !== "200");
    if (replies.length !== 10 || failed.length > 0) {
      throw new Error(
        `the Replace message answered ${replies.map((r) => r.kind === "Status" && r.data).join(",")}`,
      );
    }
    if (m > REPLACE_WARMUP) ms.push(elapsed);
  }
  return ms;
}

function timeStructData(tree: DmTree): { ms: number[]; nodes: number } {
  const ms: number[] = [];
  let nodes = 0;
  for (let s = 0; s < STRUCT_WARMUP + STRUCT_SAMPLES; s++) {
    const uri = `./GwMO/Bus${s % BUSES}?list=StructData`;
    const t0 = process.hrtime.bigint();
    const r = tree.get(SERVER_ID, uri);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.kind !== "list") throw new Error(`Get ${uri} answered ${r.status}`);
    nodes = r.nodes.length;
    if (s >= STRUCT_WARMUP) ms.push(elapsed);
  }
  return { ms, nodes };
}

/** Store.open + new DmTree + a first Get, in this process (the module code is warm). */
function openInProcess(db: string, leaf: string): number {
  const t0 = process.hrtime.bigint();
  const store = Store.open(db, { create: false });
  const tree = new DmTree(store);
  const r = tree.get(SERVER_ID, leaf);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  store.close();
  if (r.status !== 200) throw new Error(`Get ${leaf} after open answered ${r.status}`);
  return elapsed;
}

/** The same in a fresh node process; only the open, not node's start or the imports, is timed. */
const OPEN_CHILD = `
const { Store } = await import(process.env.BENCH_STORE);
const { DmTree } = await import(process.env.BENCH_TREE);
const verify = process.env.BENCH_VERIFY !== "0";
const t0 = process.hrtime.bigint();
const store = Store.open(process.env.BENCH_DB, { create: false, verify });
const tree = new DmTree(store);
const r = tree.get(process.env.BENCH_SERVER, process.env.BENCH_LEAF);
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
store.close();
if (r.status !== 200) throw new Error("Get answered " + r.status);
process.stdout.write(JSON.stringify({ ms }) + "\\n");
`;

function openInChild(db: string, leaf: string, verify: boolean): number {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", OPEN_CHILD], {
    env: {
      ...process.env,
      BENCH_STORE: pathToFileURL(distFile("tree/store.js")).href,
      BENCH_TREE: pathToFileURL(distFile("tree/tree.js")).href,
      BENCH_DB: db,
      BENCH_SERVER: SERVER_ID,
      BENCH_LEAF: leaf,
      BENCH_VERIFY: verify ? "1" : "0",
    },
    encoding: "utf8",
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`the open child failed (${r.status}): ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { ms: number }).ms;
}

/**
 * Drops the file's pages from the OS page cache (GNU dd `iflag=nocache count=0`: posix_fadvise
 * DONTNEED on the whole file; clean pages only, so the file must be synced). False when dd cannot.
 */
function dropPageCache(files: readonly string[]): boolean {
  for (const file of files) {
    if (!existsSync(file)) continue;
    const r = spawnSync("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"], {
      encoding: "utf8",
    });
    if (r.error !== undefined || r.status !== 0) return false;
  }
  return true;
}

function mark(value: number, goal: number): string {
  return value <= goal ? "ok" : "MISSED";
}

function fmt(value: number, digits = 2): string {
  return value.toFixed(digits);
}

export function run(ctx: BenchContext): TreeReport {
  const dir = mkdtempSync(join(tmpdir(), "dmgw-bench-tree-"));
  const db = join(dir, "tree.sqlite");
  try {
    const random = prng(0x7e3e);
    let store = Store.open(db);
    let tree = new DmTree(store);
    tree.seed();
    const buildMs = build(tree);
    const nodes = store.db.prepare("SELECT count(*) FROM node").pluck().get() as number;
    store.db.pragma("wal_checkpoint(TRUNCATE)");
    const fileBytes = store.fileBytes();
    const bytesPerNode = fileBytes / nodes;
    const pageSize = store.db.pragma("page_size", { simple: true }) as number;
    ctx.log(
      `built ${nodes} nodes (${BUSES} x ${DEVICES_PER_BUS} devices, tree.write in one transaction) in ${fmt(buildMs / 1e3)} s; ` +
        `file ${fileBytes} bytes (page size ${pageSize})`,
    );

    const getUs = timeGets(tree, random);
    const replaceMs = timeReplaceMessages(tree, random);
    const struct = timeStructData(tree);
    if (struct.nodes !== 10_000)
      throw new Error(`StructData of a bus gave ${struct.nodes} nodes, not 10,000`);

    // Opening: checkpoint and close, so that the file is all there is.
    store.db.pragma("wal_checkpoint(TRUNCATE)");
    store.close();
    const leaf = randomLeaf(random);
    const inProcess = Array.from({ length: OPEN_SAMPLES }, () => openInProcess(db, leaf));
    const childWarm = Array.from({ length: OPEN_SAMPLES }, () => openInChild(db, leaf, true));
    const childNoVerify = Array.from({ length: OPEN_SAMPLES }, () => openInChild(db, leaf, false));
    const files = [db, `${db}-wal`, `${db}-shm`];
    const coldOk = dropPageCache(files);
    const childCold = coldOk
      ? Array.from({ length: OPEN_SAMPLES }, () => {
          dropPageCache(files);
          return openInChild(db, leaf, true);
        })
      : [];
    const openMs = coldOk ? median(childCold) : median(childWarm);
    if (!coldOk) ctx.warn("dd iflag=nocache failed: the open figure is with the file in the page cache");

    // Reopen for nothing but the node count check: the file must still hold the tree.
    store = Store.open(db, { create: false, verify: false });
    tree = new DmTree(store);
    const after = store.db.prepare("SELECT count(*) FROM node").pluck().get() as number;
    store.close();
    if (after !== nodes) throw new Error(`the file holds ${after} nodes after reopening, not ${nodes}`);

    const report: TreeReport = {
      bench: "tree",
      nodes,
      getLeafUs: round3(median(getUs)),
      replaceMessageMs: round3(median(replaceMs)),
      structData10kMs: round3(median(struct.ms)),
      openMs: round3(openMs),
      bytesPerNode: round3(bytesPerNode),
    };

    const rows: string[][] = [
      [
        "leaf Get (tree.get as a server)",
        `${fmt(report.getLeafUs)} µs`,
        `≤ ${GOALS.getLeafUs} µs`,
        mark(report.getLeafUs, GOALS.getLeafUs),
        `p90 ${fmt(quantile(getUs, 0.9))}, p99 ${fmt(quantile(getUs, 0.99))} µs; ${GET_SAMPLES} samples`,
      ],
      [
        "Replace message, 10 leaves, fsync",
        `${fmt(report.replaceMessageMs)} ms`,
        "-",
        "",
        `p90 ${fmt(quantile(replaceMs, 0.9))}, max ${fmt(Math.max(...replaceMs))} ms; ${REPLACE_SAMPLES} messages`,
      ],
      [
        "?list=StructData, 10,000 nodes",
        `${fmt(report.structData10kMs)} ms`,
        `≤ ${GOALS.structData10kMs} ms`,
        mark(report.structData10kMs, GOALS.structData10kMs),
        `min ${fmt(Math.min(...struct.ms))} ms; ${STRUCT_SAMPLES} runs over the ${BUSES} buses`,
      ],
      [
        coldOk ? "open, fresh process, cold file" : "open, fresh process, cached file",
        `${fmt(report.openMs)} ms`,
        `≤ ${GOALS.openMs} ms`,
        mark(report.openMs, GOALS.openMs),
        "Store.open (quick_check) + new DmTree + first Get",
      ],
      [
        "open, fresh process, cached file",
        `${fmt(median(childWarm))} ms`,
        "",
        "",
        `without quick_check: ${fmt(median(childNoVerify))} ms`,
      ],
      ["open, in-process after close", `${fmt(median(inProcess))} ms`, "", "", "cached file, warm code"],
      [
        "size",
        `${fmt(report.bytesPerNode, 1)} B/node`,
        `≤ ${GOALS.bytesPerNode} B`,
        mark(report.bytesPerNode, GOALS.bytesPerNode),
        `(main + WAL) after wal_checkpoint(TRUNCATE): ${fileBytes} bytes / ${nodes} nodes`,
      ],
    ];
    ctx.log("");
    for (const line of formatTable(["figure", "median", "goal", "", "notes"], rows, [
      false,
      true,
      true,
      false,
      false,
    ]))
      ctx.log(line);
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
