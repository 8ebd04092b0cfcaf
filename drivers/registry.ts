/**
 * Transport kind -> driver factory, each imported on first use (style.md 2.1, zigbee-herdsman's
 * `Adapter.create`): a box configured for HTTP and serial never loads MQTT.js, and a driver whose
 * dependency is missing fails only when it is configured.
 */
import { ErrorCode, GatewayError } from "../src/core/errors.js";
import type { BleDriverConfig } from "./ble/driver.js";
import type { CoapDriverConfig } from "./coap/driver.js";
import type {
  AdaptationDriver,
  DriverContext,
  ProxyDriver,
  ProxyDriverContext,
  TransportKind,
} from "./driver.js";
import type { HttpDriverConfig } from "./http/driver.js";
import type { MqttDriverConfig } from "./mqtt/driver.js";
import type { SerialDriverConfig } from "./serial/driver.js";

/** The configuration section of each proxy driver kind. */
export interface ProxyDriverConfigs {
  /** Also the adaptation driver of GATT devices (drivers/ble/driver.ts). */
  readonly ble: BleDriverConfig;
  readonly http: HttpDriverConfig;
  readonly mqtt: MqttDriverConfig;
  readonly serial: SerialDriverConfig;
}

export type ProxyDriverKind = keyof ProxyDriverConfigs;

export const PROXY_DRIVER_KINDS: readonly ProxyDriverKind[] = ["http", "mqtt", "serial", "ble"];

export function isProxyDriverKind(kind: TransportKind): kind is ProxyDriverKind {
  return (PROXY_DRIVER_KINDS as readonly string[]).includes(kind);
}

/**
 * Loads the driver module of `kind` and makes a driver (not started).
 * @param adaptationCtx ble only: where its GATT-only (adaptation) devices are reported; a gateway
 *   passes its southbound's `adaptationContext("ble", ...)` so they are registered as adaptation
 *   devices, not as proxy devices (drivers/ble/driver.ts).
 * @throws GatewayError(Driver_StartFailed) when the module cannot be loaded (a missing dependency).
 */
export async function createProxyDriver<K extends ProxyDriverKind>(
  kind: K,
  config: ProxyDriverConfigs[K],
  ctx: ProxyDriverContext,
  adaptationCtx?: Pick<DriverContext, "onDeviceSeen" | "onDeviceLost">,
): Promise<ProxyDriver> {
  try {
    switch (kind) {
      case "http": {
        const { HttpDriver } = await import("./http/driver.js");
        return new HttpDriver(config as HttpDriverConfig, ctx);
      }
      case "mqtt": {
        const { createMqttDriver } = await import("./mqtt/driver.js");
        return createMqttDriver(config as MqttDriverConfig, ctx);
      }
      case "ble": {
        const { BleDriver } = await import("./ble/driver.js");
        return new BleDriver(config as BleDriverConfig, ctx, adaptationCtx);
      }
      case "serial": {
        const { createSerialDriver } = await import("./serial/driver.js");
        return createSerialDriver(config as SerialDriverConfig, ctx);
      }
      default:
        throw new GatewayError(`no proxy driver for ${String(kind)}`, ErrorCode.Driver_StartFailed);
    }
  } catch (e) {
    if (e instanceof GatewayError) throw e;
    throw new GatewayError(
      `the ${kind} driver cannot be loaded: ${e instanceof Error ? e.message : String(e)}`,
      ErrorCode.Driver_StartFailed,
      {
        cause: e,
      },
    );
  }
}

/** The configuration section of each adaptation driver kind. */
export interface AdaptationDriverConfigs {
  readonly coap: CoapDriverConfig;
}

export type AdaptationDriverKind = keyof AdaptationDriverConfigs;

export const ADAPTATION_DRIVER_KINDS: readonly AdaptationDriverKind[] = ["coap"];

/**
 * Loads the adaptation driver module of `kind` and makes a driver (not started).
 * @throws GatewayError(Driver_StartFailed) when the module cannot be loaded (a missing dependency).
 */
export async function createAdaptationDriver<K extends AdaptationDriverKind>(
  kind: K,
  config: AdaptationDriverConfigs[K],
  ctx: DriverContext,
): Promise<AdaptationDriver> {
  try {
    // One kind so far (BLE GATT adaptation lives in the ble driver); a switch once there are two.
    const { createCoapDriver } = await import("./coap/driver.js");
    return createCoapDriver(config, ctx);
  } catch (e) {
    if (e instanceof GatewayError) throw e;
    throw new GatewayError(
      `the ${kind} driver cannot be loaded: ${e instanceof Error ? e.message : String(e)}`,
      ErrorCode.Driver_StartFailed,
      { cause: e },
    );
  }
}
