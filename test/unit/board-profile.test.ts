import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  BOARD_PROFILE_NAMES,
  boardProfileNames,
  detectBoardProfile,
  loadBoardProfile,
  parseBoardProfile,
  resolveBoardProfile,
} from "../../board/profile.js";
import { ErrorCode, isGatewayError } from "../../src/core/errors.js";

const isProfileError = (e: unknown): boolean => isGatewayError(e, ErrorCode.Config_BoardProfile);

describe("board profiles (board/profile.ts)", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dmgw-board-"));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const model = (text: string): string => {
    const file = path.join(dir, "model");
    // As the kernel writes it: NUL-terminated.
    fs.writeFileSync(file, `${text}\0`);
    return file;
  };

  it("ships exactly the four profiles, each valid", () => {
    assert.deepEqual(boardProfileNames(), [...BOARD_PROFILE_NAMES].sort());
    for (const name of BOARD_PROFILE_NAMES) {
      const p = loadBoardProfile(name);
      assert.equal(p.name, name);
      for (const port of [...p.serialPorts.map((s) => s.path), ...(p.modem ? [p.modem.path] : [])]) {
        assert.match(port, /^(\/dev\/serial\/by-id\/|tcp:\/\/)/, `${name}: ${port}`);
      }
      assert.equal(p.ble?.adapter, "hci0", name);
    }
  });

  it("names GPIO lines by chip label and line on the Raspberry Pis", () => {
    const pi4 = loadBoardProfile("raspberry-pi-4");
    assert.deepEqual(pi4.gpio.modemPower, { chip: "pinctrl-bcm2711", line: 17, activeLow: false });
    assert.equal(pi4.gpio.modemReset?.activeLow, true);
    assert.equal(loadBoardProfile("raspberry-pi-5").gpio.statusLed?.chip, "pinctrl-rp1");
    assert.deepEqual(loadBoardProfile("generic-x86-64").gpio, {});
  });

  describe("auto", () => {
    for (const [text, expected] of [
      ["Raspberry Pi 4 Model B Rev 1.4", "raspberry-pi-4"],
      ["Raspberry Pi 400 Rev 1.0", "raspberry-pi-4"],
      ["Raspberry Pi Compute Module 4 Rev 1.0", "raspberry-pi-4"],
      ["Raspberry Pi 5 Model B Rev 1.0", "raspberry-pi-5"],
    ] as const) {
      it(`detects ${expected} from "${text}"`, () => {
        assert.equal(detectBoardProfile({ modelPath: model(text) }).name, expected);
        assert.equal(resolveBoardProfile("auto", { modelPath: model(text) }).name, expected);
      });
    }

    it("falls back to generic-x86-64 without a device tree", () => {
      assert.equal(detectBoardProfile({ modelPath: path.join(dir, "absent") }).name, "generic-x86-64");
    });

    it("refuses a model no profile knows, naming it", () => {
      assert.throws(
        () => detectBoardProfile({ modelPath: model("Banana Pi BPI-M5") }),
        (e: unknown) => isProfileError(e) && /Banana Pi BPI-M5/.test((e as Error).message),
      );
    });
  });

  it("refuses an unknown profile name, listing the known ones", () => {
    assert.throws(
      () => loadBoardProfile("orange-pi"),
      (e: unknown) => isProfileError(e) && /known: .*raspberry-pi-4/.test((e as Error).message),
    );
    assert.throws(() => loadBoardProfile("../etc/passwd"), isProfileError);
  });

  it("reports every problem of invalid data at once (typed error)", () => {
    const data = {
      name: "other",
      description: "",
      model: "Raspberry",
      serialPorts: [
        { name: "RS485", path: "/dev/ttyUSB0" },
        { name: "x", path: "COM3", baudRate: 7 },
      ],
      modem: { path: "/dev/ttyACM2" },
      ble: { adapter: "bluetooth0" },
      gpio: { modemPower: { chip: "/dev/gpiochip0", line: -1 }, fan: { chip: "x", line: 1 } },
      colour: "green",
    };
    assert.throws(
      () => parseBoardProfile(data, "mine"),
      (e: unknown) => {
        assert.ok(isProfileError(e));
        const problems = (e as { context?: Record<string, unknown> }).context?.["problems"] as string[];
        for (const where of [
          "colour",
          "name",
          "description",
          "model",
          "serialPorts[0].name",
          "serialPorts[0].path",
          "serialPorts[1].path",
          "serialPorts[1].baudRate",
          "modem.path",
          "ble.adapter",
          "gpio.fan",
          "gpio.modemPower.chip",
          "gpio.modemPower.line",
        ]) {
          assert.ok(
            problems.some((p) => p.startsWith(`${where}:`)),
            `${where} missing: ${JSON.stringify(problems)}`,
          );
        }
        return true;
      },
    );
  });

  it("reads profiles from another directory (a site's own board)", () => {
    fs.writeFileSync(
      path.join(dir, "my-box.json"),
      JSON.stringify({
        name: "my-box",
        description: "a box",
        model: ["My Box"],
        serialPorts: [],
        gpio: {},
      }),
    );
    fs.writeFileSync(path.join(dir, "broken.json"), "{");
    const p = loadBoardProfile("my-box", { dir });
    assert.equal(p.modem, undefined);
    assert.equal(p.ble, undefined);
    assert.throws(() => loadBoardProfile("broken", { dir }), isProfileError);
  });
});
