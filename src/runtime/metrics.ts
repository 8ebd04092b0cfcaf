/**
 * Prometheus metrics (text exposition format 0.0.4) on a loopback HTTP port: `GET /metrics`.
 *
 *   scrape --GET /metrics--> snapshot(parts) (observe.ts) --> renderMetrics --> text/plain; version=0.0.4
 *
 * Decisions:
 * - Loopback only, refused at start otherwise: the endpoint has no authentication, and a node
 *   exporter or a local agent is what scrapes a gateway on a cellular link.
 * - Every value is computed at scrape time from the parts; nothing here keeps state or timers, so a
 *   closed server leaves no handle.
 * - Per-job series exist while a job runs (a finished job's devices are in its Results, not here),
 *   which keeps the series count bounded by the running jobs.
 */
import http from "node:http";
import { isIP } from "node:net";
import { ErrorCode, GatewayError } from "../core/errors.js";
import {
  DEVICE_STATUSES,
  northboundCodecErrors,
  northboundSessions,
  snapshot,
  type Snapshot,
} from "./observe.js";
import type { GatewayParts } from "./parts.js";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface MetricsServer {
  /** The port bound (the one asked for, or the one the OS picked for 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** True for a host name or address that stays on this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return h === "::ffff:127.0.0.1";
}

/**
 * Serves `GET /metrics` on `host:port` (port 0 picks one).
 *
 * @throws GatewayError(Metrics_NotLoopback) when `host` is not a loopback address;
 *   GatewayError(Metrics_ListenFailed) when the port cannot be bound.
 */
export async function startMetricsServer(o: {
  host: string;
  port: number;
  parts: GatewayParts;
}): Promise<MetricsServer> {
  if (!isLoopbackHost(o.host)) {
    throw new GatewayError(
      `the metrics endpoint listens on loopback only, not ${o.host}`,
      ErrorCode.Metrics_NotLoopback,
      { context: { host: o.host } },
    );
  }
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("method not allowed\n");
      return;
    }
    let body: string;
    try {
      body = renderMetrics(snapshot(o.parts));
    } catch (e) {
      // A store that fails mid-scrape: the scrape fails (Prometheus marks the target down), the
      // service does not.
      o.parts.log.warn("metrics scrape failed", { error: e instanceof Error ? e.message : String(e) });
      res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("scrape failed\n");
      return;
    }
    res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  // A scraper keeps its connection alive between scrapes; do not let it hold close() up.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => {
      reject(
        new GatewayError(
          `cannot listen on ${o.host}:${o.port} for metrics: ${(e as NodeJS.ErrnoException).code ?? e.message}`,
          ErrorCode.Metrics_ListenFailed,
          { cause: e, context: { host: o.host, port: o.port } },
        ),
      );
    });
    server.listen(o.port, o.host, () => {
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : o.port;
  o.parts.log.info("metrics endpoint listening", { host: o.host, port });
  let closed: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      })),
  };
}

/** One metric family: its HELP, TYPE and samples. */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "gauge" | "counter";
  readonly samples: readonly { readonly labels?: Readonly<Record<string, string>>; readonly value: number }[];
}

/** The exposition text of a snapshot (exported for tests and for a future textfile collector). */
export function renderMetrics(s: Snapshot): string {
  const nb = s.northbound?.servers ?? [];
  const families: Family[] = [
    {
      name: "dmgw_health_ok",
      help: "1 while the health check passes (the watchdog is pinged), else 0.",
      type: "gauge",
      samples: [{ value: s.health.ok ? 1 : 0 }],
    },
    {
      name: "dmgw_store_writable",
      help: "1 while the SQLite store accepts writes, else 0.",
      type: "gauge",
      samples: [{ value: s.health.storeWritable ? 1 : 0 }],
    },
    {
      name: "dmgw_event_loop_lag_seconds",
      help: "Recent event loop delay (p99 over the health check interval).",
      type: "gauge",
      samples: [{ value: s.health.eventLoopLagMs / 1000 }],
    },
    {
      name: "dmgw_uptime_seconds",
      help: "Seconds since the runtime started.",
      type: "gauge",
      samples: [{ value: Math.floor(s.uptimeMs / 1000) }],
    },
    {
      name: "dmgw_process_resident_memory_bytes",
      help: "Resident set size of the process.",
      type: "gauge",
      samples: [{ value: s.rssBytes }],
    },
    {
      name: "dmgw_northbound_sessions_total",
      help: "DM sessions run with each DM server since start.",
      type: "counter",
      samples: nb.map((x) => ({ labels: { server: x.serverId }, value: x.sessions })),
    },
    {
      name: "dmgw_northbound_session_failures_total",
      help: "DM sessions with each DM server that failed since start.",
      type: "counter",
      samples: nb.map((x) => ({ labels: { server: x.serverId }, value: x.failures })),
    },
    {
      name: "dmgw_northbound_server_up",
      help: "1 when the last session with the server went well (no failure since), else 0.",
      type: "gauge",
      samples: nb.map((x) => ({
        labels: { server: x.serverId },
        value: x.consecutiveFailures === 0 ? 1 : 0,
      })),
    },
    {
      name: "dmgw_notifications_total",
      help: "Package #0 notifications by outcome since start.",
      type: "counter",
      samples:
        s.northbound === undefined
          ? []
          : (["accepted", "dropped", "refused"] as const).map((outcome) => ({
              labels: { outcome },
              value: s.northbound?.notifications[outcome] ?? 0,
            })),
    },
    {
      name: "dmgw_outbox_alerts",
      help: "Alerts waiting in the outbox for a DM server.",
      type: "gauge",
      samples: [{ value: s.outbox.count }],
    },
    {
      name: "dmgw_outbox_bytes",
      help: "Stored bytes of the alerts waiting in the outbox.",
      type: "gauge",
      samples: [{ value: s.outbox.bytes }],
    },
    {
      name: "dmgw_outbox_dropped_total",
      help: "Alerts the outbox dropped to stay within its bounds (persisted across restarts).",
      type: "counter",
      samples: [{ value: s.outbox.dropped }],
    },
    {
      name: "dmgw_devices",
      help: "End devices in the inventory, by transport and status.",
      type: "gauge",
      samples: Object.entries(s.devices).flatMap(([transport, counts]) =>
        DEVICE_STATUSES.map((status) => ({ labels: { transport, status }, value: counts[status] })),
      ),
    },
    {
      name: "dmgw_driver_ready",
      help: "1 while the transport's driver is ready, else 0 (the state label says which).",
      type: "gauge",
      samples: s.drivers.map((d) => ({
        labels: { transport: d.transport, state: d.state },
        value: d.state === "ready" ? 1 : 0,
      })),
    },
    {
      name: "dmgw_southbound_sessions_active",
      help: "Proxy DM sessions with end devices open now.",
      type: "gauge",
      samples: [{ value: s.southbound.active }],
    },
    {
      name: "dmgw_southbound_sessions_total",
      help: "Proxy DM sessions with end devices since start.",
      type: "counter",
      samples: [{ value: s.southbound.sessions }],
    },
    {
      name: "dmgw_sessions_total",
      help: "DM sessions since start, both sides (DM servers and end devices).",
      type: "counter",
      samples: [{ value: northboundSessions(s.northbound) + s.southbound.sessions }],
    },
    {
      name: "dmgw_codec_errors_total",
      help: "DM messages that did not decode, since start: from DM servers (northbound) and end devices (southbound).",
      type: "counter",
      samples: [
        { labels: { side: "northbound" }, value: northboundCodecErrors(s.northbound) },
        { labels: { side: "southbound" }, value: s.southbound.codecErrors },
      ],
    },
    {
      name: "dmgw_fanout_jobs_running",
      help: "Fan-out jobs running now.",
      type: "gauge",
      samples: [{ value: s.runningJobs.length }],
    },
    {
      name: "dmgw_fanout_devices",
      help: "Devices of each running fan-out job, by state (pending, dispatched, succeeded, failed).",
      type: "gauge",
      samples: s.runningJobs.flatMap((j) =>
        (["pending", "dispatched", "succeeded", "failed"] as const).map((state) => ({
          labels: { job: j.job, state },
          value: j.overall[state],
        })),
      ),
    },
  ];
  return families.map(renderFamily).join("");
}

function renderFamily(f: Family): string {
  const lines = [`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`];
  for (const sample of f.samples) {
    const labels = Object.entries(sample.labels ?? {});
    const text =
      labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
    lines.push(`${f.name}${text} ${formatValue(sample.value)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** HELP text: backslash and line feed escaped (exposition format 0.0.4). */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Label values: backslash, double quote and line feed escaped. */
export function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}
