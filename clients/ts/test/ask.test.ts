/**
 * The TypeScript client against real daemons: tests/test_ts_client.py starts a cluster and runs
 * this file with NETGPT_CORE (the core's host:port), NETGPT_TEST_UE (the UE id the client's
 * certificate names) and the client's identity (NETGPT_TLS_* or NETGPT_INSECURE=1).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";

import { Code, ConnectError, createClient } from "@connectrpc/connect";

import { ask, type Question } from "../examples/ask.js";
import {
  ConfigError,
  ControlPlaneService,
  NodeRole,
  openConnection,
  securityFromEnv,
  toSafeNumber,
} from "../src/index.js";

const core = process.env.NETGPT_CORE;
const ueId = process.env.NETGPT_TEST_UE ?? "ue-1";
const cellId = process.env.NETGPT_TEST_CELL ?? "cell-harbour-1";
const EXAMPLE = fileURLToPath(new URL("../examples/ask.js", import.meta.url));

function question(prompt: string, extra: Partial<Question> = {}): Question {
  assert.ok(core, "NETGPT_CORE is not set: run through tests/test_ts_client.py, which starts the daemons");
  return { core, prompt, ueId, cellId, maxNewTokens: 8, ...extra };
}

function runExample(args: string[], env: NodeJS.ProcessEnv = process.env):
  Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXAMPLE, ...args], { env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("examples/ask against the daemons", () => {
  it("establishes a session at the core and streams an answer from its serving edge", async () => {
    const streamed: string[] = [];
    const answer = await ask(question("Where can I eat near the harbour?", { seed: 7n }), securityFromEnv(),
                             (text) => streamed.push(text));
    assert.ok(answer.session.sessionId);
    assert.equal(answer.session.ueId, ueId);
    assert.ok(answer.session.servingEdge?.address, "the session names its serving edge");
    assert.ok(answer.comprehensivePrompt.length > 0, "the edge personalised the concise prompt");
    assert.ok(streamed.length > 0, "tokens streamed before the summary");
    const summary = answer.summary;
    assert.equal(summary.sessionId, answer.session.sessionId);
    assert.equal(summary.aiFlowId, answer.session.aiFlowId);
    assert.ok([NodeRole.EDGE, NodeRole.CLOUD].includes(summary.terminatedAt));
    assert.ok(summary.completionTokens > 0 && summary.completionTokens <= 8);
    assert.equal(typeof summary.bytesEdgeToCloud, "bigint"); // uint64 → bigint
    assert.ok(toSafeNumber(summary.bytesEdgeToCloud) >= 0);
    assert.equal(answer.text, summary.text);
  });

  it("runs as a command line and prints the summary as proto JSON", async () => {
    const result = await runExample(["--core", question("").core, "--ue", ueId, "--cell", cellId,
                                     "--max-new-tokens", "6", "--json", "What is on at the harbour tonight?"]);
    assert.equal(result.status, 0, result.stderr);
    const out = JSON.parse(result.stdout) as { sessionId: string; text: string; summary: Record<string, unknown> };
    assert.equal(out.summary.sessionId, out.sessionId);
    assert.ok(["NODE_ROLE_EDGE", "NODE_ROLE_CLOUD"].includes(out.summary.terminatedAt as string));
    assert.equal(out.text, out.summary.text);
  });

  it("gets INVALID_ARGUMENT, with the limit named, for a request over the limits", async () => {
    await assert.rejects(ask(question("Hello", { maxNewTokens: 100_000 }), securityFromEnv()), (err: unknown) => {
      const error = ConnectError.from(err);
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /max_new_tokens/);
      return true;
    });
    const result = await runExample(["--core", question("").core, "--ue", ueId, "--max-new-tokens", "100000", "Hi"]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^ask: InvalidArgument: params\.max_new_tokens=100000 exceeds/);
  });

  it("may not open a session for another UE than its certificate's", async (t) => {
    const security = securityFromEnv();
    if (security.kind === "insecure") {
      t.skip("plaintext: the daemons know no caller to check");
      return;
    }
    const connection = openConnection(question("").core, security);
    try {
      const client = createClient(ControlPlaneService, connection.transport);
      await assert.rejects(client.establishSession({ ueId: `${ueId}-other`, cellId }), (err: unknown) => {
        assert.equal(ConnectError.from(err).code, Code.PermissionDenied);
        return true;
      });
    } finally {
      connection.close();
    }
  });
});

describe("client identity from the environment", () => {
  it("refuses, before dialling, a partial or contradictory identity", async () => {
    assert.throws(() => securityFromEnv({}), ConfigError);
    assert.throws(() => securityFromEnv({ NETGPT_TLS_CA: "ca.crt" }), /NETGPT_TLS_CERT, NETGPT_TLS_KEY not set/);
    assert.throws(() => securityFromEnv({ NETGPT_INSECURE: "1", NETGPT_TLS_CA: "ca.crt" }), /choose one/);
    assert.throws(() => securityFromEnv({ NETGPT_TLS_CA: "/nonexistent/ca.crt", NETGPT_TLS_CERT: "c",
                                          NETGPT_TLS_KEY: "k" }), /NETGPT_TLS_CA=\/nonexistent\/ca.crt/);
    assert.deepEqual(securityFromEnv({ NETGPT_INSECURE: "1" }), { kind: "insecure" });
    const result = await runExample(["hello"], { PATH: process.env.PATH ?? "" });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^ask: no client identity/);
  });

  it("keeps 64-bit values exact or refuses them", () => {
    assert.equal(toSafeNumber(2n ** 53n - 1n), Number.MAX_SAFE_INTEGER);
    assert.throws(() => toSafeNumber(2n ** 53n), RangeError);
  });
});
