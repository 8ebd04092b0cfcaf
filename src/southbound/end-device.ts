/**
 * What the fan-out engine sees of a device (design.md section 3): an id, a transport, a mode, and
 * `execute`, which settles before its deadline with the device's per-command Status/Results or one
 * gateway-made status, and never throws for what the device did.
 */
import type { TransportKind } from "../../drivers/driver.js";
import type { Command } from "../syncml/index.js";
import type { DeviceMode } from "./device-registry.js";
import type { DeviceOutcome, ExecuteOptions } from "./proxy-sessions.js";

export interface EndDevice {
  /** The inventory DeviceID. */
  readonly id: string;
  readonly transport: TransportKind;
  readonly mode: DeviceMode;
  execute(commands: readonly Command[], options: ExecuteOptions): Promise<DeviceOutcome>;
}

export type { DeviceOutcome, ExecuteOptions, GatewayMadeStatus } from "./proxy-sessions.js";
