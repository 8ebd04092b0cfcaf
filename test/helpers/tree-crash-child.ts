/**
 * The child of the crash test (test/integration/tree-crash.test.ts), and the message stream both
 * sides agree on.
 *
 *   node --import tsx test/helpers/tree-crash-child.ts <db-file> <seed>
 *
 * Opens (or creates) the database, reads the number of the last message it applied from
 * `./Crash/Last`, prints `READY <next>` and then applies messages next, next + 1, ... forever: each
 * message is real SyncML XML, decoded with decodeMessage and run with executeCommands inside one
 * `tree.transaction`. Only after that returns does it print `ACK <n>`: the point at which the
 * gateway would send the message's Status. The parent kills it with SIGKILL at some moment.
 *
 * It exits by itself only on a failure (a Status that is not the expected one: exit 3), when its
 * stdin closes (the parent is gone: exit 0), or after CHILD_MAX_MS without being killed (exit 4).
 *
 * The stream is a pure function of (seed, n) and the state before message n ({@link planMessage}):
 * the parent replays it to know what the tree must hold.
 */
import { pathToFileURL } from "node:url";
import { executeCommands, type ExecutorContext } from "../../src/dm/command-executor.js";
import { decodeMessage } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";

/** The ServerID the messages come from. */
export const CRASH_SERVER_ID = "crash-srv";
/** Leaves the Atomic sets together: never visible with different values. */
export const ATOMIC_LEAVES = ["A", "B", "C", "D", "E"] as const;
export const LAST_PATH = "./Crash/Last";

const CHILD_MAX_MS = 30_000;

/** What the tree holds below `./Crash` after a prefix of the stream. */
export interface CrashState {
  /** Every leaf below ./Crash: canonical path -> value. */
  readonly leaves: Map<string, string>;
  /** The groups `./Crash/M<n>` that exist, by n, ascending; value: their leaf count. */
  readonly groups: Map<number, number>;
}

export function emptyState(): CrashState {
  return { leaves: new Map(), groups: new Map() };
}

export interface PlannedMessage {
  readonly xml: string;
  /** The Status codes executeCommands must answer, in order. */
  readonly statuses: readonly string[];
  /** True when the message holds an Atomic that commits (sets A..E to n). */
  readonly atomic: boolean;
}

/** mulberry32 seeded by FNV-1a of `seed:n`: each message's choices are independent of the others. */
function rng(seed: string, n: number): () => number {
  let h = 0x811c9dc5;
  for (const ch of `${seed}:${n}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  let a = h;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

interface ItemSpec {
  readonly uri: string;
  readonly value?: string;
}

/**
 * Plans message `n` against `state` (the state after messages 1..n-1) and applies its effect to
 * `state`. Message 1 creates `./Crash/Atomic/A..E` ("0") and `./Crash/Last`; every message adds a
 * group `./Crash/M<n>/L0..` (1 to 5 leaves, values up to 600 bytes), may replace leaves of an
 * earlier group, may hold an Atomic (A..E all set to n, or a doomed one that fails on a missing
 * node after changing A..C and must leave nothing behind), may delete an earlier group, and ends
 * with `./Crash/Last` = n.
 */
export function planMessage(seed: string, n: number, state: CrashState): PlannedMessage {
  const random = rng(seed, n);
  const int = (below: number): number => Math.floor(random() * below);
  const body: string[] = [];
  const statuses: string[] = [];
  let cmdId = 0;
  const itemXml = (it: ItemSpec): string =>
    `<Item><Target><LocURI>${escapeXml(it.uri)}</LocURI></Target>` +
    (it.value === undefined
      ? ""
      : `<Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>${escapeXml(it.value)}</Data>`) +
    `</Item>`;
  const command = (kind: string, items: readonly ItemSpec[]): string =>
    `<${kind}><CmdID>${++cmdId}</CmdID>${items.map(itemXml).join("")}</${kind}>`;
  const set = (it: ItemSpec): void => {
    if (it.value !== undefined) state.leaves.set(it.uri, it.value);
  };

  if (n === 1) {
    const items = ATOMIC_LEAVES.map((l) => ({ uri: `./Crash/Atomic/${l}`, value: "0" }));
    body.push(command("Add", items));
    items.forEach(set);
    statuses.push(...items.map(() => "200"));
  }

  // A new group.
  const leafCount = 1 + int(5);
  const adds: ItemSpec[] = [];
  for (let k = 0; k < leafCount; k++) {
    const filler = "x".repeat(int(600));
    adds.push({ uri: `./Crash/M${n}/L${k}`, value: `m${n}.${k}.${int(1e9).toString(36)}${filler}` });
  }
  body.push(command("Add", adds));
  adds.forEach(set);
  statuses.push(...adds.map(() => "200"));
  state.groups.set(n, leafCount);

  const earlier = [...state.groups.keys()].filter((g) => g !== n);

  // Replace some leaves of an earlier group.
  if (earlier.length > 0 && random() < 0.4) {
    const g = earlier[int(earlier.length)] ?? 0;
    const count = state.groups.get(g) ?? 1;
    const items: ItemSpec[] = [];
    for (let i = 0, m = 1 + int(3); i < m; i++) {
      items.push({ uri: `./Crash/M${g}/L${int(count)}`, value: `r${n}.${i}.${"y".repeat(int(300))}` });
    }
    body.push(command("Replace", items));
    items.forEach(set);
    statuses.push(...items.map(() => "200"));
  }

  // Atomic: A..E all to n (25%), or a doomed one that must roll back (8%).
  const atomicDraw = random();
  let atomic = false;
  if (atomicDraw < 0.25) {
    atomic = true;
    const inner = ATOMIC_LEAVES.map((l) =>
      command("Replace", [{ uri: `./Crash/Atomic/${l}`, value: `${n}` }]),
    );
    body.push(`<Atomic><CmdID>${++cmdId}</CmdID>${inner.join("")}</Atomic>`);
    for (const l of ATOMIC_LEAVES) state.leaves.set(`./Crash/Atomic/${l}`, `${n}`);
    statuses.push("200", ...ATOMIC_LEAVES.map(() => "200"));
  } else if (atomicDraw < 0.33) {
    const atomicId = ++cmdId;
    const inner = [
      ...["A", "B", "C"].map((l) => command("Replace", [{ uri: `./Crash/Atomic/${l}`, value: `${n}` }])),
      command("Replace", [{ uri: "./Crash/Atomic/Missing", value: `${n}` }]),
      ...["D", "E"].map((l) => command("Replace", [{ uri: `./Crash/Atomic/${l}`, value: `${n}` }])),
    ];
    body.push(`<Atomic><CmdID>${atomicId}</CmdID>${inner.join("")}</Atomic>`);
    // 507 for the Atomic, 216 for what was rolled back, 404 for the failure, 215 for the rest.
    statuses.push("507", "216", "216", "216", "404", "215", "215");
  }

  // Delete an earlier group.
  if (earlier.length > 1 && random() < 0.15) {
    const g = earlier[int(earlier.length)] ?? 0;
    body.push(command("Delete", [{ uri: `./Crash/M${g}` }]));
    statuses.push("200");
    for (let k = 0; k < (state.groups.get(g) ?? 0); k++) state.leaves.delete(`./Crash/M${g}/L${k}`);
    state.groups.delete(g);
  }

  const last = { uri: LAST_PATH, value: String(n) };
  body.push(command(n === 1 ? "Add" : "Replace", [last]));
  set(last);
  statuses.push("200");

  const xml =
    `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>` +
    `<SessionID>1</SessionID><MsgID>${n}</MsgID><Target><LocURI>IMEI:crash</LocURI></Target>` +
    `<Source><LocURI>https://dm.example/crash</LocURI></Source></SyncHdr>` +
    `<SyncBody>${body.join("")}<Final/></SyncBody></SyncML>`;
  return { xml, statuses, atomic };
}

/** The state after messages 1..n. */
export function stateAfter(seed: string, n: number): CrashState {
  const state = emptyState();
  for (let i = 1; i <= n; i++) planMessage(seed, i, state);
  return state;
}

async function main(dbPath: string, seed: string): Promise<void> {
  const started = Date.now();
  const store = Store.open(dbPath);
  const tree = new DmTree(store);
  tree.seed();
  const lastText = tree.read(LAST_PATH)?.value;
  const last = typeof lastText === "string" ? Number(lastText) : 0;
  // The stream state up to the last applied message, to plan the next ones.
  const state = stateAfter(seed, last);
  process.stdout.write(`READY ${last + 1}\n`);
  // When the parent is gone, stop (never outlive the test).
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();

  for (let n = last + 1; ; n++) {
    if (Date.now() - started > CHILD_MAX_MS) {
      process.stderr.write(`not killed within ${CHILD_MAX_MS} ms\n`);
      process.exit(4);
    }
    const planned = planMessage(seed, n, state);
    const { message } = decodeMessage(new TextEncoder().encode(planned.xml));
    let next = 0;
    const ctx: ExecutorContext = {
      tree,
      serverId: CRASH_SERVER_ID,
      encoding: "xml",
      msgId: message.hdr.msgId,
      nextCmdId: () => String(++next),
    };
    const replies = tree.transaction(() => executeCommands(message.body.commands, ctx));
    const got = replies.filter((r) => r.kind === "Status").map((r) => r.data);
    if (got.join(",") !== planned.statuses.join(",")) {
      process.stderr.write(
        `message ${n}: statuses ${got.join(",")}, expected ${planned.statuses.join(",")}\n`,
      );
      process.exit(3);
    }
    // The message is committed (WAL synced): its Status could go out now.
    process.stdout.write(`ACK ${n}\n`);
    // Let stdin's end be seen.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  const [dbPath, seed] = process.argv.slice(2);
  if (dbPath === undefined || seed === undefined) {
    process.stderr.write("usage: tree-crash-child.ts <db-file> <seed>\n");
    process.exit(64);
  }
  await main(dbPath, seed);
}
