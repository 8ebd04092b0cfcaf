/**
 * The codec bench's two DM messages, written as compact XML text (no whitespace between elements,
 * as DM clients send it). Deterministic: every value is a function of its index, nothing random.
 * The nominal sizes (1 KB, 64 KB) are those of the XML; the WBXML is what our encoder makes of it.
 */
import { createHash } from "node:crypto";

const NS_METINF = ' xmlns="syncml:metinf"';
const SERVER = "https://dm.example.com/dm";
const DEVICE = "IMEI:490154203237518";

const leaf = (name: string, text: string): string => `<${name}>${text}</${name}>`;
const metinf = (name: string, text: string): string => `<${name}${NS_METINF}>${text}</${name}>`;
const md5b64 = (text: string): string => createHash("md5").update(text).digest("base64");

/**
 * DM Package 1 (client -> server, about 1 KB of XML): SyncHdr with MD5 credentials and
 * MaxMsgSize/MaxObjSize, Alert 1201 (client-initiated session), Replace of the ./DevInfo nodes, Final.
 */
export function package1Xml(): string {
  // The DM 1.2 MD5 digest: b64(md5(b64(md5("name:password")) + ":" + nonce)).
  const digest = md5b64(`${md5b64("dmclient:s3cret")}:nonce-0001`);
  const devInfo: readonly (readonly [string, string])[] = [
    ["DevId", DEVICE],
    ["Man", "Acme"],
    ["Mod", "GW-200"],
    ["DmV", "1.2"],
    ["Lang", "en-US"],
  ];
  const items = devInfo
    .map(
      ([node, value]) =>
        `<Item><Source>${leaf("LocURI", `./DevInfo/${node}`)}</Source><Meta>${metinf("Format", "chr")}</Meta>${leaf("Data", value)}</Item>`,
    )
    .join("");
  return (
    `<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2">` +
    `<SyncHdr>${leaf("VerDTD", "1.2")}${leaf("VerProto", "DM/1.2")}${leaf("SessionID", "1A2F")}${leaf("MsgID", "1")}` +
    `<Target>${leaf("LocURI", SERVER)}</Target><Source>${leaf("LocURI", DEVICE)}</Source>` +
    `<Cred><Meta>${metinf("Format", "b64")}${metinf("Type", "syncml:auth-md5")}</Meta>${leaf("Data", digest)}</Cred>` +
    `<Meta>${metinf("MaxMsgSize", "16384")}${metinf("MaxObjSize", "1048576")}</Meta></SyncHdr>` +
    `<SyncBody><Alert>${leaf("CmdID", "1")}${leaf("Data", "1201")}</Alert>` +
    `<Replace>${leaf("CmdID", "2")}${items}</Replace><Final/></SyncBody></SyncML>`
  );
}

/** Status commands for the server's Replace commands in the 64 KB Results package. */
export const RESULTS_STATUS_COUNT = 64;
/** Items in its Results (one per sensor). */
export const RESULTS_ITEM_COUNT = 288;

/**
 * A large DM response (client -> server, about 64 KB of XML): Status for SyncHdr, a Status for each
 * of the server's Replace commands and for its Get, and the Results of that Get: one Item per
 * `./Vendor/Sensors/<n>/Value` with Meta Format/Type and a reading as text.
 */
export function resultsXml(): string {
  const status = (cmdId: number, cmdRef: number, cmd: string, refs: string, data: string): string =>
    `<Status>${leaf("CmdID", String(cmdId))}${leaf("MsgRef", "1")}${leaf("CmdRef", String(cmdRef))}${leaf("Cmd", cmd)}${refs}${leaf("Data", data)}</Status>`;
  const parts: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2">`,
    `<SyncHdr>${leaf("VerDTD", "1.2")}${leaf("VerProto", "DM/1.2")}${leaf("SessionID", "1A2F")}${leaf("MsgID", "2")}`,
    `<Target>${leaf("LocURI", SERVER)}</Target><Source>${leaf("LocURI", DEVICE)}</Source></SyncHdr><SyncBody>`,
    status(1, 0, "SyncHdr", leaf("TargetRef", DEVICE) + leaf("SourceRef", SERVER), "200"),
  ];
  let cmdId = 2;
  for (let s = 1; s <= RESULTS_STATUS_COUNT; s++) {
    parts.push(status(cmdId++, s + 1, "Replace", leaf("TargetRef", `./Vendor/Sensors/${s}/Interval`), "200"));
  }
  const getRef = RESULTS_STATUS_COUNT + 2;
  parts.push(status(cmdId++, getRef, "Get", leaf("TargetRef", "./Vendor/Sensors?list=Value"), "200"));
  parts.push(
    `<Results>${leaf("CmdID", String(cmdId))}${leaf("MsgRef", "1")}${leaf("CmdRef", String(getRef))}`,
  );
  for (let n = 1; n <= RESULTS_ITEM_COUNT; n++) {
    parts.push(
      `<Item><Source>${leaf("LocURI", `./Vendor/Sensors/${n}/Value`)}</Source>` +
        `<Meta>${metinf("Format", "chr")}${metinf("Type", "text/plain")}</Meta>${leaf("Data", reading(n))}</Item>`,
    );
  }
  parts.push("</Results><Final/></SyncBody></SyncML>");
  return parts.join("");
}

/** A sensor reading such as `21.37`, spread deterministically over 10.00..49.99. */
function reading(n: number): string {
  return (10 + ((n * 7919) % 4000) / 100).toFixed(2);
}
