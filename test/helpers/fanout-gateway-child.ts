/**
 * The child of the fan-out crash test (test/e2e/fanout-crash.test.ts): a gateway process.
 *
 *   node --import tsx test/helpers/fanout-gateway-child.ts <db-file> <fleet-json> <mode>
 *
 * `fleet-json` (FleetSpec) names the southbound port and the devices with their UDP addresses;
 * `mode` is `idempotent` (Get + Replace) or `exec` (Get + Exec). The child opens (or reopens) the
 * gateway on `db-file`: store, tree (standard MOs + GwMO), outbox, Southbound with the http driver
 * on the given port, the inventory mirror and the fan-out engine; calls `engine.resume()` (as a
 * gateway does at start, before any server session) and prints `ready`. On a fresh file it then
 * provisions the devices, creates the group and Execs the job's Start as a server would (each step
 * one transaction, each done only when the file lacks it, so a kill in between is picked up).
 *
 * Every 50 ms it prints `done <n>` (the job's Progress/Done). When the journal says the job finished
 * and the engine is idle it prints `finished <Status>`, closes everything and exits 0. The parent
 * SIGKILLs it at any moment. It exits by itself when stdin closes (the parent is gone: exit 0), after
 * CHILD_MAX_MS (exit 4), or when the setup fails (exit 3). DMGW_FANOUT_CHILD_LOG=1 writes the
 * gateway's warn/info logs to stderr (the parent shows a child's stderr when a run fails).
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { HttpDriver } from "../../drivers/http/driver.js";
import { SILENT_LOGGER, type LogFields, type Logger, type LogText } from "../../src/core/log.js";
import { executeCommands } from "../../src/dm/command-executor.js";
import { FanoutEngine } from "../../src/fanout/engine.js";
import { mirrorInventory } from "../../src/mo/gwmo-inventory.js";
import { gwmoPlugins } from "../../src/mo/gwmo.js";
import { standardMoPlugins } from "../../src/mo/standard.js";
import { AlertOutbox } from "../../src/northbound/outbox.js";
import { Southbound } from "../../src/southbound/southbound.js";
import type { Command, StatusCommand } from "../../src/syncml/index.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import { testIdentity } from "./gateway.js";

export const FANOUT_SERVER_ID = "dmsrv";
/** The gateway's ServerID toward its devices. */
export const FANOUT_GW_ID = "dmgw-gw1";
export const FANOUT_JOB = "./GwMO/Fanout/crashjob";
export const FANOUT_GROUP = "./GwMO/Config/Groups/crash";
export const FANOUT_CORRELATOR = "corr-crash";
/** What the idempotent job writes to every device. */
export const FANOUT_SETTING = "7";
/** Bounds no run reaches (the attach alerts of every device are in the outbox too). */
export const FANOUT_OUTBOX_BOUNDS = { maxCount: 100_000, maxBytes: 256 << 20 } as const;

export type FanoutMode = "idempotent" | "exec";

/**
 * The job's options. DeviceTimeout is short so the silent devices fail soon, yet long enough for a
 * loaded gateway (both processes share two cores: a device's turn waits behind the others'
 * messages). Retries 0: a 504 retry would also repeat an Exec that ran, and a device answering the
 * first push late would meet the retry's session; neither is what this test is about.
 */
export const FANOUT_OPTIONS: Readonly<Record<string, string>> = {
  Concurrency: "25",
  DeviceTimeout: "5000",
  Retries: "0",
};

export const FANOUT_COMMANDS: Readonly<Record<FanoutMode, string>> = {
  idempotent: `<Get><CmdID>11</CmdID><Item><Target><LocURI>./DevInfo/Man</LocURI></Target></Item></Get>
<Replace><CmdID>12</CmdID><Item><Target><LocURI>./Vendor/Setting1</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>${FANOUT_SETTING}</Data></Item></Replace>`,
  exec: `<Get><CmdID>11</CmdID><Item><Target><LocURI>./DevInfo/Man</LocURI></Target></Item></Get>
<Exec><CmdID>13</CmdID><Item><Target><LocURI>./Vendor/Reboot</LocURI></Target></Item></Exec>`,
};

/** What the parent hands the child: where devices post, and where each one is notified. */
export interface FleetSpec {
  readonly port: number;
  readonly devices: readonly { readonly id: string; readonly address: string }[];
}

/** The credentials of `id` on both sides (the fleet's devices and the gateway's accounts). */
export function fanoutCredentials(id: string) {
  return {
    clientAuth: { scheme: "md5" as const, name: id, secret: `dev-${id}` },
    serverAuth: { scheme: "md5" as const, name: FANOUT_GW_ID, secret: `gw-${id}` },
  };
}

const CHILD_MAX_MS = 120_000;

/** DMGW_FANOUT_CHILD_LOG=1: warnings and infos on stderr, with the ms since start (for debugging). */
function stderrLogger(namespace: string, t0: number): Logger {
  const write =
    (level: string) =>
    (text: LogText, fields?: LogFields): void => {
      const t = typeof text === "string" ? text : text();
      process.stderr.write(
        `${Date.now() - t0} ${level} ${namespace}: ${t}${fields === undefined ? "" : ` ${JSON.stringify(fields)}`}\n`,
      );
    };
  const nothing = (): void => undefined;
  return {
    error: write("error"),
    warn: write("warn"),
    info: write("info"),
    debug: nothing,
    trace: nothing,
    enabled: (level) => level === "error" || level === "warn" || level === "info",
    child: (ns) => stderrLogger(`${namespace}:${ns}`, t0),
  };
}

const add = (cmdId: number, uri: string, format: string, text: string): Command => ({
  kind: "Add",
  cmdId: String(cmdId),
  items: [{ target: { locUri: uri }, meta: { format }, data: { kind: "text", text } }],
});

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(3);
}

async function main(db: string, specFile: string, mode: FanoutMode): Promise<void> {
  const limit = setTimeout(() => {
    process.stderr.write(`not done within ${CHILD_MAX_MS} ms\n`);
    process.exit(4);
  }, CHILD_MAX_MS);
  limit.unref();
  // The parent is gone: nobody will kill us.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
  const spec = JSON.parse(readFileSync(specFile, "utf8")) as FleetSpec;
  const log = process.env["DMGW_FANOUT_CHILD_LOG"] === "1" ? stderrLogger("dmgw", Date.now()) : SILENT_LOGGER;

  const store = Store.open(db);
  const late: { engine?: FanoutEngine; south?: Southbound } = {};
  const tree = new DmTree(store, {
    plugins: [
      ...standardMoPlugins(testIdentity("IMEI:1"), []),
      ...gwmoPlugins({
        serverIds: [FANOUT_SERVER_ID],
        deviceExists: (id) => late.south?.registry.get(id) !== undefined,
        control: () => late.engine,
      }),
    ],
  });
  tree.seed();
  const outbox = new AlertOutbox(store, FANOUT_OUTBOX_BOUNDS);
  const south = new Southbound({
    store,
    outbox,
    alertServers: () => [FANOUT_SERVER_ID],
    log: log.child("southbound"),
  });
  late.south = south;
  const stopMirror = mirrorInventory(tree, south.registry);
  const driver = new HttpDriver(
    { host: "127.0.0.1", port: spec.port },
    south.driverContext("http", new AbortController().signal),
  );
  south.addDriver(driver);
  await driver.start();
  const engine = new FanoutEngine({
    tree,
    outbox,
    devices: (id) => south.endDevice(id),
    retryBackoff: { initialMs: 50, maxMs: 100 },
    log: log.child("fanout"),
  });
  late.engine = engine;

  // As a gateway starts: the journal's running jobs first, before any server session.
  engine.resume();
  process.stdout.write("ready\n");

  /** DM commands as a server sends them in one message: one transaction. */
  const serverRuns = (commands: readonly Command[]): StatusCommand[] => {
    let next = 1;
    const replies = tree.transaction(() =>
      executeCommands(commands, {
        tree,
        serverId: FANOUT_SERVER_ID,
        encoding: "xml",
        msgId: "2",
        nextCmdId: () => String(next++),
      }),
    );
    return replies.filter((r): r is StatusCommand => r.kind === "Status");
  };

  // Provisioning: one commit for every device the inventory lacks (none after the first run).
  const missing = spec.devices.filter((d) => south.registry.get(d.id) === undefined);
  if (missing.length > 0) {
    tree.transaction(() => {
      for (const d of missing) {
        south.provision({
          deviceId: d.id,
          address: { transport: "http", address: d.address },
          account: { deviceId: d.id, serverId: FANOUT_GW_ID, ...fanoutCredentials(d.id) },
        });
      }
    });
  }
  if (tree.read(FANOUT_GROUP) === undefined) {
    const statuses = serverRuns([
      add(1, `${FANOUT_GROUP}/GroupID`, "chr", "crash"),
      // Zero-padded names: the members' order (n) is the fleet's.
      ...spec.devices.map((d, i) =>
        add(i + 2, `${FANOUT_GROUP}/Members/m${String(i).padStart(5, "0")}/DeviceID`, "chr", d.id),
      ),
    ]);
    const bad = statuses.filter((s) => s.data !== "200");
    if (bad.length > 0) fail(`the group was refused: ${bad.map((s) => `${s.cmdRef}:${s.data}`).join(" ")}`);
  }
  const journalled = store.db.prepare("SELECT 1 FROM fanout_job WHERE job_path = ?").get(FANOUT_JOB);
  if (journalled === undefined) {
    // Any half-made job of a killed first run is gone with its transaction: the Adds and the Exec
    // are one message.
    const options = Object.entries(FANOUT_OPTIONS).map(([name, value], i): Command => ({
      kind: "Replace",
      cmdId: String(i + 3),
      items: [
        { target: { locUri: `${FANOUT_JOB}/Ext/Options/${name}` }, data: { kind: "text", text: value } },
      ],
    }));
    const statuses = serverRuns([
      add(1, `${FANOUT_JOB}/FanOut/FanOutCommands`, "xml", FANOUT_COMMANDS[mode]),
      add(2, `${FANOUT_JOB}/FanOut/TargetGroupRef`, "chr", "crash"),
      ...options,
      {
        kind: "Exec",
        cmdId: "99",
        correlator: FANOUT_CORRELATOR,
        items: [{ target: { locUri: `${FANOUT_JOB}/FanOut/Start` } }],
      },
    ]);
    const codes = statuses.map((s) => s.data);
    if (codes.at(-1) !== "202" || codes.slice(0, -1).some((c) => c !== "200"))
      fail(`the job was refused: ${codes.join(" ")}`);
  }

  const text = (path: string): string | undefined => {
    const v = tree.read(path)?.value;
    return v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v);
  };
  const jobState = store.db.prepare("SELECT state FROM fanout_job WHERE job_path = ?").pluck();
  let closing = false;
  const progress = setInterval(() => {
    if (closing) return;
    process.stdout.write(`done ${text(`${FANOUT_JOB}/Ext/Progress/Done`) ?? "?"}\n`);
    if (jobState.get(FANOUT_JOB) !== "finished") return;
    closing = true;
    clearInterval(progress);
    void (async () => {
      await engine.idle();
      process.stdout.write(`finished ${text(`${FANOUT_JOB}/Status`) ?? "?"}\n`);
      await engine.stop();
      stopMirror();
      await south.stop();
      store.close();
      process.exit(0);
    })();
  }, 50);
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  const [db, specFile, mode] = process.argv.slice(2);
  if (db === undefined || specFile === undefined || (mode !== "idempotent" && mode !== "exec")) {
    process.stderr.write("usage: fanout-gateway-child.ts <db-file> <fleet-json> idempotent|exec\n");
    process.exit(64);
  }
  main(db, specFile, mode).catch((e: unknown) => {
    fail(`the child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  });
}
