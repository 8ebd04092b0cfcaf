/**
 * WBXML code page tables for SyncML 1.1 / 1.2, DevInf 1.1 / 1.2 and the OMA DM DDF 1.2 (TNDS) vocabulary.
 *
 * The token numbers come from the OMA/SyncML WBXML code page tables as implemented by libwbxml 0.11.8
 * (src/wbxml_tables.c and wbxml_tables.h), and every SyncML 1.2, MetInf 1.2, DevInf 1.2 and DM DDF 1.2 tag
 * was checked by encoding it with that version's xml2wbxml. Pure data: no code lives here.
 *
 * Notes on libwbxml's choices that these tables follow:
 * - libwbxml's SyncML 1.2 language has only code pages 0 (SyncML) and 1 (MetInf). DM DDF is a language of
 *   its own whose tags sit on code page 2; an inline MgmtTree is not encoded on page 2 of the SyncML
 *   document but as a separate WBXML document inside OPAQUE data.
 * - Token 0x30 of the SyncML page is reserved and has no tag name.
 * - SourceParent (0x39) is in the SyncML 1.1 table too, as a libwbxml extension (Nokia devices send it).
 * - DevInf 1.2 has no tag at 0x2F; DevInf 1.1 names 0x1C "Size" where 1.2 names it "MaxSize".
 * - DM DDF has no WBXML public id: documents carry the FPI as a literal in the string table.
 */

/** One WBXML code page: the XML namespace it maps to and its tag tokens (0x05..0x3F). */
export interface CodePage {
  readonly page: number;
  readonly namespace: string;
  readonly tags: Readonly<Record<string, number>>;
}

/** A WBXML language: the numeric public id (undefined when none is registered), FPI, root and pages. */
export interface WbxmlLanguage {
  readonly name: string;
  readonly publicId: number | undefined;
  readonly fpi: string;
  readonly rootElement: string;
  readonly pages: readonly CodePage[];
}

/** SyncML 1.2 code page 0 (namespace SYNCML:SYNCML1.2). */
export const SYNCML12_PAGE0: CodePage = {
  page: 0,
  namespace: "SYNCML:SYNCML1.2",
  tags: {
    Add: 0x05,
    Alert: 0x06,
    Archive: 0x07,
    Atomic: 0x08,
    Chal: 0x09,
    Cmd: 0x0a,
    CmdID: 0x0b,
    CmdRef: 0x0c,
    Copy: 0x0d,
    Cred: 0x0e,
    Data: 0x0f,
    Delete: 0x10,
    Exec: 0x11,
    Final: 0x12,
    Get: 0x13,
    Item: 0x14,
    Lang: 0x15,
    LocName: 0x16,
    LocURI: 0x17,
    Map: 0x18,
    MapItem: 0x19,
    Meta: 0x1a,
    MsgID: 0x1b,
    MsgRef: 0x1c,
    NoResp: 0x1d,
    NoResults: 0x1e,
    Put: 0x1f,
    Replace: 0x20,
    RespURI: 0x21,
    Results: 0x22,
    Search: 0x23,
    Sequence: 0x24,
    SessionID: 0x25,
    SftDel: 0x26,
    Source: 0x27,
    SourceRef: 0x28,
    Status: 0x29,
    Sync: 0x2a,
    SyncBody: 0x2b,
    SyncHdr: 0x2c,
    SyncML: 0x2d,
    Target: 0x2e,
    TargetRef: 0x2f,
    // 0x30 is reserved.
    VerDTD: 0x31,
    VerProto: 0x32,
    NumberOfChanges: 0x33,
    MoreData: 0x34,
    Field: 0x35,
    Filter: 0x36,
    Record: 0x37,
    FilterType: 0x38,
    SourceParent: 0x39,
    TargetParent: 0x3a,
    Move: 0x3b,
    Correlator: 0x3c,
  },
};

/** MetInf 1.2 as code page 1 of a SyncML 1.2 document (namespace syncml:metinf). */
export const METINF12_PAGE1: CodePage = {
  page: 1,
  namespace: "syncml:metinf",
  tags: {
    Anchor: 0x05,
    EMI: 0x06,
    Format: 0x07,
    FreeID: 0x08,
    FreeMem: 0x09,
    Last: 0x0a,
    Mark: 0x0b,
    MaxMsgSize: 0x0c,
    Mem: 0x0d,
    MetInf: 0x0e,
    Next: 0x0f,
    NextNonce: 0x10,
    SharedMem: 0x11,
    Size: 0x12,
    Type: 0x13,
    Version: 0x14,
    MaxObjSize: 0x15,
    FieldLevel: 0x16,
  },
};

/** SyncML 1.1 code page 0 (namespace SYNCML:SYNCML1.1). */
export const SYNCML11_PAGE0: CodePage = {
  page: 0,
  namespace: "SYNCML:SYNCML1.1",
  tags: {
    Add: 0x05,
    Alert: 0x06,
    Archive: 0x07,
    Atomic: 0x08,
    Chal: 0x09,
    Cmd: 0x0a,
    CmdID: 0x0b,
    CmdRef: 0x0c,
    Copy: 0x0d,
    Cred: 0x0e,
    Data: 0x0f,
    Delete: 0x10,
    Exec: 0x11,
    Final: 0x12,
    Get: 0x13,
    Item: 0x14,
    Lang: 0x15,
    LocName: 0x16,
    LocURI: 0x17,
    Map: 0x18,
    MapItem: 0x19,
    Meta: 0x1a,
    MsgID: 0x1b,
    MsgRef: 0x1c,
    NoResp: 0x1d,
    NoResults: 0x1e,
    Put: 0x1f,
    Replace: 0x20,
    RespURI: 0x21,
    Results: 0x22,
    Search: 0x23,
    Sequence: 0x24,
    SessionID: 0x25,
    SftDel: 0x26,
    Source: 0x27,
    SourceRef: 0x28,
    Status: 0x29,
    Sync: 0x2a,
    SyncBody: 0x2b,
    SyncHdr: 0x2c,
    SyncML: 0x2d,
    Target: 0x2e,
    TargetRef: 0x2f,
    // 0x30 is reserved.
    VerDTD: 0x31,
    VerProto: 0x32,
    NumberOfChanges: 0x33,
    MoreData: 0x34,
    // libwbxml extension: officially SyncML 1.2 only.
    SourceParent: 0x39,
  },
};

/** MetInf 1.1 as code page 1 of a SyncML 1.1 document (namespace syncml:metinf). */
export const METINF11_PAGE1: CodePage = {
  page: 1,
  namespace: "syncml:metinf",
  tags: {
    Anchor: 0x05,
    EMI: 0x06,
    Format: 0x07,
    FreeID: 0x08,
    FreeMem: 0x09,
    Last: 0x0a,
    Mark: 0x0b,
    MaxMsgSize: 0x0c,
    Mem: 0x0d,
    MetInf: 0x0e,
    Next: 0x0f,
    NextNonce: 0x10,
    SharedMem: 0x11,
    Size: 0x12,
    Type: 0x13,
    Version: 0x14,
    MaxObjSize: 0x15,
  },
};

/** DevInf 1.2 code page 0 (namespace syncml:devinf). */
export const DEVINF12_PAGE0: CodePage = {
  page: 0,
  namespace: "syncml:devinf",
  tags: {
    CTCap: 0x05,
    CTType: 0x06,
    DataStore: 0x07,
    DataType: 0x08,
    DevID: 0x09,
    DevInf: 0x0a,
    DevTyp: 0x0b,
    DisplayName: 0x0c,
    DSMem: 0x0d,
    Ext: 0x0e,
    FwV: 0x0f,
    HwV: 0x10,
    Man: 0x11,
    MaxGUIDSize: 0x12,
    MaxID: 0x13,
    MaxMem: 0x14,
    Mod: 0x15,
    OEM: 0x16,
    ParamName: 0x17,
    PropName: 0x18,
    Rx: 0x19,
    "Rx-Pref": 0x1a,
    SharedMem: 0x1b,
    MaxSize: 0x1c,
    SourceRef: 0x1d,
    SwV: 0x1e,
    SyncCap: 0x1f,
    SyncType: 0x20,
    Tx: 0x21,
    "Tx-Pref": 0x22,
    ValEnum: 0x23,
    VerCT: 0x24,
    VerDTD: 0x25,
    XNam: 0x26,
    XVal: 0x27,
    UTC: 0x28,
    SupportNumberOfChanges: 0x29,
    SupportLargeObjs: 0x2a,
    Property: 0x2b,
    PropParam: 0x2c,
    MaxOccur: 0x2d,
    NoTruncate: 0x2e,
    // No tag at 0x2f.
    "Filter-Rx": 0x30,
    FilterCap: 0x31,
    FilterKeyword: 0x32,
    FieldLevel: 0x33,
    SupportHierarchicalSync: 0x34,
  },
};

/** DevInf 1.1 code page 0 (namespace syncml:devinf). */
export const DEVINF11_PAGE0: CodePage = {
  page: 0,
  namespace: "syncml:devinf",
  tags: {
    CTCap: 0x05,
    CTType: 0x06,
    DataStore: 0x07,
    DataType: 0x08,
    DevID: 0x09,
    DevInf: 0x0a,
    DevTyp: 0x0b,
    DisplayName: 0x0c,
    DSMem: 0x0d,
    Ext: 0x0e,
    FwV: 0x0f,
    HwV: 0x10,
    Man: 0x11,
    MaxGUIDSize: 0x12,
    MaxID: 0x13,
    MaxMem: 0x14,
    Mod: 0x15,
    OEM: 0x16,
    ParamName: 0x17,
    PropName: 0x18,
    Rx: 0x19,
    "Rx-Pref": 0x1a,
    SharedMem: 0x1b,
    Size: 0x1c,
    SourceRef: 0x1d,
    SwV: 0x1e,
    SyncCap: 0x1f,
    SyncType: 0x20,
    Tx: 0x21,
    "Tx-Pref": 0x22,
    ValEnum: 0x23,
    VerCT: 0x24,
    VerDTD: 0x25,
    XNam: 0x26,
    XVal: 0x27,
    UTC: 0x28,
    SupportNumberOfChanges: 0x29,
    SupportLargeObjs: 0x2a,
  },
};

/** DM DDF 1.2 (TNDS) tags; libwbxml places them on code page 2 (namespace syncml:dmddf1.2). */
export const DMDDF12_PAGE2: CodePage = {
  page: 2,
  namespace: "syncml:dmddf1.2",
  tags: {
    AccessType: 0x05,
    ACL: 0x06,
    Add: 0x07,
    b64: 0x08,
    bin: 0x09,
    bool: 0x0a,
    chr: 0x0b,
    CaseSense: 0x0c,
    CIS: 0x0d,
    Copy: 0x0e,
    CS: 0x0f,
    date: 0x10,
    DDFName: 0x11,
    DefaultValue: 0x12,
    Delete: 0x13,
    Description: 0x14,
    DFFormat: 0x15,
    DFProperties: 0x16,
    DFTitle: 0x17,
    DFType: 0x18,
    Dynamic: 0x19,
    Exec: 0x1a,
    float: 0x1b,
    Format: 0x1c,
    Get: 0x1d,
    int: 0x1e,
    Man: 0x1f,
    MgmtTree: 0x20,
    MIME: 0x21,
    Mod: 0x22,
    Name: 0x23,
    Node: 0x24,
    node: 0x25,
    NodeName: 0x26,
    null: 0x27,
    Occurrence: 0x28,
    One: 0x29,
    OneOrMore: 0x2a,
    OneOrN: 0x2b,
    Path: 0x2c,
    Permanent: 0x2d,
    Replace: 0x2e,
    RTProperties: 0x2f,
    Scope: 0x30,
    Size: 0x31,
    time: 0x32,
    Title: 0x33,
    TStamp: 0x34,
    Type: 0x35,
    Value: 0x36,
    VerDTD: 0x37,
    VerNo: 0x38,
    xml: 0x39,
    ZeroOrMore: 0x3a,
    ZeroOrN: 0x3b,
    ZeroOrOne: 0x3c,
  },
};

/** SyncML 1.2 (OMA DM 1.2 messages): pages 0 SyncML and 1 MetInf. */
export const SYNCML12: WbxmlLanguage = {
  name: "SyncML 1.2",
  publicId: 0x1201,
  fpi: "-//SYNCML//DTD SyncML 1.2//EN",
  rootElement: "SyncML",
  pages: [SYNCML12_PAGE0, METINF12_PAGE1],
};

/** SyncML 1.1 (OMA DM 1.1.2 messages): pages 0 SyncML and 1 MetInf. */
export const SYNCML11: WbxmlLanguage = {
  name: "SyncML 1.1",
  publicId: 0x0fd3,
  fpi: "-//SYNCML//DTD SyncML 1.1//EN",
  rootElement: "SyncML",
  pages: [SYNCML11_PAGE0, METINF11_PAGE1],
};

/** DevInf 1.2, a document of its own (in SyncML it travels as OPAQUE data). */
export const DEVINF12: WbxmlLanguage = {
  name: "DevInf 1.2",
  publicId: 0x1203,
  fpi: "-//SYNCML//DTD DevInf 1.2//EN",
  rootElement: "DevInf",
  pages: [DEVINF12_PAGE0],
};

/** DevInf 1.1, a document of its own. */
export const DEVINF11: WbxmlLanguage = {
  name: "DevInf 1.1",
  publicId: 0x0fd4,
  fpi: "-//SYNCML//DTD DevInf 1.1//EN",
  rootElement: "DevInf",
  pages: [DEVINF11_PAGE0],
};

/** DM DDF 1.2 / TNDS: no registered public id, so the FPI goes in the string table; tags on page 2. */
export const DMDDF12: WbxmlLanguage = {
  name: "DM DDF 1.2",
  publicId: undefined,
  fpi: "-//OMA//DTD-DM-DDF 1.2//EN",
  rootElement: "MgmtTree",
  pages: [DMDDF12_PAGE2],
};
