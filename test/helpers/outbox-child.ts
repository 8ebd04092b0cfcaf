/**
 * The child of the outbox crash test (test/integration/outbox-crash.test.ts).
 *
 *   node --import tsx test/helpers/outbox-child.ts <db-file> <run>
 *
 * Opens (or creates) the database, prints `READY`, then enqueues alerts forever: one at a time or
 * two to four in one transaction, each with a correlator `<run>.<k>` and a payload derived from it
 * ({@link payloadFor}). Only once an enqueue (or its transaction) has returned does it print
 * `ACK <id> <correlator>` for each: the point at which the gateway would acknowledge the event.
 * Every tenth step it acknowledges the oldest pending alert and, once that returned, prints
 * `GONE <id>`. The parent SIGKILLs it at some moment.
 *
 * It exits by itself only when its stdin closes (the parent is gone: exit 0) or after CHILD_MAX_MS
 * without being killed (exit 4).
 */
import { pathToFileURL } from "node:url";
import { AlertOutbox, type NewAlert } from "../../src/northbound/outbox.js";
import { Store } from "../../src/tree/store.js";

export const CRASH_SERVER_ID = "crash-srv";
/** Bounds no run reaches: nothing is ever dropped, so every ACKed alert must stay. */
export const CRASH_BOUNDS = { maxCount: 1_000_000, maxBytes: 1_000_000_000 } as const;

const CHILD_MAX_MS = 30_000;

/** The text an alert with this correlator carries: its length varies from 0 to ~1.5 KB. */
export function payloadFor(correlator: string): string {
  let h = 0x811c9dc5;
  for (const ch of correlator) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return `${correlator}:${"p".repeat(h % 1500)}`;
}

function alertFor(correlator: string): NewAlert {
  return {
    serverId: CRASH_SERVER_ID,
    code: 1226,
    correlator,
    items: [
      {
        source: { locUri: "./Crash/Job" },
        meta: { type: "urn:oma:at:oma-gwmo:completionstatus:1.0", format: "chr" },
        data: { kind: "text", text: payloadFor(correlator) },
      },
      { meta: { format: "bin" }, data: { kind: "opaque", bytes: new TextEncoder().encode(correlator) } },
    ],
  };
}

async function main(dbPath: string, run: string): Promise<void> {
  const started = Date.now();
  const store = Store.open(dbPath);
  const outbox = new AlertOutbox(store, CRASH_BOUNDS);
  process.stdout.write("READY\n");
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();

  let k = 0;
  for (let step = 1; ; step++) {
    if (Date.now() - started > CHILD_MAX_MS) {
      process.stderr.write(`not killed within ${CHILD_MAX_MS} ms\n`);
      process.exit(4);
    }
    if (step % 10 === 0) {
      const oldest = outbox.pending(CRASH_SERVER_ID, 1)[0];
      if (oldest !== undefined) {
        outbox.acknowledge([oldest.id]);
        process.stdout.write(`GONE ${oldest.id}\n`);
      }
    } else if (step % 3 === 0) {
      const batch = 2 + ((step % 7) % 3);
      const done = store.db.transaction(() => {
        const ids: [string, string][] = [];
        for (let i = 0; i < batch; i++) {
          const correlator = `${run}.${++k}`;
          ids.push([outbox.enqueue(alertFor(correlator)).id, correlator]);
        }
        return ids;
      })();
      process.stdout.write(done.map(([id, c]) => `ACK ${id} ${c}\n`).join(""));
    } else {
      const correlator = `${run}.${++k}`;
      const { id } = outbox.enqueue(alertFor(correlator));
      process.stdout.write(`ACK ${id} ${correlator}\n`);
    }
    // Let stdin's end be seen.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  const [dbPath, run] = process.argv.slice(2);
  if (dbPath === undefined || run === undefined) {
    process.stderr.write("usage: outbox-child.ts <db-file> <run>\n");
    process.exit(64);
  }
  await main(dbPath, run);
}
