/**
 * One way to reach a NetGPT daemon from Node: gRPC over HTTP/2 (@connectrpc/connect-node), mutual
 * TLS or plaintext, with a default deadline on every call.
 */
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import type { Security } from "./security.js";

/** Calls without their own `timeoutMs` get this deadline (the Python channel factory's default). */
export const DEFAULT_TIMEOUT_MS = 10_000;

export interface TransportOptions {
  /** Deadline of a call that sets no `timeoutMs` of its own. */
  defaultTimeoutMs?: number;
}

/**
 * A transport to `address`, written as the daemons report it: `host:port` (e.g. a session's
 * `servingEdge.address`), `[v6]:port`, or a full `http(s)://` URL.
 */
export function createNetgptTransport(
  address: string,
  security: Security,
  options: TransportOptions = {},
): Transport {
  const scheme = security.kind === "mtls" ? "https" : "http";
  const baseUrl = /^https?:\/\//.test(address) ? address : `${scheme}://${address}`;
  const common = { baseUrl, defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS };
  if (security.kind === "insecure") {
    return createGrpcTransport(common);
  }
  return createGrpcTransport({
    ...common,
    nodeOptions: { ca: security.ca, cert: security.cert, key: security.key },
  });
}
