/**
 * A gateway's northbound side for tests: a file-backed tree with the standard MOs and one DMAcc
 * account pointing at a DM server simulator, the alert outbox, and the matching simulator device
 * settings. Plain code (no mocha), so child processes of crash tests use it too.
 */
import assert from "node:assert/strict";
import type { AuthScheme } from "../../src/dm/auth.js";
import { standardMoPlugins, type DmAuthType } from "../../src/mo/standard.js";
import { AlertOutbox, type NewAlert } from "../../src/northbound/outbox.js";
import type { SessionAccount } from "../../src/northbound/session-runner.js";
import type { DeviceSettings } from "../../src/sim/dm-server.js";
import type { Command } from "../../src/syncml/index.js";
import type { MoPlugin } from "../../src/tree/plugin.js";
import { Store } from "../../src/tree/store.js";
import { DmTree } from "../../src/tree/tree.js";
import { testIdentity } from "./gateway.js";

export const NB_DEV_ID = "IMEI:490154203237518";
export const NB_SERVER_ID = "dmsrv";
export const NB_ACCOUNT = "./DMAcc/dmserver";
export const NB_CLCRED = { name: "gw", secret: "client-secret" } as const;
export const NB_SRVCRED = { name: NB_SERVER_ID, secret: "server-secret" } as const;
export const NB_START_NONCES = {
  client: Uint8Array.from([1, 2, 3, 4]),
  server: Uint8Array.from([5, 6, 7, 8]),
} as const;
const AUTH_TYPE: Readonly<Record<AuthScheme, DmAuthType>> = { basic: "BASIC", md5: "DIGEST", hmac: "HMAC" };

export interface NorthboundGateway {
  readonly store: Store;
  readonly tree: DmTree;
  readonly outbox: AlertOutbox;
  close(): void;
}

export interface NorthboundGatewayOptions {
  readonly maxCount?: number;
  readonly maxBytes?: number;
  /** More MO plugins beside the standard ones (the GwMO objects, say). */
  readonly plugins?: readonly MoPlugin[];
}

/**
 * Opens (or reopens: seeding is once per file) a gateway on `file` whose account talks `scheme`
 * both ways to `url`, with a writable `./Vendor/Setting` for the server.
 */
export function openNorthboundGateway(
  file: string,
  url: string,
  scheme: AuthScheme,
  options: NorthboundGatewayOptions = {},
): NorthboundGateway {
  const store = Store.open(file);
  const tree = new DmTree(store, {
    plugins: standardMoPlugins(testIdentity(NB_DEV_ID), [
      {
        name: "dmserver",
        serverId: NB_SERVER_ID,
        addr: url,
        clientCred: {
          type: AUTH_TYPE[scheme],
          ...NB_CLCRED,
          nonce: Buffer.from(NB_START_NONCES.client).toString("base64"),
        },
        serverCred: {
          type: AUTH_TYPE[scheme],
          ...NB_SRVCRED,
          nonce: Buffer.from(NB_START_NONCES.server).toString("base64"),
        },
      },
    ]).concat(options.plugins ?? []),
  });
  tree.seed();
  if (tree.read("./Vendor") === undefined) {
    tree.write({
      path: "./Vendor",
      format: "node",
      acl: `Add=${NB_SERVER_ID}&Get=${NB_SERVER_ID}&Replace=${NB_SERVER_ID}`,
    });
    tree.write({ path: "./Vendor/Setting", format: "int", value: "1" });
  }
  const outbox = new AlertOutbox(store, {
    maxCount: options.maxCount ?? 100,
    maxBytes: options.maxBytes ?? 1 << 20,
  });
  return {
    store,
    tree,
    outbox,
    close: () => {
      store.close();
    },
  };
}

/** The session account of that gateway. */
export function nbSessionAccount(url: string, scheme: AuthScheme): SessionAccount {
  return {
    accountPath: NB_ACCOUNT,
    serverId: NB_SERVER_ID,
    serverUri: url,
    clientScheme: scheme,
    serverScheme: scheme,
  };
}

/** The simulator's view of the same account. */
export function nbDeviceSettings(
  scheme: AuthScheme,
  overrides: Partial<DeviceSettings> = {},
): DeviceSettings {
  return {
    clientAuth: { scheme, ...NB_CLCRED },
    serverAuth: { scheme, ...NB_SRVCRED },
    clientNonce: NB_START_NONCES.client,
    serverNonce: NB_START_NONCES.server,
    ...overrides,
  };
}

/** A stored nonce of the account, as bytes. */
export function nbNonce(tree: DmTree, side: "ClientSide" | "ServerSide"): Uint8Array {
  const value = tree.read(`${NB_ACCOUNT}/AppAuth/${side}/AAuthData`)?.value;
  assert.ok(value instanceof Uint8Array, `${side} AAuthData is bytes`);
  return Uint8Array.from(value);
}

/** A Generic Alert for the account's server, told apart by its correlator. */
export function nbGenericAlert(correlator: string): NewAlert {
  return {
    serverId: NB_SERVER_ID,
    code: 1226,
    correlator,
    items: [
      {
        source: { locUri: "./GwMO/Fanout/job7" },
        meta: { type: "urn:oma:at:oma-gwmo:completionstatus:1.0", format: "chr", mark: "warning" },
        data: { kind: "text", text: "./GwMO/Fanout/job7/Results" },
      },
    ],
  };
}

export const NB_GET_MAN: Command = {
  kind: "Get",
  cmdId: "1",
  items: [{ target: { locUri: "./DevInfo/Man" } }],
};

/** Replace of `./Vendor/Setting` with `value`. */
export function nbReplaceSetting(value: string, cmdId = "2"): Command {
  return {
    kind: "Replace",
    cmdId,
    items: [
      {
        target: { locUri: "./Vendor/Setting" },
        meta: { format: "int" },
        data: { kind: "text", text: value },
      },
    ],
  };
}
