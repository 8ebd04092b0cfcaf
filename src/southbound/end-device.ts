/**
 * What the fan-out engine sees of a device (design.md section 3): an id, a transport, a mode, and
 * `execute`, which settles before its deadline with the device's per-command Status/Results or one
 * gateway-made status, and never throws for what the device did.
 */
import type { AdaptedOutcome, TransportKind } from "../../drivers/driver.js";
import type { Command } from "../syncml/index.js";
import type { DeviceMode } from "./device-registry.js";
import type { ExecuteOptions } from "./proxy-sessions.js";

export interface EndDevice {
  /** The inventory DeviceID. */
  readonly id: string;
  readonly transport: TransportKind;
  readonly mode: DeviceMode;
  /** Per-command results, or one gateway-made status; proxy devices add their session's records. */
  execute(commands: readonly Command[], options: ExecuteOptions): Promise<AdaptedOutcome>;
}

export type { AdaptedOutcome, DeviceCommandResult, GatewayMadeStatus } from "../../drivers/driver.js";
export type { ExecuteOptions } from "./proxy-sessions.js";
