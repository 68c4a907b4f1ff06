/**
 * NetGPT's TypeScript client: the generated messages and service descriptors of netgpt.v1
 * (src/gen, from protoc-gen-es) plus a transport factory that speaks the daemons' security.
 *
 *   const transport = createNetgptTransport("127.0.0.1:50051", securityFromEnv());
 *   const core = createClient(ControlPlaneService, transport);
 */
export * from "./gen/netgpt/v1/blob_pb.js";
export * from "./gen/netgpt/v1/common_pb.js";
export * from "./gen/netgpt/v1/compute_plane_pb.js";
export * from "./gen/netgpt/v1/control_plane_pb.js";
export * from "./gen/netgpt/v1/profile_pb.js";
export * from "./gen/netgpt/v1/training_pb.js";
export * from "./gen/netgpt/v1/user_plane_pb.js";
export * from "./gen/netgpt/v1/workflow_pb.js";
export { toSafeNumber } from "./numbers.js";
export { ConfigError, INSECURE_ENV, TLS_ENV, securityFromEnv } from "./security.js";
export type { Plaintext, Security, TlsIdentity } from "./security.js";
export { DEFAULT_TIMEOUT_MS, createNetgptTransport, openConnection } from "./transport.js";
export type { Connection, TransportOptions } from "./transport.js";
