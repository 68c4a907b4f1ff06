/**
 * Ask NetGPT one question from TypeScript, the way a UE does:
 *   1. ControlPlaneService.EstablishSession at the core → an AI session with its serving edge;
 *   2. UserPlaneService.Generate at that edge → the comprehensive prompt, streamed tokens, a summary;
 *   3. ControlPlaneService.ReleaseSession.
 *
 *   NETGPT_TLS_CA=ca.crt NETGPT_TLS_CERT=ue-1.crt NETGPT_TLS_KEY=ue-1.key \
 *     node dist/examples/ask.js --core 127.0.0.1:50051 --ue ue-1 "Where can I eat near the harbour?"
 *   NETGPT_INSECURE=1 node dist/examples/ask.js "..."      # a `netgpt all-in-one --insecure` cluster
 *
 * With mutual TLS the certificate must be a `ue` certificate named like --ue (`netgpt pki issue --role ue --name ue-1`).
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";

import {
  type AiSession,
  ConfigError,
  ControlPlaneService,
  type GenerationSummary,
  GenerationSummarySchema,
  NodeRole,
  PromptKind,
  type Security,
  UserPlaneService,
  openConnection,
  securityFromEnv,
} from "../src/index.js";

export interface Question {
  core: string;
  prompt: string;
  ueId: string;
  cellId: string;
  maxNewTokens?: number;
  /** Sampling seed: a uint64 field, so a bigint (`7n`). */
  seed?: bigint;
  /** Deadline of the whole streamed answer. */
  timeoutMs?: number;
}

export interface Answer {
  session: AiSession;
  /** The edge's personalised prompt, when it sent one. */
  comprehensivePrompt: string;
  /** Tokens as they arrived (after a fallback: only the edge's answer). */
  text: string;
  summary: GenerationSummary;
}

/** Establish a session, stream one answer from the session's serving edge, release the session. */
export async function ask(
  question: Question,
  security: Security,
  onText: (text: string) => void = () => {},
): Promise<Answer> {
  const coreConnection = openConnection(question.core, security);
  const core = createClient(ControlPlaneService, coreConnection.transport);
  try {
    const { session } = await core.establishSession({ ueId: question.ueId, cellId: question.cellId });
    const edgeAddress = session?.servingEdge?.address;
    if (!session || !edgeAddress) {
      throw new ConnectError("the core returned a session without a serving edge", Code.Unavailable);
    }
    try {
      return await streamAnswer(question, session, edgeAddress, security, onText);
    } finally {
      await core.releaseSession({ sessionId: session.sessionId }).catch(() => undefined);
    }
  } finally {
    coreConnection.close();
  }
}

async function streamAnswer(
  question: Question,
  session: AiSession,
  edgeAddress: string,
  security: Security,
  onText: (text: string) => void,
): Promise<Answer> {
  const edgeConnection = openConnection(edgeAddress, security);
  try {
    const edge = createClient(UserPlaneService, edgeConnection.transport);
    const stream = edge.generate(
      {
        sessionId: session.sessionId,
        kind: PromptKind.CONCISE, // PROMPT_KIND_CONCISE in the .proto: protoc-gen-es drops the enum prefix
        prompt: question.prompt,
        ran: { cellId: question.cellId, ueId: question.ueId, aiFlowId: session.aiFlowId },
        params: { maxNewTokens: question.maxNewTokens ?? 0, seed: question.seed },
      },
      { timeoutMs: question.timeoutMs ?? 60_000 },
    );
    let comprehensivePrompt = "";
    let text = "";
    let summary: GenerationSummary | undefined;
    // Read to the end of the stream (the summary is its last message): the call's status arrives
    // with the end, and leaving the loop early would keep its deadline timer alive.
    for await (const response of stream) {
      const event = response.event;
      switch (event.case) {
        case "comprehensivePrompt":
          comprehensivePrompt = event.value.text;
          break;
        case "tokens":
          text += event.value.text;
          onText(event.value.text);
          break;
        case "fallback": // the cloud failed mid-stream: the edge's complete answer follows
          text = "";
          onText(`\n[cloud failed: ${event.value.reason}; the edge answers]\n`);
          break;
        case "summary":
          summary = event.value;
          break;
      }
    }
    if (!summary) {
      throw new ConnectError("the edge ended the stream without a summary", Code.DataLoss);
    }
    return { session, comprehensivePrompt, text, summary };
  } finally {
    edgeConnection.close();
  }
}

function describe(summary: GenerationSummary): string {
  return [
    `terminated_at=${NodeRole[summary.terminatedAt]}`,
    `tokens=${summary.completionTokens}`,
    `bytes_edge_to_cloud=${summary.bytesEdgeToCloud}`, // uint64 → bigint: prints exactly
    `total_ms=${summary.latency?.totalMs.toFixed(1) ?? "?"}`,
  ].join(" ");
}

const USAGE = "usage: ask.js [--core HOST:PORT] [--ue ID] [--cell ID] [--max-new-tokens N] [--json] PROMPT";

/** The command line; returns the exit status (0 ok, 1 a gRPC error, 2 a usage or setup error). */
export async function main(argv: string[]): Promise<number> {
  let question: Question;
  let json: boolean;
  let security: Security;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        core: { type: "string", default: "127.0.0.1:50051" },
        ue: { type: "string", default: "ue-1" },
        cell: { type: "string", default: "cell-harbour-1" },
        "max-new-tokens": { type: "string", default: "0" },
        json: { type: "boolean", default: false },
      },
    });
    const maxNewTokens = Number(values["max-new-tokens"]);
    if (positionals.length !== 1 || !Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw new ConfigError(USAGE);
    }
    question = { core: values.core, prompt: positionals[0] as string, ueId: values.ue, cellId: values.cell,
                 maxNewTokens };
    json = values.json;
    security = securityFromEnv();
  } catch (err) {
    process.stderr.write(`ask: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  try {
    const answer = await ask(question, security, json ? undefined : (text) => process.stdout.write(text));
    if (json) {
      process.stdout.write(JSON.stringify({
        sessionId: answer.session.sessionId,
        servingEdge: answer.session.servingEdge?.nodeId,
        comprehensivePrompt: answer.comprehensivePrompt,
        text: answer.text,
        summary: toJson(GenerationSummarySchema, answer.summary), // proto JSON: uint64 as a string
      }) + "\n");
    } else {
      process.stdout.write(`\n[${describe(answer.summary)}]\n`);
    }
    return 0;
  } catch (err) {
    const error = ConnectError.from(err);
    process.stderr.write(`ask: ${Code[error.code]}: ${error.rawMessage}\n`);
    return 1;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(realpathSync(script)).href;
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2));
}
