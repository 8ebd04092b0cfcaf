/**
 * `dmgw demo`: the main job on an embedded default. Until the fan-out demo of issue #8 exists, it
 * shows the codec every later part stands on: it builds a real DM Package 1 (Alert 1201 and the
 * DevInfo Replace), encodes it as XML and as WBXML, decodes both back and checks they agree.
 */
import { AlertCode, decodeMessage, encodeMessage, type SyncMLMessage } from "../syncml/index.js";
import type { Output } from "./io.js";

export function runDemo(stdout: Output): boolean {
  const message = samplePackage1();
  const xml = encodeMessage(message, "xml", { xml: { indent: "  " } });
  const wbxml = encodeMessage(message, "wbxml");
  const fromXml = decodeMessage(xml).message;
  const fromWbxml = decodeMessage(wbxml).message;
  const agree =
    JSON.stringify(fromXml) === JSON.stringify(message) &&
    JSON.stringify(fromWbxml) === JSON.stringify(message);
  stdout.write("dmgw demo: a DM 1.2 Package 1 through the SyncML codec\n");
  stdout.write("(the fan-out demo with simulated devices arrives with the service, issue #8)\n\n");
  stdout.write(new TextDecoder().decode(xml) + "\n\n");
  stdout.write(`XML:   ${xml.length} bytes\nWBXML: ${wbxml.length} bytes  ${hexPreview(wbxml)}\n`);
  stdout.write(`decoded back from both encodings: ${agree ? "identical" : "DIFFERENT"}\n`);
  return agree;
}

function hexPreview(bytes: Uint8Array): string {
  const shown = Buffer.from(bytes.subarray(0, 24)).toString("hex").replace(/(..)/g, "$1 ").trim();
  return bytes.length > 24 ? `${shown} ...` : shown;
}

function samplePackage1(): SyncMLMessage {
  const devInfo: [string, string][] = [
    ["DevId", "IMEI:356938035643809"],
    ["Man", "dmgw"],
    ["Mod", "dmgw-sim"],
    ["DmV", "1.2"],
    ["Lang", "en-US"],
  ];
  return {
    version: "1.2",
    hdr: {
      verDTD: "1.2",
      verProto: "DM/1.2",
      sessionId: "1",
      msgId: "1",
      target: { locUri: "http://127.0.0.1:8080/dm" },
      source: { locUri: "IMEI:356938035643809" },
      meta: { maxMsgSize: "8192", maxObjSize: "1048576" },
    },
    body: {
      commands: [
        { kind: "Alert", cmdId: "1", data: String(AlertCode.ClientInitiatedMgmt), items: [] },
        {
          kind: "Replace",
          cmdId: "2",
          items: devInfo.map(([leaf, value]) => ({
            source: { locUri: `./DevInfo/${leaf}` },
            meta: { format: "chr" },
            data: { kind: "text" as const, text: value },
          })),
        },
      ],
      final: true,
    },
  };
}
