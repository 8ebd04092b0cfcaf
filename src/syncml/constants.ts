/**
 * SyncML DM protocol constants: namespaces, MIME types, status and alert codes.
 * Sources: OMA-TS-DM_RepPro-V1_2 (status codes section 10, alert codes section 8), OMNA WSP content
 * types; see protocol.md sections 3.4, 3.5 and 6.5.
 */

export const NS_SYNCML_12 = "SYNCML:SYNCML1.2";
export const NS_SYNCML_11 = "SYNCML:SYNCML1.1";
export const NS_METINF = "syncml:metinf";
export const NS_DMDDF_12 = "syncml:dmddf1.2";
export const NS_DEVINF = "syncml:devinf";

export const FPI_SYNCML_12 = "-//SYNCML//DTD SyncML 1.2//EN";
export const FPI_SYNCML_11 = "-//SYNCML//DTD SyncML 1.1//EN";

export const MIME_DM_XML = "application/vnd.syncml.dm+xml";
export const MIME_DM_WBXML = "application/vnd.syncml.dm+wbxml";
/** The DS-era type some older servers still send for DM (issue #4 accepts it). */
export const MIME_SYNCML_XML_LEGACY = "application/vnd.syncml+xml";
export const MIME_SYNCML_WBXML_LEGACY = "application/vnd.syncml+wbxml";
export const MIME_DM_NOTIFICATION = "application/vnd.syncml.notification";
export const MIME_TNDS_XML = "application/vnd.syncml.dmtnds+xml";
export const MIME_TNDS_WBXML = "application/vnd.syncml.dmtnds+wbxml";

/** DM status codes (RepPro 1.2 section 10; protocol.md 3.5). */
export const StatusCode = {
  InProgress: 101,
  Ok: 200,
  AcceptedForProcessing: 202,
  AuthenticationAccepted: 212,
  ChunkedItemAccepted: 213,
  OperationCancelled: 214,
  NotExecuted: 215,
  AtomicRollbackOk: 216,
  NotModified: 304,
  BadRequest: 400,
  InvalidCredentials: 401,
  Forbidden: 403,
  NotFound: 404,
  CommandNotAllowed: 405,
  OptionalFeatureNotSupported: 406,
  MissingCredentials: 407,
  RequestTimeout: 408,
  IncompleteCommand: 412,
  RequestEntityTooLarge: 413,
  UriTooLong: 414,
  UnsupportedMediaType: 415,
  RequestedRangeNotSatisfiable: 416,
  RetryLater: 417,
  AlreadyExists: 418,
  DeviceFull: 420,
  SizeMismatch: 424,
  PermissionDenied: 425,
  CommandFailed: 500,
  CommandNotImplemented: 501,
  BadGateway: 502,
  ServiceUnavailable: 503,
  GatewayTimeout: 504,
  DtdVersionNotSupported: 505,
  ProcessingError: 506,
  AtomicFailed: 507,
  DataStoreFailure: 510,
  ServerFailure: 511,
  ProtocolVersionNotSupported: 513,
  OperationCancelledByGateway: 514,
  AtomicRollbackFailed: 516,
  AtomicResponseTooLarge: 517,
} as const;
export type StatusCode = (typeof StatusCode)[keyof typeof StatusCode];

/** DM alert codes (RepPro 1.2 section 8; protocol.md 3.4). */
export const AlertCode = {
  Display: 1100,
  ConfirmOrReject: 1101,
  TextInput: 1102,
  SingleChoice: 1103,
  MultipleChoice: 1104,
  ServerInitiatedMgmt: 1200,
  ClientInitiatedMgmt: 1201,
  NextMessage: 1222,
  SessionAbort: 1223,
  ClientEvent: 1224,
  NoEndOfData: 1225,
  GenericAlert: 1226,
} as const;
export type AlertCode = (typeof AlertCode)[keyof typeof AlertCode];
