/**
 * The child of the northbound crash test (test/e2e/northbound-crash.test.ts): a gateway process.
 *
 *   node --import tsx test/helpers/northbound-gateway-child.ts <db-file> <server-url>
 *
 * Opens (or reopens) the gateway on `db-file` with openNorthboundGateway (md5 both ways), starts a
 * NorthboundService for the account at `server-url` over HTTP (start() delivers what the outbox
 * holds from earlier runs) and prints `READY`. Then it reads commands on stdin, one a line:
 *
 *   enqueue <correlator>  enqueue a Generic Alert; prints `acked <correlator>` once the enqueue
 *                         returned (it is committed), then tells the service (alertsQueued)
 *   drain                 checks in until the outbox is empty and no session runs; prints
 *                         `drained <sessions> <failures>`
 *   exit                  stops the service, closes the store and exits 0
 *
 * Each finished session prints `session ok|failed <acknowledged alerts>`. The parent SIGKILLs it at
 * any moment. It exits by itself when stdin closes (the parent is gone: exit 0) or after
 * CHILD_MAX_MS (exit 4).
 */
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { HttpTransport } from "../../src/northbound/http-transport.js";
import { NorthboundService } from "../../src/northbound/service.js";
import {
  NB_DEV_ID,
  NB_SERVER_ID,
  nbGenericAlert,
  nbSessionAccount,
  openNorthboundGateway,
} from "./northbound.js";

const CHILD_MAX_MS = 60_000;
/** Bounds no run reaches: nothing is dropped, so every acked alert must be delivered. */
export const CRASH_CHILD_BOUNDS = { maxCount: 10_000, maxBytes: 64 << 20 } as const;

function main(db: string, url: string): void {
  const limit = setTimeout(() => {
    process.stderr.write(`not done within ${CHILD_MAX_MS} ms\n`);
    process.exit(4);
  }, CHILD_MAX_MS);
  limit.unref();
  const gateway = openNorthboundGateway(db, url, "md5", CRASH_CHILD_BOUNDS);
  const transport = new HttpTransport();
  let sessions = 0;
  let failures = 0;
  const service = new NorthboundService({
    tree: gateway.tree,
    outbox: gateway.outbox,
    devId: NB_DEV_ID,
    servers: [{ account: nbSessionAccount(url, "md5"), encoding: "wbxml", transport, checkInIntervalMs: 0 }],
    maxMsgSize: 16_384,
    timeoutMs: 5_000,
    maxMessages: 20,
    backoff: { initialMs: 20, factor: 2, maxMs: 200, jitter: 0 },
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    onSession: (_serverId, summary) => {
      sessions++;
      if (!summary.ok) failures++;
      process.stdout.write(`session ${summary.ok ? "ok" : "failed"} ${summary.alertsAcknowledged.length}\n`);
      if (!summary.ok) process.stderr.write(`session failed: ${summary.reason ?? "?"}\n`);
    },
  });
  service.start();
  process.stdout.write("READY\n");

  const drain = async (): Promise<void> => {
    for (;;) {
      await service.idle();
      if (gateway.outbox.stats().count === 0) break;
      service.checkIn(NB_SERVER_ID); // "queued" while a retry is armed: the retry delivers them
      await new Promise((r) => setTimeout(r, 20));
    }
    process.stdout.write(`drained ${sessions} ${failures}\n`);
  };

  const lines = createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  lines.on("line", (line) => {
    queue = queue.then(async () => {
      const [word, arg] = line.trim().split(" ");
      if (word === "enqueue" && arg !== undefined) {
        gateway.outbox.enqueue(nbGenericAlert(arg));
        process.stdout.write(`acked ${arg}\n`);
        service.alertsQueued(NB_SERVER_ID);
      } else if (word === "drain") {
        await drain();
      } else if (word === "exit") {
        await service.stop();
        transport.close();
        gateway.close();
        process.exit(0);
      } else {
        process.stderr.write(`unknown command: ${line}\n`);
      }
    });
  });
  lines.on("close", () => process.exit(0));
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  const [db, url] = process.argv.slice(2);
  if (db === undefined || url === undefined) {
    process.stderr.write("usage: northbound-gateway-child.ts <db-file> <server-url>\n");
    process.exit(64);
  }
  main(db, url);
}
