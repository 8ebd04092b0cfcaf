/** The SyncML DM codec: model, constants, and XML/WBXML encode and decode. */
export * from "./model.js";
export * from "./constants.js";
export * from "./codec.js";
export * from "./fragment.js";
export { DEFAULT_LIMITS, type DecodeLimits, type Element, type Node } from "./element.js";
export { decodeXmlElement, repairBareAmpersands } from "./xml-decode.js";
export { encodeXmlElement, type XmlEncodeOptions } from "./xml-encode.js";
export { decodeWbxmlDocument, type WbxmlDocument } from "./wbxml-decode.js";
export { encodeWbxmlDocument } from "./wbxml-encode.js";
export { messageFromElement } from "./message-from-element.js";
export { messageToElement } from "./message-to-element.js";
export {
  SYNCML_11,
  SYNCML_12,
  DEVINF_11,
  DEVINF_12,
  DMDDF_12,
  type WbxmlLanguage,
} from "./wbxml-languages.js";
