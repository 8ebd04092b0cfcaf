/**
 * The typed message model of SyncML DM 1.2 (and DM 1.1.2, `SYNCML:SYNCML1.1`), shared by the XML and
 * WBXML codecs (style.md 2.3). Every leaf value is kept as the exact string that travelled: numbers
 * such as MsgID or MaxMsgSize are strings here, converted by the DM layer, so that a message decodes
 * and re-encodes without loss. Element order follows the SyncML RepPro 1.2 DTD.
 *
 * Elements of SyncML that DM does not use (Sync, Map, Put, Search, Archive, SftDel, ...; DM RepPro
 * 1.2 section 6) have no place in this model: the decoders refuse them with Codec_UnknownElement.
 */

/** The SyncML representation version of a message: DM 1.2 or DM 1.1.2. */
export type SyncMLVersion = "1.2" | "1.1";

/** An element in a foreign XML vocabulary carried inside `<Data>` (TNDS `MgmtTree`, `DevInf`). */
export interface XmlElement {
  readonly name: string;
  /** The namespace URI in force for the element (for example `syncml:dmddf1.2`). */
  readonly namespace: string;
  readonly children: readonly XmlNode[];
}
export type XmlNode = XmlElement | string;

/**
 * The content of a `<Data>` element.
 * - `text`: character data, exactly as received (entities resolved, CDATA unwrapped, no trimming).
 * - `opaque`: WBXML OPAQUE bytes (binary values, Format `bin`); never produced by the XML decoder.
 * - `element`: an embedded structured document (TNDS, DevInf): inline elements in XML, an OPAQUE
 *   nested WBXML document in WBXML.
 */
export type Data =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "opaque"; readonly bytes: Uint8Array }
  | { readonly kind: "element"; readonly element: XmlElement };

/** MetInf (OMA SyncML MetaInfo 1.2). All values are the exact strings that travelled. */
export interface Meta {
  readonly format?: string;
  readonly type?: string;
  readonly mark?: string;
  readonly size?: string;
  readonly anchor?: { readonly last?: string; readonly next?: string };
  readonly version?: string;
  readonly nextNonce?: string;
  readonly maxMsgSize?: string;
  readonly maxObjSize?: string;
  readonly emi?: readonly string[];
  readonly mem?: { readonly sharedMem?: boolean; readonly freeMem?: string; readonly freeId?: string };
  readonly fieldLevel?: boolean;
}

/** A Target or Source: LocURI and the optional LocName (the user id for MD5/HMAC in SyncHdr). */
export interface Location {
  readonly locUri: string;
  readonly locName?: string;
}

/** Credentials (SyncHdr only in DM): Meta Type/Format say which scheme, Data holds the value. */
export interface Cred {
  readonly meta?: Meta;
  readonly data: string;
}

/** A challenge in a Status: Meta with Type, Format and NextNonce. */
export interface Chal {
  readonly meta: Meta;
}

export interface SyncHdr {
  readonly verDTD: string;
  readonly verProto: string;
  readonly sessionId: string;
  readonly msgId: string;
  readonly target: Location;
  readonly source: Location;
  readonly respUri?: string;
  readonly noResp?: boolean;
  readonly cred?: Cred;
  readonly meta?: Meta;
}

export interface Item {
  readonly target?: Location;
  readonly source?: Location;
  readonly meta?: Meta;
  readonly data?: Data;
  readonly moreData?: boolean;
}

interface CommandBase {
  readonly cmdId: string;
  readonly noResp?: boolean;
}

/** Add, Copy, Delete, Get and Replace share one shape (RepPro 1.2 DTD). */
export interface ItemCommand extends CommandBase {
  readonly kind: "Add" | "Copy" | "Delete" | "Get" | "Replace";
  readonly cred?: Cred;
  readonly meta?: Meta;
  readonly items: readonly Item[];
}

export interface AlertCommand extends CommandBase {
  readonly kind: "Alert";
  readonly cred?: Cred;
  /** The alert code (1200, 1226, ...), as text. */
  readonly data?: string;
  readonly correlator?: string;
  readonly items: readonly Item[];
}

export interface ExecCommand extends CommandBase {
  readonly kind: "Exec";
  readonly cred?: Cred;
  readonly meta?: Meta;
  readonly correlator?: string;
  /** RepPro requires exactly one Item; the decoder keeps what came and the DM layer judges. */
  readonly items: readonly Item[];
}

export interface ContainerCommand extends CommandBase {
  readonly kind: "Atomic" | "Sequence";
  readonly meta?: Meta;
  readonly commands: readonly Command[];
}

export interface StatusCommand {
  readonly kind: "Status";
  readonly cmdId: string;
  readonly msgRef: string;
  readonly cmdRef: string;
  readonly cmd: string;
  readonly targetRefs: readonly string[];
  readonly sourceRefs: readonly string[];
  readonly cred?: Cred;
  readonly chal?: Chal;
  /** The status code, as text (`200`, `401`, ...). */
  readonly data: string;
  readonly items: readonly Item[];
}

export interface ResultsCommand {
  readonly kind: "Results";
  readonly cmdId: string;
  readonly msgRef?: string;
  readonly cmdRef: string;
  readonly meta?: Meta;
  readonly targetRefs: readonly string[];
  readonly sourceRefs: readonly string[];
  readonly items: readonly Item[];
}

export type Command =
  ItemCommand | AlertCommand | ExecCommand | ContainerCommand | StatusCommand | ResultsCommand;

export type CommandKind = Command["kind"];

export interface SyncBody {
  readonly commands: readonly Command[];
  readonly final: boolean;
}

export interface SyncMLMessage {
  readonly version: SyncMLVersion;
  readonly hdr: SyncHdr;
  readonly body: SyncBody;
}

/** The wire encodings of a DM message. */
export type Encoding = "xml" | "wbxml";
