/**
 * What a fan-out stores and reports for each device, and how a job's outcome is judged: pure
 * functions, no tree, no I/O (GwMO CR 8.3; protocol.md 2.1-2.2).
 *
 * A device's result is the list of Status (and Results) it answered, with CmdRefs pointing at the
 * CmdIDs of FanOutCommands, so the server reads them as answers to the commands it wrote, whatever
 * CmdIDs the proxy session used on the way. A device that failed as a whole gets one Status per
 * command with the gateway-made code (504, 503, 502, 401, 514, 500) and the reason in its Item.
 */
import type { AdaptedOutcome, DeviceCommandResult } from "../../drivers/driver.js";
import type { Command, Item, ResultsCommand, StatusCommand } from "../syncml/index.js";
import { escapeText } from "../syncml/xml-encode.js";

export type JobStatus = "Idle" | "InProgress" | "Completed" | "PartiallyCompleted" | "Failed" | "Cancelled";

/** The replies stored as a device's DevResultXML / DevResultWBXML. */
export function deviceReplies(
  commands: readonly Command[],
  outcome: AdaptedOutcome,
): (StatusCommand | ResultsCommand)[] {
  const out: (StatusCommand | ResultsCommand)[] = [];
  let next = 1;
  const cmdId = (): string => String(next++);
  const visit = (
    list: readonly Command[],
    results: readonly DeviceCommandResult[] | undefined,
    failed?: { status: number; reason: string },
  ): void => {
    list.forEach((command, i) => {
      const r = results?.[i];
      const code = failed?.status ?? r?.status;
      out.push({
        kind: "Status",
        cmdId: cmdId(),
        msgRef: "1",
        cmdRef: command.cmdId,
        cmd: command.kind,
        targetRefs: targetsOf(command),
        sourceRefs: [],
        // A command the device never answered (the session ended first) reads as 500.
        data: String(code ?? 500),
        items: failed === undefined ? [] : [{ data: { kind: "text", text: failed.reason } }],
      });
      if (r !== undefined && r.items.length > 0 && failed === undefined) {
        out.push({
          kind: "Results",
          cmdId: cmdId(),
          msgRef: "1",
          cmdRef: command.cmdId,
          targetRefs: [],
          sourceRefs: [],
          items: r.items,
        });
      }
      if (command.kind === "Atomic" || command.kind === "Sequence") visit(command.commands, r?.inner, failed);
    });
  };
  if (outcome.kind === "failed")
    visit(commands, undefined, { status: outcome.status, reason: outcome.reason });
  else visit(commands, outcome.results);
  return out;
}

function targetsOf(command: Command): string[] {
  if (!("items" in command)) return [];
  return command.items.flatMap((item: Item) => (item.target === undefined ? [] : [item.target.locUri]));
}

/** A device succeeded when it answered and every command's status is 2xx. */
export function succeeded(outcome: AdaptedOutcome): boolean {
  if (outcome.kind === "failed") return false;
  const ok = (r: DeviceCommandResult): boolean =>
    r.status !== undefined && r.status >= 200 && r.status < 300 && r.inner.every(ok);
  return outcome.results.every(ok);
}

/** The code recorded for a device: its gateway-made status, or the worst of its command statuses. */
export function deviceStatus(outcome: AdaptedOutcome): number {
  if (outcome.kind === "failed") return outcome.status;
  let worst = 200;
  const walk = (r: DeviceCommandResult): void => {
    const code = r.status ?? 500;
    if (code >= 300 && (worst < 300 || code > worst)) worst = code;
    r.inner.forEach(walk);
  };
  outcome.results.forEach(walk);
  return worst;
}

/** Completed when all succeeded, Failed when none did, PartiallyCompleted otherwise. */
export function jobStatus(succeededCount: number, total: number, cancelled: boolean): JobStatus {
  if (cancelled) return "Cancelled";
  if (succeededCount === total) return "Completed";
  return succeededCount === 0 ? "Failed" : "PartiallyCompleted";
}

/** Commands that may run twice with the same effect (a device interrupted mid-dispatch reruns them). */
export function idempotent(commands: readonly Command[]): boolean {
  return commands.every((c) =>
    c.kind === "Get" || c.kind === "Replace"
      ? true
      : c.kind === "Atomic" || c.kind === "Sequence"
        ? idempotent(c.commands)
        : false,
  );
}

/** The Generic Alert's Mark for a job's outcome (protocol.md 3.8). */
export function markOf(status: JobStatus): string {
  switch (status) {
    case "Completed":
      return "informational";
    case "PartiallyCompleted":
      return "warning";
    case "Failed":
      return "critical";
    case "Cancelled":
      return "minor";
    case "Idle":
    case "InProgress":
      return "indeterminate";
  }
}

/**
 * The bytes an inline alert Data (the aggregated results, XML text) takes on the wire: its UTF-8
 * length once XML-escaped (`<` travels as `&lt;`). That is the larger of its two encodings (WBXML
 * carries it as an inline string, unescaped), so a Data within a bound by this measure fits the
 * bound whichever encoding the northbound session uses, and its object size (what MaxObjSize
 * counts, protocol.md 3.6) is never larger. Infinity for text XML cannot carry.
 */
export function inlineDataBytes(text: string): number {
  try {
    return Buffer.byteLength(escapeText(text), "utf8");
  } catch {
    // A character XML cannot carry (Codec_EncodeFailed): such a Data cannot go inline at all.
    return Number.POSITIVE_INFINITY;
  }
}
