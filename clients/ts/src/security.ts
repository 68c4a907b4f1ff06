/**
 * Who a client calls as: mutual TLS with PEM files from `netgpt pki`, or plaintext to a loopback
 * development cluster. Read from the same environment variables the `netgpt` CLI reads.
 */
import { readFileSync } from "node:fs";

/** PEM bytes of the CA the daemons chain to, and of this client's certificate and key. */
export interface TlsIdentity {
  readonly kind: "mtls";
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** No TLS, no identity: daemons started with `--insecure` on loopback only. */
export interface Plaintext {
  readonly kind: "insecure";
}

export type Security = TlsIdentity | Plaintext;

/** A missing or contradictory setting, found before anything is dialled. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export const TLS_ENV = {
  ca: "NETGPT_TLS_CA",
  cert: "NETGPT_TLS_CERT",
  key: "NETGPT_TLS_KEY",
} as const;
export const INSECURE_ENV = "NETGPT_INSECURE";

const TRUE_WORDS = new Set(["1", "true", "yes"]);

function readPem(path: string, variable: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError(`${variable}=${path}: ${reason}`);
  }
}

/**
 * All three of NETGPT_TLS_CA, NETGPT_TLS_CERT, NETGPT_TLS_KEY → mutual TLS with those files;
 * NETGPT_INSECURE=1 → plaintext. Anything else (nothing, a partial set, or both) is a ConfigError.
 */
export function securityFromEnv(env: NodeJS.ProcessEnv = process.env): Security {
  const insecure = TRUE_WORDS.has((env[INSECURE_ENV] ?? "").toLowerCase());
  const given = Object.entries(TLS_ENV).filter(([, variable]) => env[variable]);
  if (insecure && given.length > 0) {
    throw new ConfigError(`both ${INSECURE_ENV} and ${given.map(([, v]) => v).join(", ")} are set; choose one`);
  }
  if (insecure) {
    return { kind: "insecure" };
  }
  if (given.length === 0) {
    throw new ConfigError(
      `no client identity: set ${Object.values(TLS_ENV).join(", ")} (PEM files from \`netgpt pki issue\`), ` +
        `or ${INSECURE_ENV}=1 for a loopback development cluster`,
    );
  }
  const missing = Object.values(TLS_ENV).filter((variable) => !env[variable]);
  if (missing.length > 0) {
    throw new ConfigError(`incomplete TLS material: ${missing.join(", ")} not set`);
  }
  return {
    kind: "mtls",
    ca: readPem(env[TLS_ENV.ca] as string, TLS_ENV.ca),
    cert: readPem(env[TLS_ENV.cert] as string, TLS_ENV.cert),
    key: readPem(env[TLS_ENV.key] as string, TLS_ENV.key),
  };
}
