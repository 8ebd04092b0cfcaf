/**
 * Property tests of the SyncML DM codec: for any valid message (test/helpers/arbitraries.ts),
 * encoding then decoding is the identity, in XML and in WBXML, and re-encoding decoded bytes gives
 * the same bytes.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeMessage,
  encodeMessage,
  messageToElement,
  type SyncMLMessage,
} from "../../src/syncml/index.js";
import { syncMLMessage, xmlSpelling } from "../helpers/arbitraries.js";

const RUNS = 300;

/** fast-check's own report is the assertion message: the shrunk counterexample and the seed. */
function check<T>(arb: fc.Arbitrary<T>, predicate: (value: T) => void, numRuns = RUNS): void {
  fc.assert(fc.property(arb, predicate), { numRuns });
}

function roundTrip(message: SyncMLMessage, encoding: "xml" | "wbxml"): SyncMLMessage {
  const decoded = decodeMessage(encodeMessage(message, encoding), { encoding });
  assert.equal(decoded.encoding, encoding);
  return decoded.message;
}

describe("SyncML codec round trips (property)", () => {
  it("model -> XML -> model is the identity", () => {
    check(syncMLMessage({ target: "xml" }), (message) => {
      assert.deepStrictEqual(roundTrip(message, "xml"), message);
    });
  });

  it("every XML spelling of a message (namespaces, prefixes, CDATA, references, comments) decodes to it", () => {
    check(
      fc.tuple(syncMLMessage({ target: "xml" }), fc.nat()),
      ([message, seed]) => {
        const bytes = xmlSpelling(messageToElement(message, "xml"), seed);
        let decoded: SyncMLMessage;
        try {
          decoded = decodeMessage(bytes).message;
        } catch (e) {
          throw new Error(`${String(e)}\n${new TextDecoder().decode(bytes)}`, { cause: e });
        }
        assert.deepStrictEqual(decoded, message);
      },
      200,
    );
  });

  it("model -> WBXML -> model is the identity (opaque Data and TNDS included)", () => {
    check(syncMLMessage({ target: "wbxml" }), (message) => {
      assert.deepStrictEqual(roundTrip(message, "wbxml"), message);
    });
  });

  it("a message for both formats decodes to the same model from XML and from WBXML", () => {
    check(
      syncMLMessage({ target: "both" }),
      (message) => {
        assert.deepStrictEqual(roundTrip(message, "wbxml"), roundTrip(message, "xml"));
      },
      150,
    );
  });

  it("WBXML -> decode -> encode gives the same bytes", () => {
    check(syncMLMessage({ target: "wbxml" }), (message) => {
      const bytes = encodeMessage(message, "wbxml");
      const again = encodeMessage(decodeMessage(bytes, { encoding: "wbxml" }).message, "wbxml");
      assert.deepStrictEqual(Buffer.from(again).toString("hex"), Buffer.from(bytes).toString("hex"));
    });
  });

  it("XML -> decode -> encode gives the same bytes", () => {
    check(
      syncMLMessage({ target: "xml" }),
      (message) => {
        const bytes = encodeMessage(message, "xml");
        const again = encodeMessage(decodeMessage(bytes, { encoding: "xml" }).message, "xml");
        assert.equal(Buffer.from(again).toString("utf8"), Buffer.from(bytes).toString("utf8"));
      },
      150,
    );
  });

  it("decoding does not modify its input", () => {
    check(
      syncMLMessage({ target: "wbxml" }),
      (message) => {
        for (const encoding of ["wbxml", "xml"] as const) {
          if (encoding === "xml" && hasOpaque(message)) continue;
          const bytes = encodeMessage(message, encoding);
          const copy = bytes.slice();
          decodeMessage(bytes);
          assert.deepStrictEqual(bytes, copy);
        }
      },
      100,
    );
  });

  // Regression: the WBXML decoder once read strings with a TextDecoder, which strips a leading U+FEFF.
  it("keeps a leading U+FEFF of text in both formats", () => {
    const message: SyncMLMessage = {
      version: "1.2",
      hdr: {
        verDTD: "1.2",
        verProto: "DM/1.2",
        sessionId: "\ufeff1",
        msgId: "1",
        target: { locUri: "a" },
        source: { locUri: "b" },
      },
      body: { commands: [], final: true },
    };
    assert.equal(roundTrip(message, "xml").hdr.sessionId, "\ufeff1");
    assert.equal(roundTrip(message, "wbxml").hdr.sessionId, "\ufeff1");
  });

  // Non-identities found with these properties, reported; the arbitraries avoid them (see
  // isOtherSpellingOfEmbeddedType in test/helpers/arbitraries.ts). Un-skip once src/syncml decides.
  describe("normalisations and former non-identities", () => {
    const withTndsType = (type: string): SyncMLMessage => ({
      version: "1.2",
      hdr: {
        verDTD: "1.2",
        verProto: "DM/1.2",
        sessionId: "1",
        msgId: "1",
        target: { locUri: "a" },
        source: { locUri: "b" },
      },
      body: {
        commands: [
          {
            kind: "Replace",
            cmdId: "1",
            items: [
              {
                meta: { type },
                data: {
                  kind: "element",
                  element: {
                    name: "MgmtTree",
                    namespace: "syncml:dmddf1.2",
                    children: [{ name: "VerDTD", namespace: "syncml:dmddf1.2", children: ["1.2"] }],
                  },
                },
              },
            ],
          },
        ],
        final: true,
      },
    });

    it("NON-IDENTITY: WBXML trims the Meta Type of embedded Data (XML keeps it exactly)", () => {
      const message = withTndsType(" application/vnd.syncml.dmtnds+xml ");
      assert.deepStrictEqual(roundTrip(message, "xml"), message);
      assert.deepStrictEqual(roundTrip(message, "wbxml"), message); // today: type loses its spaces
    });

    it("normalises element Data typed ...dmtnds+wbxml to ...dmtnds+xml in both formats", () => {
      // Element Data is an XML document whichever format carries it, so the model names its +xml
      // form: both encodings decode to the same model (the +wbxml form only travels on the wire).
      const message = withTndsType("application/vnd.syncml.dmtnds+wbxml");
      const normalised = withTndsType("application/vnd.syncml.dmtnds+xml");
      assert.deepStrictEqual(roundTrip(message, "xml"), normalised);
      assert.deepStrictEqual(roundTrip(message, "wbxml"), normalised);
    });
  });
});

function hasOpaque(message: SyncMLMessage): boolean {
  return /"kind":"opaque"/.test(JSON.stringify(message));
}
