/**
 * Reading a request body with a bound, for the HTTP endpoints dmgw serves (the southbound DM
 * endpoint, the DM Server simulator): memory never holds more than `maxBytes`, and an oversize body
 * is drained up to `drainFactor` times the bound, so the peer still reads our 413 instead of a reset,
 * then the socket is destroyed.
 */
import type http from "node:http";

export type BodyRead =
  { readonly ok: true; readonly body: Uint8Array } | { readonly ok: false; readonly tooLarge: true };

export async function readBoundedBody(
  req: http.IncomingMessage,
  maxBytes: number,
  drainFactor = 4,
): Promise<BodyRead> {
  const declared = Number(req.headers["content-length"]);
  const tooLong = Number.isFinite(declared) && declared > maxBytes;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes * drainFactor) {
      req.destroy();
      break;
    }
    if (!tooLong && size <= maxBytes) chunks.push(chunk);
  }
  if (tooLong || size > maxBytes) return { ok: false, tooLarge: true };
  return { ok: true, body: new Uint8Array(Buffer.concat(chunks)) };
}
