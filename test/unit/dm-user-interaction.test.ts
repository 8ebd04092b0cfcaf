import assert from "node:assert/strict";
import {
  answerUserInteraction,
  DEFAULT_HEADLESS_POLICY,
  interactionParameters,
  type HeadlessPolicy,
} from "../../src/dm/user-interaction.js";
import type { AlertCommand, Item } from "../../src/syncml/index.js";

function alert(code: number, params: string | undefined, ...rest: string[]): AlertCommand {
  const text = (t: string): Item => ({ data: { kind: "text", text: t } });
  return {
    kind: "Alert",
    cmdId: "2",
    data: String(code),
    items: [...(params === undefined ? [] : [text(params)]), ...rest.map(text)],
  };
}

const texts = (items: readonly Item[] | undefined): string[] =>
  (items ?? []).map((i) => (i.data?.kind === "text" ? i.data.text : "?"));

describe("headless user interaction (protocol.md 3.4)", () => {
  const refuse: HeadlessPolicy = { confirm: "reject", input: "refuse" };
  const accept: HeadlessPolicy = { confirm: "accept", input: "default" };

  it("reads MINDT, MAXDT and DR from the first Item, URL-decoded, ignoring junk", () => {
    const p = interactionParameters(alert(1102, "MINDT=5&MAXDT=30&DR=a%20b+c&junk&=x&it=A"));
    assert.equal(p.get("MINDT"), "5");
    assert.equal(p.get("MAXDT"), "30");
    assert.equal(p.get("DR"), "a b c");
    assert.equal(p.get("IT"), "A");
    assert.equal(p.size, 4);
  });

  it("keeps a malformed escape as raw text instead of throwing", () => {
    assert.equal(interactionParameters(alert(1102, "DR=%E0%A4%A")).get("DR"), "%E0%A4%A");
  });

  const cases: [string, AlertCommand, HeadlessPolicy, number, string[]][] = [
    ["1100 display", alert(1100, "MINDT=10", "Updating"), DEFAULT_HEADLESS_POLICY, 200, []],
    ["1101 default without DR -> no", alert(1101, "MAXDT=30", "Reboot?"), DEFAULT_HEADLESS_POLICY, 304, []],
    ["1101 default with DR=1 -> yes", alert(1101, "DR=1", "Reboot?"), DEFAULT_HEADLESS_POLICY, 200, []],
    ["1101 default with DR=0 -> no", alert(1101, "DR=0", "Reboot?"), DEFAULT_HEADLESS_POLICY, 304, []],
    ["1101 accept", alert(1101, "DR=0", "Reboot?"), accept, 200, []],
    ["1101 reject", alert(1101, "DR=1", "Reboot?"), refuse, 304, []],
    ["1102 default with DR", alert(1102, "DR=hello", "Name?"), DEFAULT_HEADLESS_POLICY, 200, ["hello"]],
    ["1102 without DR -> 408", alert(1102, "MAXDT=5", "Name?"), DEFAULT_HEADLESS_POLICY, 408, []],
    ["1102 refuse -> 214", alert(1102, "DR=hello", "Name?"), refuse, 214, []],
    ["1103 DR=2 of 3", alert(1103, "DR=2", "Pick", "a", "b", "c"), DEFAULT_HEADLESS_POLICY, 200, ["2"]],
    [
      "1103 DR out of range -> 408",
      alert(1103, "DR=4", "Pick", "a", "b", "c"),
      DEFAULT_HEADLESS_POLICY,
      408,
      [],
    ],
    ["1103 two defaults -> 408", alert(1103, "DR=1-2", "Pick", "a", "b"), DEFAULT_HEADLESS_POLICY, 408, []],
    ["1104 DR=1-3", alert(1104, "DR=3-1", "Pick", "a", "b", "c"), DEFAULT_HEADLESS_POLICY, 200, ["1", "3"]],
    ["1104 DR=x -> 408", alert(1104, "DR=x", "Pick", "a"), DEFAULT_HEADLESS_POLICY, 408, []],
    ["1104 refuse -> 214", alert(1104, "DR=1", "Pick", "a"), refuse, 214, []],
    ["1104 without parameters -> 408", alert(1104, undefined), DEFAULT_HEADLESS_POLICY, 408, []],
    ["1200 is not a prompt -> 406", alert(1200, undefined), DEFAULT_HEADLESS_POLICY, 406, []],
  ];
  for (const [name, input, policy, status, items] of cases) {
    it(`${name}: ${status}${items.length > 0 ? ` with ${items.join(",")}` : ""}`, () => {
      const answer = answerUserInteraction(input, policy);
      assert.equal(answer.status, status);
      assert.deepEqual(texts(answer.items), items);
    });
  }
});
