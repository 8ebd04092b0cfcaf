/**
 * A small MQTT 5 broker in this process, for `dmgw demo` on a machine without mosquitto (the demo
 * prefers a real mosquitto: mosquitto.ts). It speaks just what the MQTT binding (drivers/mqtt) and
 * its device fleet use, over mqtt-packet (the codec MQTT.js itself is built on):
 *
 *   CONNECT (MQTT 5 only) -> CONNACK (no stored sessions: sessionPresent is always false)
 *   SUBSCRIBE (+ and # wildcards) -> SUBACK (QoS 0/1 granted; 2 is granted as 1) + retained matches
 *   PUBLISH QoS 0/1 -> PUBACK; delivered once per subscribed client at the highest matching QoS
 *   retained messages (an empty payload clears one); last wills when a connection ends without
 *   DISCONNECT (or with reason 0x04); PINGREQ; UNSUBSCRIBE; a second CONNECT with the same client
 *   id takes the first connection over
 *
 * Not supported (refused or ignored, none of which the binding uses): MQTT 3.1/3.1.1, QoS 2,
 * persistent sessions, shared subscriptions, topic aliases, authentication, will delays.
 *
 * Why not aedes: aedes 1.2 refuses an MQTT 5 CONNECT ("unacceptable protocol version"), and the
 * binding needs MQTT 5 (content type and user properties carry the DM message's type and HMAC).
 */
import net from "node:net";
import mqttPacket, { type IPublishPacket, type ISubscription, type Packet } from "mqtt-packet";

const PROTOCOL_VERSION = 5;
/** MQTT 5 reason codes (MQTT 5.0, 2.4). */
const REASON = {
  success: 0x00,
  grantedQos1: 0x01,
  disconnectWithWill: 0x04,
  noMatchingSubscribers: 0x10,
  noSubscriptionExisted: 0x11,
  unsupportedProtocolVersion: 0x84,
  qosNotSupported: 0x9b,
} as const;
const GENERATE_OPTIONS = { protocolVersion: PROTOCOL_VERSION };

export interface EmbeddedBrokerOptions {
  /** Listen address; default 127.0.0.1. */
  readonly host?: string;
  /** Listen port; default 0 (any free one: read `port` back). */
  readonly port?: number;
}

interface Will {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1;
  readonly retain: boolean;
  readonly properties: IPublishPacket["properties"];
}

interface Client {
  readonly socket: net.Socket;
  id: string | undefined;
  will: Will | undefined;
  /** Filter -> granted QoS. */
  readonly subscriptions: Map<string, 0 | 1>;
  nextMessageId: number;
  /** Set once the client said DISCONNECT, was taken over, or the broker stops: no will. */
  quiet: boolean;
}

/** A running embedded broker. */
export interface EmbeddedBroker {
  readonly port: number;
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  /** Closes the listener and every connection (no wills are sent); idempotent. */
  stop(): Promise<void>;
}

/** Starts the broker and resolves once it listens. */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const broker = new Broker();
  const server = net.createServer((socket) => {
    broker.accept(socket);
  });
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  let stopping: Promise<void> | undefined;
  return {
    port,
    url: `mqtt://${host}:${port}`,
    stop: () => {
      stopping ??= new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        broker.closeAll();
      });
      return stopping;
    },
  };
}

class Broker {
  readonly #clients = new Set<Client>();
  readonly #byId = new Map<string, Client>();
  readonly #retained = new Map<string, IPublishPacket>();

  accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const client: Client = {
      socket,
      id: undefined,
      will: undefined,
      subscriptions: new Map(),
      nextMessageId: 1,
      quiet: false,
    };
    this.#clients.add(client);
    const parser = mqttPacket.parser({ protocolVersion: PROTOCOL_VERSION });
    parser.on("packet", (packet: Packet) => {
      this.#onPacket(client, packet);
    });
    parser.on("error", () => {
      // Bytes that are no MQTT: drop the connection, as a broker does (the will goes out).
      socket.destroy();
    });
    socket.on("data", (chunk: Buffer) => {
      parser.parse(chunk);
    });
    socket.on("error", () => {
      // A reset connection ends in "close" below; nothing else to do here.
    });
    socket.on("close", () => {
      this.#gone(client);
    });
  }

  closeAll(): void {
    for (const c of this.#clients) {
      c.quiet = true;
      c.socket.destroy();
    }
  }

  #onPacket(client: Client, packet: Packet): void {
    switch (packet.cmd) {
      case "connect": {
        if (packet.protocolVersion !== PROTOCOL_VERSION) {
          this.#send(client, {
            cmd: "connack",
            sessionPresent: false,
            reasonCode: REASON.unsupportedProtocolVersion,
          });
          client.quiet = true;
          client.socket.end();
          return;
        }
        const id =
          packet.clientId === "" ? `embedded-${Math.random().toString(16).slice(2)}` : packet.clientId;
        const previous = this.#byId.get(id);
        if (previous !== undefined) {
          previous.quiet = true;
          previous.socket.destroy();
        }
        client.id = id;
        this.#byId.set(id, client);
        const will = packet.will;
        if (will !== undefined) {
          client.will = {
            topic: will.topic,
            payload: Buffer.from(will.payload),
            qos: will.qos === 0 ? 0 : 1,
            retain: will.retain === true,
            properties: willProperties(will.properties),
          };
        }
        this.#send(client, {
          cmd: "connack",
          sessionPresent: false,
          reasonCode: REASON.success,
          properties: {
            maximumQoS: 1,
            retainAvailable: true,
            wildcardSubscriptionAvailable: true,
            sharedSubscriptionAvailable: false,
            subscriptionIdentifiersAvailable: false,
            topicAliasMaximum: 0,
            ...(packet.clientId === "" && { assignedClientIdentifier: id }),
          },
        });
        return;
      }
      case "subscribe": {
        const granted: number[] = [];
        const newFilters: ISubscription[] = [];
        for (const s of packet.subscriptions) {
          if (s.topic.startsWith("$share/")) {
            granted.push(0x9e); // Shared Subscriptions not supported
            continue;
          }
          const qos: 0 | 1 = s.qos === 0 ? 0 : 1;
          client.subscriptions.set(s.topic, qos);
          granted.push(qos === 0 ? REASON.success : REASON.grantedQos1);
          newFilters.push(s);
        }
        this.#send(client, { cmd: "suback", messageId: packet.messageId ?? 0, granted });
        // Retained messages follow the SUBACK (retain handling 2 asks for none).
        for (const s of newFilters) {
          if (s.rh === 2) continue;
          for (const message of this.#retained.values()) {
            if (topicMatches(s.topic, message.topic))
              this.#deliver(client, message, s.qos === 0 ? 0 : 1, true);
          }
        }
        return;
      }
      case "unsubscribe": {
        const granted = packet.unsubscriptions.map((f) =>
          client.subscriptions.delete(f) ? REASON.success : REASON.noSubscriptionExisted,
        );
        this.#send(client, { cmd: "unsuback", messageId: packet.messageId ?? 0, granted });
        return;
      }
      case "publish": {
        if (packet.qos === 2) {
          // Not offered in CONNACK (maximumQoS 1): a client that sends it anyway is cut off.
          this.#send(client, { cmd: "disconnect", reasonCode: REASON.qosNotSupported });
          client.socket.destroy();
          return;
        }
        const delivered = this.#publish(packet);
        if (packet.qos === 1) {
          this.#send(client, {
            cmd: "puback",
            messageId: packet.messageId ?? 0,
            reasonCode: delivered ? REASON.success : REASON.noMatchingSubscribers,
          });
        }
        return;
      }
      case "pingreq":
        this.#send(client, { cmd: "pingresp" });
        return;
      case "disconnect":
        client.quiet = packet.reasonCode !== REASON.disconnectWithWill;
        client.socket.end();
        return;
      case "puback":
        // Our QoS 1 deliveries need no bookkeeping: no retransmission on a live TCP connection.
        return;
      case "auth":
      case "connack":
      case "pingresp":
      case "pubcomp":
      case "pubrec":
      case "pubrel":
      case "suback":
      case "unsuback":
        // Server-to-client packets, or QoS 2 and enhanced authentication, which the binding never
        // uses: ignored.
        return;
    }
  }

  /** Routes a message; true when some client got it. */
  #publish(packet: IPublishPacket): boolean {
    const payload = Buffer.from(packet.payload);
    if (packet.retain) {
      if (payload.length === 0) this.#retained.delete(packet.topic);
      else this.#retained.set(packet.topic, { ...packet, payload });
    }
    let delivered = false;
    for (const c of this.#clients) {
      if (c.id === undefined) continue;
      let best: 0 | 1 | undefined;
      for (const [filter, qos] of c.subscriptions) {
        if (topicMatches(filter, packet.topic) && (best === undefined || qos > best)) best = qos;
      }
      if (best === undefined) continue;
      this.#deliver(c, { ...packet, payload }, best === 1 && packet.qos === 1 ? 1 : 0, false);
      delivered = true;
    }
    return delivered;
  }

  #deliver(client: Client, message: IPublishPacket, qos: 0 | 1, retained: boolean): void {
    // Aliases and subscription ids belong to one connection; they never travel on.
    const properties = { ...message.properties };
    delete properties.topicAlias;
    delete properties.subscriptionIdentifier;
    const out: IPublishPacket = {
      cmd: "publish",
      topic: message.topic,
      payload: message.payload,
      qos,
      dup: false,
      retain: retained,
      ...(Object.keys(properties).length > 0 && { properties }),
    };
    if (qos === 1) {
      out.messageId = client.nextMessageId;
      client.nextMessageId = client.nextMessageId >= 0xffff ? 1 : client.nextMessageId + 1;
    }
    this.#send(client, out);
  }

  #send(client: Client, packet: Packet): void {
    if (client.socket.destroyed || !client.socket.writable) return;
    client.socket.write(mqttPacket.generate(packet, GENERATE_OPTIONS));
  }

  #gone(client: Client): void {
    this.#clients.delete(client);
    if (client.id !== undefined && this.#byId.get(client.id) === client) this.#byId.delete(client.id);
    const will = client.will;
    if (will === undefined || client.quiet) return;
    this.#publish({
      cmd: "publish",
      topic: will.topic,
      payload: will.payload,
      qos: will.qos,
      dup: false,
      retain: will.retain,
      ...(will.properties !== undefined && { properties: will.properties }),
    });
  }
}

/** A will's properties as the PUBLISH that carries it has them (the will delay is not supported). */
function willProperties(
  p: NonNullable<Extract<Packet, { cmd: "connect" }>["will"]>["properties"],
): IPublishPacket["properties"] {
  if (p === undefined) return undefined;
  const properties = { ...p };
  delete properties.willDelayInterval;
  return properties;
}

/** MQTT topic matching (MQTT 5.0, 4.7): `+` one level, `#` the rest; `$` topics only by name. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    const part = f[i];
    if (part === "#") return true;
    if (i >= t.length) return false;
    if (part !== "+" && part !== t[i]) return false;
  }
  return f.length === t.length;
}
