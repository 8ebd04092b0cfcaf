/**
 * The simulated devices' child process of the southbound and fan-out benches
 * (southbound-devices.ts): started with a config, read until `ready`, stopped by its PID, so the
 * bench process holds the gateway side alone.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { DeviceAddress } from "../../drivers/driver.js";
import type { DevicesConfig, DevicesDone, DevicesLine } from "./southbound-devices.js";

const DEVICES_SCRIPT = fileURLToPath(new URL("./southbound-devices.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** The device child process: started with a config, read until `ready`, stopped by its PID. */
export class DeviceProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #lines: DevicesLine[] = [];
  #waiter: (() => void) | undefined;
  #stderr = "";
  readonly #killOnExit = (): void => {
    this.#child.kill("SIGKILL");
  };

  constructor(config: DevicesConfig | readonly DevicesConfig[]) {
    this.#child = spawn(process.execPath, ["--import", "tsx", DEVICES_SCRIPT, JSON.stringify(config)], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "pipe"],
    });
    // A bench that dies must not leave the devices running.
    process.once("exit", this.#killOnExit);
    this.#exited = new Promise((resolve) => {
      this.#child.once("close", () => {
        process.off("exit", this.#killOnExit);
        this.#waiter?.();
        resolve();
      });
    });
    this.#child.stderr?.setEncoding("utf8");
    this.#child.stderr?.on("data", (s: string) => {
      this.#stderr = (this.#stderr + s).slice(-4000);
    });
    if (this.#child.stdout === null) throw new Error("the device process has no stdout");
    createInterface({ input: this.#child.stdout }).on("line", (line) => {
      try {
        this.#lines.push(JSON.parse(line) as DevicesLine);
      } catch {
        this.#stderr = `${this.#stderr}\n(stdout) ${line}`.slice(-4000);
      }
      this.#waiter?.();
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** ble: the private system bus from the ready line. */
  get dbus(): { readonly address: string; readonly pid: number } | undefined {
    for (const l of this.#lines) if ("ready" in l) return l.dbus;
    return undefined;
  }

  /** Every device's address, once the process says `ready`. */
  async ready(timeoutMs: number): Promise<Map<string, DeviceAddress>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (this.#lines.some((l) => "ready" in l)) break;
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
        throw new Error(`the device process exited before it was ready: ${this.#stderr}`);
      }
      if (Date.now() > until)
        throw new Error(`the device process was not ready in ${timeoutMs} ms: ${this.#stderr}`);
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 100);
      });
    }
    const addresses = new Map<string, DeviceAddress>();
    for (const l of this.#lines) if ("deviceId" in l) addresses.set(l.deviceId, l.address);
    return addresses;
  }

  /**
   * Ends stdin and sends SIGTERM to its PID (both stop the devices), waits for the exit (SIGKILL
   * after 10 s); resolves with the devices' own tally of their sessions, when it came.
   */
  async stop(): Promise<DevicesDone | undefined> {
    const pid = this.#child.pid;
    if (this.#child.exitCode === null && this.#child.signalCode === null && pid !== undefined) {
      this.#child.stdin?.end();
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, 10_000);
      await this.#exited;
      clearTimeout(timer);
    }
    await this.#exited;
    for (const l of this.#lines) if ("done" in l) return l.done;
    return undefined;
  }
}

/** CPU ms a process has used (Linux /proc; undefined elsewhere or once it is gone). */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the command): ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}
