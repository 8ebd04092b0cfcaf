/**
 * Answers to the server's user-interaction alerts (1100-1104, protocol.md 3.4) on a gateway that has
 * no user: a configured headless policy decides, and the answer is what a user who let the prompt
 * time out, or took its default, would have given.
 *
 *   1100 DISPLAY          -> 200 (the text is logged by the caller; nobody reads a screen)
 *   1101 CONFIRM/REJECT   -> 200 yes | 304 no; policy "default" takes DR=1/DR=0, else 304
 *   1102 TEXT INPUT       -> 200 + Item(Data = DR) when "default" and DR is given, else 408
 *   1103 SINGLE CHOICE    -> 200 + Item(Data = DR) when "default" and DR names a choice, else 408
 *   1104 MULTIPLE CHOICE  -> 200 + one Item per DR choice (DR=1-3: choices 1 and 3), else 408
 *
 * Why 408 and not 406: the feature is supported, but no user answered within MAXDT, which is what
 * 408 means for these alerts (protocol.md 3.5). "refuse" answers 214 (cancelled) for every prompt
 * that asks something, so a server knows no one will ever answer this box.
 *
 * Pure: the alert and the policy in, the Status code and Items out.
 */
import { AlertCode, StatusCode, type AlertCommand, type Item } from "../syncml/index.js";

/** What a gateway without a user answers. */
export interface HeadlessPolicy {
  /** 1101: "accept" (200), "reject" (304), or "default": the server's DR, else reject. */
  readonly confirm: "accept" | "reject" | "default";
  /** 1102-1104: "default" returns the server's DR (408 without one), "refuse" cancels (214). */
  readonly input: "default" | "refuse";
}

/** An unattended box agrees to nothing it was not told to, and takes the defaults it was offered. */
export const DEFAULT_HEADLESS_POLICY: HeadlessPolicy = { confirm: "default", input: "default" };

/** The Status of a user-interaction alert: its code and, for input and choices, the answer Items. */
export interface AlertAnswer {
  readonly status: number;
  readonly items?: readonly Item[];
}

/** Parameters of the first Item (URL-encoded `MINDT=..&MAXDT=..&DR=..`); unknown ones ignored. */
export function interactionParameters(alert: AlertCommand): ReadonlyMap<string, string> {
  const data = alert.items[0]?.data;
  const out = new Map<string, string>();
  if (data?.kind !== "text") return out;
  for (const pair of data.text.split("&")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim().toUpperCase();
    let value = pair.slice(eq + 1);
    try {
      value = decodeURIComponent(value.replace(/\+/g, " "));
    } catch {
      // A malformed escape: keep the raw text (the parameter is informative, never a command).
    }
    out.set(name, value);
  }
  return out;
}

/** The headless answer to a 1100-1104 alert; 406 for any other code (not ours to answer). */
export function answerUserInteraction(alert: AlertCommand, policy: HeadlessPolicy): AlertAnswer {
  const code = Number(alert.data);
  const dr = interactionParameters(alert).get("DR");
  const noAnswer: AlertAnswer = {
    status: policy.input === "refuse" ? StatusCode.OperationCancelled : StatusCode.RequestTimeout,
  };
  switch (code) {
    case AlertCode.Display:
      return { status: StatusCode.Ok };
    case AlertCode.ConfirmOrReject: {
      const yes = policy.confirm === "accept" || (policy.confirm === "default" && dr?.trim() === "1");
      return { status: yes ? StatusCode.Ok : StatusCode.NotModified };
    }
    case AlertCode.TextInput:
      if (policy.input === "refuse" || dr === undefined) return noAnswer;
      return { status: StatusCode.Ok, items: [textItem(dr)] };
    case AlertCode.SingleChoice: {
      if (policy.input === "refuse" || dr === undefined) return noAnswer;
      const chosen = choices(dr, choiceCount(alert));
      if (chosen?.length !== 1) return noAnswer;
      return { status: StatusCode.Ok, items: chosen.map((n) => textItem(String(n))) };
    }
    case AlertCode.MultipleChoice: {
      if (policy.input === "refuse" || dr === undefined) return noAnswer;
      const chosen = choices(dr, choiceCount(alert));
      if (chosen === undefined || chosen.length === 0) return noAnswer;
      return { status: StatusCode.Ok, items: chosen.map((n) => textItem(String(n))) };
    }
    default:
      return { status: StatusCode.OptionalFeatureNotSupported };
  }
}

/** Item 1 holds the parameters, item 2 the prompt, items 3.. the choices (numbered from 1). */
function choiceCount(alert: AlertCommand): number {
  return Math.max(0, alert.items.length - 2);
}

/**
 * `DR=2`, or several choices as `DR=1-3` (DM 1.2 separates them with '-': choices 1 and 3, not a
 * range; ',' is read the same way), as numbers within 1..count; undefined when any is out of range.
 */
function choices(dr: string, count: number): number[] | undefined {
  const out = new Set<number>();
  for (const part of dr.split(/[,-]/)) {
    const text = part.trim();
    if (!/^[1-9][0-9]{0,3}$/.test(text)) return undefined;
    const n = Number(text);
    if (n > count) return undefined;
    out.add(n);
  }
  return [...out].sort((a, b) => a - b);
}

function textItem(text: string): Item {
  return { data: { kind: "text", text } };
}
