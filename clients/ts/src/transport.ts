/**
 * One way to reach a NetGPT daemon from Node: gRPC over HTTP/2 (@connectrpc/connect-node), mutual
 * TLS or plaintext, with a default deadline on every call and keepalive pings like the Python
 * channel factory's.
 */
import type { Transport } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

import type { Security } from "./security.js";

/** Calls without their own `timeoutMs` get this deadline (the Python channel factory's default). */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** HTTP/2 keepalive, as netgpt/channels.py (the daemons allow pings every 5 s and more). */
const PING_INTERVAL_MS = 30_000;
const PING_TIMEOUT_MS = 10_000;

export interface TransportOptions {
  /** Deadline of a call that sets no `timeoutMs` of its own. */
  defaultTimeoutMs?: number;
}

/** A transport and the HTTP/2 connection under it; `close()` it when done, or the process lingers. */
export interface Connection {
  readonly transport: Transport;
  close(): void;
}

/**
 * `address` as the daemons report it: `host:port` (e.g. a session's `servingEdge.address`),
 * `[v6]:port`, or a full `http(s)://` URL.
 */
function baseUrlOf(address: string, security: Security): string {
  if (/^https?:\/\//.test(address)) {
    return address;
  }
  return `${security.kind === "mtls" ? "https" : "http"}://${address}`;
}

/** A connection to one daemon: mutual TLS with `security`'s certificate, or plaintext. */
export function openConnection(address: string, security: Security, options: TransportOptions = {}): Connection {
  const baseUrl = baseUrlOf(address, security);
  const tls = security.kind === "mtls" ? { ca: security.ca, cert: security.cert, key: security.key } : {};
  const sessionManager = new Http2SessionManager(
    baseUrl,
    { pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS },
    tls,
  );
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return { transport, close: () => sessionManager.abort() };
}

/** The transport of a connection that lives as long as the process (a server, a long-lived agent). */
export function createNetgptTransport(address: string, security: Security, options: TransportOptions = {}): Transport {
  return openConnection(address, security, options).transport;
}
