/**
 * CoRE Link Format (RFC 6690), content format 40: the registration payload of LwM2M (`</1/0>,</3/0>`,
 * Core 6.2.1) and the answer to Discover (`</3/0/1>;dim=2`). Pure parse and format.
 * Hostile input throws GatewayError(Codec_TooLarge | Codec_InvalidStructure | Codec_TooManyElements).
 */
import { ErrorCode, GatewayError } from "../../src/core/errors.js";

export interface Link {
  /** The URI reference between `<` and `>`. */
  readonly uri: string;
  /** Attributes: a value, or `true` for one without `=` (`;obs`). Quotes removed. */
  readonly attributes: Readonly<Record<string, string | true>>;
}

export const LINK_FORMAT_MAX_BYTES = 64 * 1024;
export const LINK_FORMAT_MAX_LINKS = 4096;

export function formatLinks(links: readonly Link[]): string {
  return links
    .map((l) => {
      const attrs = Object.entries(l.attributes).map(([k, v]) => {
        if (v === true) return `;${k}`;
        return /^[A-Za-z0-9.\-_:!#$%&'()*+[\]^`{|}~]+$/.test(v) && !/^".*"$/.test(v)
          ? `;${k}=${v}`
          : `;${k}="${v.replace(/["\\]/g, "\\$&")}"`;
      });
      return `<${l.uri}>${attrs.join("")}`;
    })
    .join(",");
}

/** Parses a link-format document. An empty document is no links. */
export function parseLinks(text: string): Link[] {
  if (text.length > LINK_FORMAT_MAX_BYTES) {
    throw new GatewayError(`link format of ${text.length} chars`, ErrorCode.Codec_TooLarge, {
      context: { limit: LINK_FORMAT_MAX_BYTES },
    });
  }
  const links: Link[] = [];
  let i = 0;
  const skipWs = (): void => {
    while (i < text.length && /\s/.test(text[i] ?? "")) i++;
  };
  skipWs();
  if (i === text.length) return links;
  for (;;) {
    skipWs();
    if (text[i] !== "<") throw bad(i, "a link starts with <");
    const close = text.indexOf(">", i + 1);
    if (close < 0) throw bad(i, "unterminated <");
    const uri = text.slice(i + 1, close);
    if (/[<\s]/.test(uri)) throw bad(i, "a URI reference holds < or white space");
    i = close + 1;
    const attributes: Record<string, string | true> = {};
    while (text[i] === ";") {
      i++;
      const m = /^[A-Za-z0-9!#$&+\-.^_`|~*]+/.exec(text.slice(i, i + 256));
      if (m === null) throw bad(i, "an attribute name is expected after ;");
      const name = m[0];
      i += name.length;
      if (text[i] === "=") {
        i++;
        if (text[i] === '"') {
          let v = "";
          i++;
          while (i < text.length && text[i] !== '"') {
            if (text[i] === "\\") i++;
            v += text[i] ?? "";
            i++;
          }
          if (text[i] !== '"') throw bad(i, "unterminated quoted value");
          i++;
          attributes[name] = v;
        } else {
          const start = i;
          while (i < text.length && !/[;,\s]/.test(text[i] ?? "")) i++;
          attributes[name] = text.slice(start, i);
        }
      } else {
        attributes[name] = true;
      }
    }
    links.push({ uri, attributes });
    if (links.length > LINK_FORMAT_MAX_LINKS) {
      throw new GatewayError(`more than ${LINK_FORMAT_MAX_LINKS} links`, ErrorCode.Codec_TooManyElements);
    }
    skipWs();
    if (i >= text.length) return links;
    if (text[i] !== ",") throw bad(i, "links are separated by ,");
    i++;
  }
}

/**
 * The LwM2M objects and instances of a registration payload: `</1/0>,</3/0>,</5>` ->
 * [[1, 0], [3, 0], [5]]. A root path (`</>;rt="oma.lwm2m"`, `</lwm2m>`) is skipped; links that are not
 * numeric paths are ignored (LwM2M 1.1 Core 6.2.1 allows alternate paths).
 */
export function registeredObjects(links: readonly Link[]): number[][] {
  const out: number[][] = [];
  for (const l of links) {
    const m = /^\/?(?:[A-Za-z][^/]*\/)?(\d+)(?:\/(\d+))?$/.exec(l.uri);
    if (m === null) continue;
    out.push(m[2] === undefined ? [Number(m[1])] : [Number(m[1]), Number(m[2])]);
  }
  return out;
}

function bad(offset: number, what: string): GatewayError {
  return new GatewayError(`link format at ${offset}: ${what}`, ErrorCode.Codec_InvalidStructure, {
    context: { offset },
  });
}
