/**
 * Runs Debian's libwbxml command-line tools (package libwbxml2-utils) as the reference WBXML
 * implementation for interop tests. Each call works on files in a fresh temporary directory that is
 * removed afterwards, and returns the tool's output as a Buffer. A missing tool is an error, never a
 * reason to skip: the interop tests must not pass vacuously.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export const LIBWBXML_INSTALL_HINT = "install libwbxml2-utils (apt-get install libwbxml2-utils)";

type Tool = "xml2wbxml" | "wbxml2xml";

/** Throws unless both libwbxml tools can be run. */
export function requireLibwbxml(): void {
  for (const tool of ["xml2wbxml", "wbxml2xml"] as const) {
    try {
      // Without arguments the tools print their usage and exit non-zero; only a failed spawn matters.
      execFileSync(tool, [], { stdio: "ignore", timeout: 10_000 });
    } catch (e) {
      if (isSpawnFailure(e)) throw missingTool(tool, e);
    }
  }
}

/**
 * XML -> WBXML with libwbxml: `xml2wbxml -n -v 1.2` (WBXML 1.2, no string table), the form DM
 * devices use. Without `-k` libwbxml drops whitespace-only text and trims text outside CDATA.
 */
export function xml2wbxml(xml: Uint8Array | string): Buffer {
  return runTool("xml2wbxml", ["-n", "-v", "1.2"], xml, "in.xml", "out.wbxml");
}

/** WBXML -> XML with libwbxml: `wbxml2xml` in its default (indenting) mode. */
export function wbxml2xml(wbxml: Uint8Array): Buffer {
  return runTool("wbxml2xml", [], wbxml, "in.wbxml", "out.xml");
}

function runTool(
  tool: Tool,
  args: readonly string[],
  input: Uint8Array | string,
  inName: string,
  outName: string,
): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), "dmgw-libwbxml-"));
  try {
    const inPath = path.join(dir, inName);
    const outPath = path.join(dir, outName);
    writeFileSync(inPath, input);
    let stderr = "";
    try {
      // Both tools report success and failure on stderr.
      stderr = execFileSync(tool, [...args, "-o", outPath, inPath], {
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 10_000,
        encoding: "utf8",
      });
    } catch (e) {
      if (isSpawnFailure(e)) throw missingTool(tool, e);
      throw new Error(`${tool} ${[...args, "-o", outName, inName].join(" ")} failed: ${outputOf(e)}`, {
        cause: e,
      });
    }
    // Some failures (an unreadable input) exit 0 without writing the output file.
    if (!existsSync(outPath)) throw new Error(`${tool} wrote no output: ${stderr}`);
    return readFileSync(outPath);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function isSpawnFailure(e: unknown): boolean {
  return e instanceof Error && (e as NodeJS.ErrnoException).code === "ENOENT";
}

function missingTool(tool: Tool, cause: unknown): Error {
  return new Error(`${tool} is not installed or not on PATH: ${LIBWBXML_INSTALL_HINT}`, { cause });
}

function outputOf(e: unknown): string {
  if (typeof e !== "object" || e === null) return String(e);
  const { stderr, stdout, status } = e as { stderr?: unknown; stdout?: unknown; status?: unknown };
  const text = [stderr, stdout]
    .map((s) => (typeof s === "string" ? s : Buffer.isBuffer(s) ? s.toString("utf8") : ""))
    .join("");
  return `exit status ${String(status)}: ${text.trim()}`;
}
