import assert from "node:assert/strict";
import { buildPackage0, type Notification, type Package0Credentials } from "../../src/dm/package0.js";
import {
  DEFAULT_REPLAY_WINDOW_MS,
  NOTIFICATION_DROP_REASONS,
  NotificationGate,
  type NotificationAccount,
  type NotificationDropReason,
  type NotificationGateOptions,
  type NotificationVerdict,
} from "../../src/northbound/notification.js";
import { APP_ID_SYNCML_DM, encodeWspPush } from "../../src/syncml/wsp-push.js";
import { MIME_DM_NOTIFICATION } from "../../src/syncml/constants.js";

const SERVER_ID = "dmsrv";
const PASSWORD = "server-secret";
const NONCE = Uint8Array.from([5, 6, 7, 8]);
const ACCOUNT: NotificationAccount = {
  serverId: SERVER_ID,
  names: [SERVER_ID],
  password: PASSWORD,
  nonce: NONCE,
};
const OTHER: NotificationAccount = {
  serverId: "other",
  names: ["other", "other-name"],
  password: "other-secret",
  nonce: Uint8Array.from([9, 9]),
};
const T0 = 1_700_000_000_000;

function notification(overrides: Partial<Notification> = {}): Notification {
  return {
    version: 11,
    uiMode: "background",
    initiator: "server",
    sessionId: 0xaf,
    serverId: SERVER_ID,
    vendorSpecific: new Uint8Array(0),
    ...overrides,
  };
}

function pkg0(overrides: Partial<Notification> = {}, creds: Partial<Package0Credentials> = {}): Uint8Array {
  return buildPackage0(notification(overrides), {
    serverId: overrides.serverId ?? SERVER_ID,
    password: PASSWORD,
    nonce: NONCE,
    ...creds,
  });
}

function push(
  body: Uint8Array,
  contentType = MIME_DM_NOTIFICATION,
  appId: string = APP_ID_SYNCML_DM,
): Uint8Array {
  return encodeWspPush({ tid: 1, contentType, appId, body });
}

function gate(
  accounts: readonly NotificationAccount[] = [ACCOUNT, OTHER],
  extra: Partial<NotificationGateOptions> = {},
): NotificationGate {
  return new NotificationGate({ accounts: () => accounts, ...extra });
}

function droppedAs(v: NotificationVerdict, reason: NotificationDropReason): void {
  assert.equal(v.kind, "dropped", `expected a ${reason} drop, got a trigger`);
  assert.equal(v.reason, reason, v.detail);
}

describe("NotificationGate", () => {
  describe("triggers", () => {
    it("accepts a DM push keyed with the stored nonce and maps the session id to upper-case hex", () => {
      const v = gate().accept(push(pkg0({ vendorSpecific: Uint8Array.from([1, 2]) })), T0);
      assert.equal(v.kind, "trigger", v.kind === "dropped" ? v.detail : "");
      assert.equal(v.serverId, SERVER_ID);
      assert.equal(v.sessionId, "AF");
      assert.equal(v.uiMode, "background");
      assert.equal(v.initiator, "server");
      assert.equal(v.version, 11);
      assert.equal(v.versionSupported, true);
      assert.equal(v.nonceUsed, "stored");
      assert.deepEqual(v.nonceBytes, NONCE);
      assert.deepEqual(v.vendorSpecific, Uint8Array.from([1, 2]));
    });

    it("passes ui-mode and initiator through", () => {
      const v = gate().accept(
        push(pkg0({ uiMode: "user-interaction", initiator: "client", sessionId: 0x1234 })),
        T0,
      );
      assert.ok(v.kind === "trigger");
      assert.equal(v.uiMode, "user-interaction");
      assert.equal(v.initiator, "client");
      assert.equal(v.sessionId, "1234");
    });

    it("acceptPackage0 judges a bare Pkg#0 (already unwrapped, as from SMS)", () => {
      const v = gate().acceptPackage0(pkg0(), T0);
      assert.ok(v.kind === "trigger");
      assert.equal(v.sessionId, "AF");
    });

    const fallbacks: [string, Uint8Array, "zero-bytes" | "zero-ascii"][] = [
      ["4 zero bytes", new Uint8Array(4), "zero-bytes"],
      ['the text "0x00000000"', new TextEncoder().encode("0x00000000"), "zero-ascii"],
    ];
    for (const [name, nonce, kind] of fallbacks) {
      it(`reports a fallback nonce (${name}) when the stored one fails`, () => {
        const v = gate().accept(push(pkg0({}, { nonce })), T0);
        assert.ok(v.kind === "trigger");
        assert.equal(v.nonceUsed, kind);
        assert.deepEqual(v.nonceBytes, nonce);
      });
    }

    it("tries only the fallbacks when no nonce is stored", () => {
      const g = gate([{ ...ACCOUNT, nonce: undefined }]);
      const v = g.accept(push(pkg0({}, { nonce: new Uint8Array(4) })), T0);
      assert.ok(v.kind === "trigger");
      assert.equal(v.nonceUsed, "zero-bytes");
    });

    it("verifies a digest keyed with the SRVCRED AAuthName instead of the ServerID", () => {
      const v = gate().accept(
        push(
          pkg0(
            { serverId: "other" },
            { serverId: "other-name", password: "other-secret", nonce: Uint8Array.from([9, 9]) },
          ),
        ),
        T0,
      );
      assert.ok(v.kind === "trigger");
      assert.equal(v.serverId, "other");
    });

    it("finds the account by its AAuthName when the Pkg#0 names that instead of the ServerID", () => {
      const v = gate().accept(
        push(pkg0({ serverId: "other-name" }, { password: "other-secret", nonce: Uint8Array.from([9, 9]) })),
        T0,
      );
      assert.ok(v.kind === "trigger");
      assert.equal(v.serverId, "other");
    });

    it("reads the accounts on every notification, so a changed account takes effect", () => {
      let accounts: NotificationAccount[] = [];
      const g = new NotificationGate({ accounts: () => accounts });
      droppedAs(g.accept(push(pkg0()), T0), "unknown-server");
      accounts = [ACCOUNT];
      assert.equal(g.accept(push(pkg0()), T0).kind, "trigger");
    });
  });

  describe("drops", () => {
    const cases: [string, NotificationDropReason, () => Uint8Array][] = [
      ["bytes that are not a WSP push", "not-dm-push", () => Uint8Array.from([0x01, 0x05, 0x00])],
      ["an empty datagram", "not-dm-push", () => new Uint8Array(0)],
      ["a push of another content type", "not-dm-push", () => push(pkg0(), "application/vnd.wap.sic")],
      [
        "a push for another application",
        "not-dm-push",
        () => push(pkg0(), MIME_DM_NOTIFICATION, "x-wap-application:foo"),
      ],
      ["a Pkg#0 shorter than its header", "malformed", () => push(pkg0().slice(0, 20))],
      ["a length-id past the end", "malformed", () => push(pkg0().slice(0, 26))],
      [
        "session id 0",
        "malformed",
        () => {
          const b = pkg0();
          b[21] = 0; // session id: bytes 21..22 (low word: future-use, sessionid, length-id)
          b[22] = 0;
          return push(b);
        },
      ],
      ["a server id no account has", "unknown-server", () => push(pkg0({ serverId: "stranger" }))],
      ["a wrong password", "bad-digest", () => push(pkg0({}, { password: "guess" }))],
      [
        "a flipped digest bit",
        "bad-digest",
        () => {
          const b = pkg0();
          b[0] = (b[0] ?? 0) ^ 1;
          return push(b);
        },
      ],
      [
        "a changed trigger (session id) under the old digest",
        "bad-digest",
        () => {
          const b = pkg0();
          b[21] = 0xb0;
          return push(b);
        },
      ],
    ];
    for (const [name, reason, input] of cases) {
      it(`drops ${name} as ${reason}`, () => {
        const g = gate();
        droppedAs(g.accept(input(), T0), reason);
        assert.equal(g.stats().dropped[reason], 1);
        assert.equal(g.stats().triggers, 0);
      });
    }

    it("drops a repeat of an accepted (server, session) as replay", () => {
      const g = gate();
      const datagram = push(pkg0());
      assert.equal(g.accept(datagram, T0).kind, "trigger");
      const v = g.accept(datagram, T0 + 1000);
      droppedAs(v, "replay");
      assert.equal(v.serverId, SERVER_ID);
      assert.equal(g.stats().dropped.replay, 1);
    });

    it("drops a version other than 11/12 as unsupported-version when told to, else flags it", () => {
      const datagram = push(pkg0({ version: 13 }));
      droppedAs(
        gate([ACCOUNT], { dropUnsupportedVersions: true }).accept(datagram, T0),
        "unsupported-version",
      );
      const v = gate([ACCOUNT]).accept(datagram, T0);
      assert.ok(v.kind === "trigger");
      assert.equal(v.version, 13);
      assert.equal(v.versionSupported, false);
      assert.equal(
        gate([ACCOUNT], { dropUnsupportedVersions: true }).accept(push(pkg0({ version: 12 })), T0).kind,
        "trigger",
      );
    });

    it("checks the digest before the version: a forged odd version is bad-digest", () => {
      const datagram = push(pkg0({ version: 13 }, { password: "guess" }));
      droppedAs(gate([ACCOUNT], { dropUnsupportedVersions: true }).accept(datagram, T0), "bad-digest");
    });

    it("counts every reason separately", () => {
      const g = gate();
      g.accept(Uint8Array.from([0xff]), T0);
      g.accept(push(pkg0({ serverId: "stranger" })), T0);
      g.accept(push(pkg0({ serverId: "stranger" })), T0);
      g.accept(push(pkg0()), T0);
      const { dropped, triggers } = g.stats();
      assert.equal(triggers, 1);
      assert.deepEqual(Object.fromEntries(NOTIFICATION_DROP_REASONS.map((r) => [r, dropped[r]])), {
        "not-dm-push": 1,
        malformed: 0,
        "unknown-server": 2,
        "bad-digest": 0,
        replay: 0,
        "unsupported-version": 0,
      });
    });

    it("never puts the password or the nonce in a drop detail", () => {
      const g = gate([{ ...ACCOUNT, nonce: new TextEncoder().encode("nonce-text") }]);
      const details = [
        g.accept(push(pkg0({}, { password: "guess" })), T0),
        g.accept(push(pkg0()), T0),
        g.accept(push(pkg0()), T0),
      ].map((v) => (v.kind === "dropped" ? v.detail : ""));
      for (const d of details) {
        assert.ok(!d.includes(PASSWORD), d);
        assert.ok(!d.includes("nonce-text"), d);
      }
    });
  });

  describe("replay window", () => {
    it("forgets a session after the window (injected clock)", () => {
      const g = gate([ACCOUNT], { replayWindowMs: 60_000 });
      const datagram = push(pkg0());
      assert.equal(g.accept(datagram, T0).kind, "trigger");
      droppedAs(g.accept(datagram, T0 + 59_999), "replay");
      assert.equal(g.accept(datagram, T0 + 60_000).kind, "trigger");
      droppedAs(g.accept(datagram, T0 + 60_001), "replay");
    });

    it("defaults to 10 minutes", () => {
      assert.equal(DEFAULT_REPLAY_WINDOW_MS, 600_000);
      const g = gate();
      const datagram = push(pkg0());
      g.accept(datagram, T0);
      droppedAs(g.accept(datagram, T0 + 599_999), "replay");
      assert.equal(g.accept(datagram, T0 + 600_000).kind, "trigger");
    });

    it("keys on server and session: another session id or another server is not a replay", () => {
      const g = gate();
      assert.equal(g.accept(push(pkg0()), T0).kind, "trigger");
      assert.equal(g.accept(push(pkg0({ sessionId: 0xb0 })), T0).kind, "trigger");
      const other = pkg0({ serverId: "other" }, { password: "other-secret", nonce: Uint8Array.from([9, 9]) });
      assert.equal(g.accept(push(other), T0).kind, "trigger");
    });

    it("treats a re-sent session id with a new digest (fallback nonce) as the same session", () => {
      const g = gate();
      assert.equal(g.accept(push(pkg0()), T0).kind, "trigger");
      droppedAs(g.accept(push(pkg0({}, { nonce: new Uint8Array(4) })), T0 + 5), "replay");
    });

    it("is not poisoned by a forged notification: the genuine one after it still triggers", () => {
      const g = gate();
      droppedAs(g.accept(push(pkg0({}, { password: "guess" })), T0), "bad-digest");
      assert.equal(g.accept(push(pkg0()), T0 + 1).kind, "trigger");
    });

    it("expires old entries as time passes", () => {
      const g = gate([ACCOUNT], { replayWindowMs: 1000 });
      for (let id = 1; id <= 5; id++) g.accept(push(pkg0({ sessionId: id })), T0 + id);
      assert.equal(g.stats().replayEntries, 5);
      g.accept(push(pkg0({ sessionId: 100 })), T0 + 1003);
      assert.equal(g.stats().replayEntries, 3); // ids 1..3 expired, 4, 5 and 100 remain
      assert.equal(g.stats().evicted, 0);
    });

    it("holds at most maxReplayEntries, evicting the oldest", () => {
      const g = gate([ACCOUNT], { maxReplayEntries: 3 });
      for (let id = 1; id <= 4; id++)
        assert.equal(g.accept(push(pkg0({ sessionId: id })), T0 + id).kind, "trigger");
      assert.equal(g.stats().replayEntries, 3);
      assert.equal(g.stats().evicted, 1);
      droppedAs(g.accept(push(pkg0({ sessionId: 4 })), T0 + 10), "replay");
      // The evicted oldest is forgotten: the cost of the bound.
      assert.equal(g.accept(push(pkg0({ sessionId: 1 })), T0 + 11).kind, "trigger");
      for (let id = 5; id <= 1000; id++) g.accept(push(pkg0({ sessionId: id })), T0 + id);
      assert.equal(g.stats().replayEntries, 3);
    });

    it("refuses a window or bound that makes no sense", () => {
      assert.throws(() => gate([], { replayWindowMs: -1 }), RangeError);
      assert.throws(() => gate([], { replayWindowMs: Number.NaN }), RangeError);
      assert.throws(() => gate([], { maxReplayEntries: 0 }), RangeError);
      assert.throws(() => gate([], { maxReplayEntries: 1.5 }), RangeError);
    });
  });
});
