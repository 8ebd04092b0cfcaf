/**
 * A child process the crash tests drive by its stdout lines: spawned with tsx, its lines kept as
 * they come, waited on, and killed with SIGKILL by PID (the tests' model of a power cut).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";

export interface ChildEnd {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class LineChild {
  readonly process: ChildProcessWithoutNullStreams;
  readonly pid: number;
  readonly lines: string[] = [];
  stderr = "";
  /** Settles on "close": the process is gone and its stdout read to the end, every line here. */
  readonly closed: Promise<ChildEnd>;
  #waiters: (() => void)[] = [];

  /** Runs `node --import tsx <script> ...args` in `cwd`. */
  constructor(script: string, args: readonly string[], cwd: string) {
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
      cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.process = child;
    assert.ok(child.pid !== undefined, "the child was spawned");
    this.pid = child.pid;
    let pending = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        this.lines.push(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      this.#wake();
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.closed = new Promise((resolve) => {
      child.on("close", (code, signal) => {
        this.#wake();
        resolve({ code, signal });
      });
    });
  }

  get exited(): boolean {
    return this.process.exitCode !== null || this.process.signalCode !== null;
  }

  send(line: string): void {
    this.process.stdin.write(`${line}\n`);
  }

  /** Waits until `cond` holds (true), the child ends or the limit passes (false). */
  async until(cond: () => boolean, limitMs: number): Promise<boolean> {
    const end = Date.now() + limitMs;
    for (;;) {
      if (cond()) return true;
      if (this.exited || Date.now() > end) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 20);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The first line starting with `prefix`, once there (undefined: the child ended or the limit passed). */
  async waitLine(prefix: string, limitMs: number): Promise<string | undefined> {
    const find = (): string | undefined => this.lines.find((l) => l.startsWith(prefix));
    await this.until(() => find() !== undefined, limitMs);
    return find();
  }

  async kill(): Promise<ChildEnd> {
    if (!this.exited) process.kill(this.pid, "SIGKILL");
    return this.closed;
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
