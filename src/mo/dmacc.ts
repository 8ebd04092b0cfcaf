/**
 * `./DMAcc/<x>` (OMA DM 1.2 StdObj, the DM 1.2 DMAcc layout; protocol.md 4.3): one account per
 * northbound DM server, seeded from the configuration on first start and owned by its server after
 * that (a later start never overwrites what the server changed).
 *
 *   ./DMAcc                                   Get-only, ACL Get=*, MOID urn:oma:mo:oma-dm-dmacc:1.0
 *     <x>                                     ACL Add=<id>&Delete=<id>&Get=<id>&Replace=<id>
 *       AppID        w7                       Get-only
 *       ServerID     <id>                     Get-only (the ACLs name it)
 *       Name
 *       AppAddr/1/Addr, AddrType, Port/1/PortNbr
 *       AAuthPref
 *       AppAuth/ClientSide/ AAuthLevel CLCRED,  AAuthType, AAuthName, AAuthSecret*, AAuthData*
 *       AppAuth/ServerSide/ AAuthLevel SRVCRED, AAuthType, AAuthName, AAuthSecret*, AAuthData*
 *   (* secret: no Get, left out of every `?list=` and TNDS; the gateway reads them with `tree.read`)
 *
 * The account's ACL adds Add to the Get, Replace and Delete that protocol.md 4.3 grants: the DDF lets
 * the server add the optional nodes (Name, PrefConRef, ToConRef, more AppAddr/AppAuth entries, Ext),
 * and Add gives it nothing it could not take anyway, since Replace on an interior node is the right to
 * rewrite that node's ACL (TND 7.7.1.3).
 */
import { ErrorCode, GatewayError } from "../core/errors.js";
import { formatAcl, aclFrom, isServerId } from "../tree/acl.js";
import { Access, type MoPlugin, type NodePolicy, type NodeSpec } from "../tree/plugin.js";
import { childPath, parseUri } from "../tree/uri.js";

export const DMACC_ROOT = "./DMAcc";
export const DMACC_MOID = "urn:oma:mo:oma-dm-dmacc:1.0";
/** AppID of a DM account (the w7 APPLICATION characteristic). */
export const DMACC_APP_ID = "w7";

/** The `<x>` names the gateway gives the nodes under an account it seeds. */
export const APP_ADDR_NAME = "1";
export const PORT_NAME = "1";
export const CLIENT_AUTH_NAME = "ClientSide";
export const SERVER_AUTH_NAME = "ServerSide";

/** AAuthType values of DM-level credentials (protocol.md 4.3: syncml:auth-basic, -md5, -MAC). */
export type DmAuthType = "BASIC" | "DIGEST" | "HMAC";
export const DM_AUTH_TYPES: readonly DmAuthType[] = ["BASIC", "DIGEST", "HMAC"];

/** One side's DM credentials. */
export interface DmCredential {
  readonly type: DmAuthType;
  readonly name: string;
  /** The password or shared secret; stored in a secret node, never logged. */
  readonly secret: string;
  /** The current nonce, Base64 (standard alphabet, padded); stored as bytes (AAuthData, `bin`). */
  readonly nonce?: string;
}

export type AddrType = "URI" | "IPv4" | "IPv6";

/** One northbound DM server's account. */
export interface DmAccountConfig {
  /** The `<x>` node name (`dmserver`): one URI segment. */
  readonly name: string;
  /** The server's identifier: used in ACLs and in the Package #0 server identifier. */
  readonly serverId: string;
  /** Display name (the Name leaf); the ServerID when absent. */
  readonly serverName?: string;
  /** The server address (AppAddr/<x>/Addr), a URI when addrType is `URI`. */
  readonly addr: string;
  /** `URI` when absent. */
  readonly addrType?: AddrType;
  /** 1..65535; when absent, the port of `addr` when it is a URL (explicit, or 80/443 by scheme). */
  readonly portNbr?: number;
  /** Preferred AAuthType; the client credential's type when absent. */
  readonly authPref?: DmAuthType;
  /** Client -> server credentials (AAuthLevel CLCRED). */
  readonly clientCred: DmCredential;
  /** Server -> client credentials, also the Package #0 digest (AAuthLevel SRVCRED). */
  readonly serverCred: DmCredential;
}

/** Access of the account's nodes a server may manage (the ACL decides who). */
const ACCESS_MANAGED = Access.Add | Access.Delete | Access.Get | Access.Replace;
/** AAuthSecret and AAuthData: no Get (protocol.md 4.3). */
const ACCESS_SECRET = Access.Add | Access.Delete | Access.Replace;
const SECRET_LEAVES: ReadonlySet<string> = new Set(["AAuthSecret", "AAuthData"]);
const READ_ONLY_LEAVES: ReadonlySet<string> = new Set(["AppID", "ServerID"]);
const NO_LIMITS = { maxDepth: 0, maxTotLen: 0, maxSegLen: 0 } as const;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The canonical path of an account (`./DMAcc/<name>`). */
export function dmAccountPath(name: string): string {
  return childPath(DMACC_ROOT, name);
}

/** The ACL of an account node: its ServerID may Add, Delete, Get and Replace (see the file comment). */
export function dmAccountAcl(serverId: string): string {
  return formatAcl(
    aclFrom([
      ["Add", [serverId]],
      ["Delete", [serverId]],
      ["Get", [serverId]],
      ["Replace", [serverId]],
    ]),
  );
}

/**
 * What a node added below `./DMAcc` gets: `./DMAcc/<x>/AppAuth/<x>/AAuthSecret|AAuthData` are secret
 * and not Get-able, `./DMAcc/<x>/AppID|ServerID` Get-only; anything else is left to the ACL.
 *
 * @param segments the node's decoded names from the root (`["DMAcc", "srv", "AppAuth", ...]`).
 */
export function dmAccPolicy(segments: readonly string[]): NodePolicy | undefined {
  if (segments[0] !== "DMAcc") return undefined;
  const last = segments[segments.length - 1] ?? "";
  if (segments.length === 5 && segments[2] === "AppAuth" && SECRET_LEAVES.has(last)) {
    return { access: ACCESS_SECRET, secret: true };
  }
  if (segments.length === 3 && READ_ONLY_LEAVES.has(last)) return { access: Access.Get };
  return undefined;
}

/**
 * The DMAcc MO holding `accounts`.
 *
 * @throws GatewayError(Tree_InvalidPlugin) for an account that cannot be stored: a name that is not
 *   one URI segment, a ServerID that cannot appear in an ACL, a repeated name or ServerID, a port out
 *   of 1..65535, a nonce that is not Base64, an unknown AAuthType. The message never holds a secret.
 */
export function dmAccPlugin(accounts: readonly DmAccountConfig[]): MoPlugin {
  checkAccounts(accounts);
  return {
    id: "dmacc",
    root: DMACC_ROOT,
    moid: DMACC_MOID,
    seed: () => [
      { path: DMACC_ROOT, format: "node", access: Access.Get, acl: "Get=*", permanent: true },
      ...accounts.flatMap(accountNodes),
    ],
    policyFor: dmAccPolicy,
  };
}

function accountNodes(account: DmAccountConfig): NodeSpec[] {
  const x = dmAccountPath(account.name);
  const node = (path: string, extra: Partial<NodeSpec> = {}): NodeSpec => ({
    path,
    format: "node",
    access: ACCESS_MANAGED,
    permanent: false,
    ...extra,
  });
  const leaf = (path: string, value: string, access = ACCESS_MANAGED): NodeSpec => ({
    path,
    format: "chr",
    value,
    access,
    permanent: false,
  });
  const addr = `${x}/AppAddr/${APP_ADDR_NAME}`;
  const port = account.portNbr ?? defaultPort(account.addr);
  const out: NodeSpec[] = [
    node(x, { acl: dmAccountAcl(account.serverId) }),
    leaf(`${x}/AppID`, DMACC_APP_ID, Access.Get),
    leaf(`${x}/ServerID`, account.serverId, Access.Get),
    leaf(`${x}/Name`, account.serverName ?? account.serverId),
    node(`${x}/AppAddr`),
    node(addr),
    leaf(`${addr}/Addr`, account.addr),
    leaf(`${addr}/AddrType`, account.addrType ?? "URI"),
  ];
  if (port !== undefined) {
    out.push(
      node(`${addr}/Port`),
      node(`${addr}/Port/${PORT_NAME}`),
      leaf(`${addr}/Port/${PORT_NAME}/PortNbr`, String(port)),
    );
  }
  out.push(
    leaf(`${x}/AAuthPref`, account.authPref ?? account.clientCred.type),
    node(`${x}/AppAuth`),
    ...authNodes(`${x}/AppAuth/${CLIENT_AUTH_NAME}`, "CLCRED", account.clientCred),
    ...authNodes(`${x}/AppAuth/${SERVER_AUTH_NAME}`, "SRVCRED", account.serverCred),
  );
  return out;

  function authNodes(path: string, level: "CLCRED" | "SRVCRED", cred: DmCredential): NodeSpec[] {
    return [
      node(path),
      leaf(`${path}/AAuthLevel`, level),
      leaf(`${path}/AAuthType`, cred.type),
      leaf(`${path}/AAuthName`, cred.name),
      { ...leaf(`${path}/AAuthSecret`, cred.secret, ACCESS_SECRET), secret: true },
      {
        path: `${path}/AAuthData`,
        format: "bin",
        value: Buffer.from(cred.nonce ?? "", "base64"),
        access: ACCESS_SECRET,
        permanent: false,
        secret: true,
      },
    ];
  }
}

/** The port of a URL address: explicit, or the scheme's default (http 80, https 443). */
function defaultPort(addr: string): number | undefined {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    // Not a URL (an IPv4/IPv6 address, or an opaque URI): no port to derive.
    return undefined;
  }
  if (url.port !== "") return Number(url.port);
  if (url.protocol === "https:") return 443;
  if (url.protocol === "http:") return 80;
  return undefined;
}

function checkAccounts(accounts: readonly DmAccountConfig[]): void {
  const names = new Set<string>();
  const ids = new Set<string>();
  for (const a of accounts) {
    const where = `DM account "${a.name}"`;
    const parsed = parseUri(`./${a.name}`, NO_LIMITS);
    if (
      a.name === "" ||
      !parsed.ok ||
      parsed.uri.segments.length !== 1 ||
      parsed.uri.segments[0] !== a.name
    ) {
      invalid(`${where}: the name must be one URI segment (no "/", "%", "?" or control characters)`, a);
    }
    if (!isServerId(a.serverId)) {
      invalid(`${where}: ServerID "${a.serverId}" cannot appear in an ACL (no white space, = & * +)`, a);
    }
    if (names.has(a.name)) invalid(`${where} is configured twice`, a);
    if (ids.has(a.serverId)) invalid(`${where}: ServerID "${a.serverId}" has another account too`, a);
    names.add(a.name);
    ids.add(a.serverId);
    if (a.portNbr !== undefined && !(Number.isInteger(a.portNbr) && a.portNbr >= 1 && a.portNbr <= 65535)) {
      invalid(`${where}: port ${a.portNbr} is not in 1..65535`, a);
    }
    if (a.authPref !== undefined && !DM_AUTH_TYPES.includes(a.authPref)) {
      invalid(`${where}: unknown AAuthPref "${a.authPref as string}"`, a);
    }
    for (const [side, cred] of [
      ["client", a.clientCred],
      ["server", a.serverCred],
    ] as const) {
      if (!DM_AUTH_TYPES.includes(cred.type)) {
        invalid(`${where}: unknown ${side} AAuthType "${cred.type as string}"`, a);
      }
      // The nonce is checked without echoing it: it is a credential.
      if (cred.nonce !== undefined && !BASE64.test(cred.nonce)) {
        invalid(`${where}: the ${side} nonce is not Base64`, a);
      }
    }
  }
}

function invalid(message: string, account: DmAccountConfig): never {
  throw new GatewayError(message, ErrorCode.Tree_InvalidPlugin, {
    context: { account: account.name, serverId: account.serverId },
  });
}
