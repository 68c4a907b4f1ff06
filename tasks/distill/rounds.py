"""Rounds of the edge learning from the cloud (``python -m tasks.distill.rounds``), measured on held-out questions.

Each round, on a live all-in-one cluster (the round's edge GPT-2, the pretrained cloud with its shipped adapter,
the edge keeping distillation samples):

1. **evaluate** the round's edge on the 71 held-out questions: its own answer, with the routing features it
   computed (a learned router at threshold 0 keeps every request at the edge and logs them: the probe's mean
   log-probability is today's confidence rule). The cloud side of the frontier is fixed: the same cloud's
   answers to the same questions, collected by ``netgpt eval routing --collect`` (``REFERENCE``; the cloud does
   not change between rounds, and asking it 71 questions per round would cost more than the round itself on
   this CPU). No held-out question reaches the cloud, so none is ever kept as a sample;
2. **collect**: ``questions`` fresh training-style questions (self-instruct phrasings asked in real cells,
   never held-out or dev questions; each round its own) forwarded to the cloud (``--concurrency`` at a time);
   the edge keeps the cloud's answers, and the round's samples are exported from the edge's live file as
   ``netgpt data distill export`` does;
3. **retrain**: the round's edge model fine-tuned (full, the project's trainer, in this process: the library a
   compute-plane job runs, without the job's ONNX packaging and store round trip, which
   ``tests/test_distill_samples.py`` covers) on every grounded sample so far plus a replay share of its own
   training data (:mod:`tasks.distill.dataset`); the next round's cluster serves the result ("redeploy").

Per round: edge-only quality, always-cloud quality, the share of requests the edge ends at equal quality (the
most requests at the edge by today's log-probability threshold, swept on held-out, at no loss against
always-cloud; and at 95 % of it), the shipped learned router's share and quality at its threshold, and what the
round cost (cloud calls, training time). Each round's figures are written as soon as they exist (``--work``),
so a rerun resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog

from appkit.all_in_one import Cluster
from edge_node.serving.distill_samples import DistillSamples
from edge_node.serving.learned_router import LearnedRouter
from netgpt.logs import configure_logging
from netgpt.tiny_models import default_cache_root
from netgpt.training.trainer import TrainConfig, train
from netgpt.v1 import user_plane_pb2 as up_pb2
from node.runtime import starter_models
from tasks.distill.dataset import grounded, in_edge_form, read_rows, replay_rows, write_rows
from tasks.prompt_completion.evaluate import (
    MAX_NEW_TOKENS,
    ask_via_edge,
    cell_venues,
    evaluation_cluster,
    score_answer,
)
from tasks.prompt_completion.heldout import HELD_OUT, HeldOut
from tasks.prompt_completion.synth import real_cells
from tasks.routing.collect import Answer, Collected, Record, features_of, shadow_router_file
from tasks.routing.frontier import TARGET, best_at, confidence, routed, sweep
from tasks.routing.questions import HELDOUT, TRAIN, phrasing_questions, questions_by_split

log = structlog.get_logger("netgpt.distill")
T = TypeVar("T")
R = TypeVar("R")

ROOT = Path(__file__).resolve().parents[2]
EVAL_UE = "ue-eval"  # tasks.prompt_completion.evaluate asks as this UE
REFERENCE = ROOT / "tasks" / "prompt_completion" / "data" / "routing_data_pretrained.json"
SEED = 2027  # of the training-style questions (tasks.routing.questions uses 2026 for the router's)
ROUTER_THRESHOLD = 0.5  # the shipped learned router's recommended threshold
DEV = "dev"


@dataclass(frozen=True)
class Options:
    rounds: int = 3
    questions: int = 60
    steps: int = 0  # 0: ``epochs`` passes over the round's dataset
    epochs: float = 2.0
    batch_size: int = 8
    learning_rate: float = 1e-4
    replay: float = 4.0  # lines of the edge's own training data per grounded sample
    cloud_model: str = "pretrained"
    adapter: str = ""
    max_new_tokens: int = MAX_NEW_TOKENS
    threads: int = 2
    concurrency: int = 1  # requests in flight at once (the cloud batches them)
    heldout: int = 0  # > 0: only the first that many evaluation questions (a smoke test, not a figure)
    form: str = "edge"  # "edge": grounded answers rewritten in the edge's answer form; "cloud": the cloud's prose
    start: str = "starter"  # "starter": each round fine-tunes the starter edge; "latest": the round's own edge
    seed: int = SEED  # of the collected questions and of each round's training
    split: str = HELDOUT  # questions each round is evaluated on: HELDOUT (the figures) or DEV (choosing settings)


@dataclass
class Round:
    round: int
    edge_model: str
    edge_quality: float
    cloud_quality: float
    edge_share_equal: float  # log-prob threshold, most at the edge at >= always-cloud quality
    quality_equal: float
    edge_share_95: float  # the same at >= 95 % of always-cloud quality
    router_edge_share: float  # the shipped learned router at its threshold
    router_quality: float
    cloud_calls: int = 0  # the round's collection (what a round costs)
    failed: int = 0  # collection requests that failed (deadline on a busy CPU)
    collect_s: float = 0.0
    samples_kept: int = 0
    grounded: int = 0
    train_lines: int = 0
    train_s: float = 0.0
    train_steps: int = 0
    train_loss: float = 0.0


def figures(records: list[Record], router: LearnedRouter) -> dict[str, float]:
    """The held-out figures of one round's edge (with the cloud's answers to its prompts)."""
    edge = routed(records, [True] * len(records), "always edge")
    cloud = routed(records, [False] * len(records), "always cloud")
    points = sweep(records, [confidence(r) for r in records], "log-prob")
    equal, near = best_at(points, cloud.quality), best_at(points, TARGET * cloud.quality)
    learned = routed(records, [router.p_good(r.features) >= ROUTER_THRESHOLD for r in records], "learned")
    return {"edge_quality": edge.quality, "cloud_quality": cloud.quality, "edge_share_equal": equal.edge_share,
            "quality_equal": equal.quality, "edge_share_95": near.edge_share,
            "router_edge_share": learned.edge_share, "router_quality": learned.quality}


def evaluation_questions(split: str) -> list[HeldOut]:
    """HELDOUT: the 71 held-out questions (the figures); DEV: the router's training questions, the development
    set's 34 and 80 self-instruct phrasings in real cells (settings are chosen on these)."""
    if split not in (HELDOUT, DEV):
        raise ValueError(f"split must be {HELDOUT!r} or {DEV!r}, not {split!r}")
    return list(HELD_OUT) if split == HELDOUT else questions_by_split()[TRAIN]


def collection_questions(count: int, seed: int = SEED) -> list[HeldOut]:
    """``count`` training-style questions to forward (seeded self-instruct phrasings in real cells): none of the
    held-out or development questions, so no evaluated question is ever taught."""
    evaluated = {q.question for split in (HELDOUT, DEV) for q in evaluation_questions(split)}
    fresh = [q for q in phrasing_questions(10 * count, seed) if q.question not in evaluated]
    if len(fresh) < count:
        raise ValueError(f"only {len(fresh)} fresh questions for {count}: fewer --questions or --rounds")
    return fresh[:count]


def reference_cloud(split: str, path: Path = REFERENCE) -> dict[str, Answer]:
    """The cloud's answers to the split's questions (``netgpt eval routing --collect``, same cloud and adapter,
    the starter edge's prompts; the development questions are in its ``train`` split): the fixed cloud side of
    every round's frontier."""
    wanted = {q.question for q in evaluation_questions(split)}
    collected = Collected.read(path)
    return {r.question: r.cloud for name in (HELDOUT, TRAIN) for r in collected.split(name) if r.question in wanted}


async def gathered(items: Sequence[T], ask: Callable[[T], Awaitable[R]], concurrency: int) -> list[R]:
    """``ask`` for every item, ``concurrency`` at a time (the cloud batches concurrent requests), in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: T) -> R:
        async with gate:
            return await ask(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def held_out_record(cluster: Cluster, q: HeldOut, cloud: Mapping[str, Answer], options: Options) -> Record:
    """The edge's own answer to ``q`` with the routing features it computed (a learned router at threshold 0
    keeps every request at the edge and logs them), next to the reference cloud answer."""
    others = tuple(cell_venues().get(q.cell_id, ()))
    prompt, summary = await ask_via_edge(cluster, q, up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, options.max_new_tokens)
    if summary.bytes_edge_to_cloud:
        raise RuntimeError(f"{q.question!r} went to the cloud: {summary.reason_detail}")
    return Record(HELDOUT, q.question, q.cell_id, q.expected, others, tuple(prompt.knowledge_used),
                  features_of(summary), Answer(summary.text, score_answer(summary.text, q.expected, others),
                                               summary.latency.total_ms), cloud[q.question])


async def run_round(index: int, model_dir: Path, work: Path, questions: list[HeldOut], options: Options,
                    router: LearnedRouter) -> tuple[Round, Path | None]:
    """Evaluate the round's edge, then collect its samples (none in the last round); (figures, samples file)."""
    db, cloud = work / f"round-{index}.sqlite", reference_cloud(options.split)
    db.unlink(missing_ok=True)
    async with evaluation_cluster(str(model_dir), options.cloud_model, options.adapter, router="learned",
                                  router_threshold=0.0, router_weights=str(shadow_router_file(work)),
                                  distill_samples=True, distill_db=str(db),
                                  max_concurrency=options.concurrency) as cluster:
        asked = evaluation_questions(options.split)
        asked = asked[:options.heldout or len(asked)]
        records = await gathered(asked, lambda q: held_out_record(cluster, q, cloud, options), options.concurrency)
        f = figures(records, router)
        result = Round(index, str(model_dir), f["edge_quality"], f["cloud_quality"], f["edge_share_equal"],
                       f["quality_equal"], f["edge_share_95"], f["router_edge_share"], f["router_quality"])
        log.warning("distill.evaluated", **{k: v for k, v in asdict(result).items() if k != "edge_model"})
        if not questions:
            return result, None
        started = time.perf_counter()

        async def forwarded(q: HeldOut) -> bool:
            try:
                _, summary = await ask_via_edge(cluster, q, up_pb2.ROUTE_PREFERENCE_CLOUD, options.max_new_tokens)
            except grpc.aio.AioRpcError as exc:  # a slow cloud on a busy CPU: that question keeps no sample
                log.warning("distill.question_failed", question=q.question, code=exc.code().name)
                result.failed += 1
                return False
            return summary.bytes_edge_to_cloud > 0

        result.cloud_calls = sum(await gathered(questions, forwarded, options.concurrency))
        result.collect_s = time.perf_counter() - started
        out = work / f"round-{index}-samples.jsonl"
        samples = DistillSamples(str(db))
        result.samples_kept = samples.export(out)  # what `netgpt data distill export` writes, from the live file
        samples.close()
        result.grounded = sum(grounded(row, cell_venues()) for row in read_rows(out))
    return result, out


def teaching_rows(sample_files: list[Path], form: str) -> list[dict[str, Any]]:
    """Every grounded sample so far (the latest per prompt), in ``form`` ("edge" or "cloud", see Options)."""
    venues, cells = cell_venues(), real_cells()
    latest = {row["prompt"]: row for path in sample_files for row in read_rows(path) if grounded(row, venues)}
    if form == "cloud":
        return list(latest.values())
    rewritten = (in_edge_form(row, cells[str(row.get("meta", {}).get("cell", ""))][1]) for row in latest.values())
    return [row for row in rewritten if row is not None]


def retrain(index: int, model_dir: Path, sample_files: list[Path], work: Path, options: Options,
            result: Round) -> Path:
    """The next round's edge: ``model_dir`` fine-tuned on every grounded sample so far plus replay."""
    taught = teaching_rows(sample_files, options.form)
    rows = [*taught, *replay_rows(round(options.replay * len(taught)))]
    data = write_rows(rows, work / f"round-{index}-train.jsonl")
    started = time.perf_counter()
    steps = options.steps or math.ceil(options.epochs * len(rows) / options.batch_size)
    trained = train(model_dir, data, work / f"round-{index}-train", TrainConfig(
        method="full", max_steps=steps, batch_size=options.batch_size, learning_rate=options.learning_rate,
        warmup_steps=5, seed=options.seed + index, threads=options.threads))
    result.train_s, result.train_lines, result.train_steps = time.perf_counter() - started, len(rows), steps
    result.train_loss = trained.metrics.get("train_loss", 0.0)
    return trained.output_dir


def table(rounds: list[Round]) -> str:
    header = ("round", "edge-only", "always-cloud", "edge share @ equal q", "@ 95 %", "learned router",
              "cloud calls", "kept / grounded", "train lines", "train s")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rounds:
        lines.append(" | ".join((
            str(r.round), f"{r.edge_quality:.1%}", f"{r.cloud_quality:.1%}",
            f"{r.edge_share_equal:.1%} ({r.quality_equal:.1%})", f"{r.edge_share_95:.1%}",
            f"{r.router_edge_share:.1%} ({r.router_quality:.1%})", str(r.cloud_calls),
            f"{r.samples_kept} / {r.grounded}", str(r.train_lines), f"{r.train_s:.0f}")))
    return "\n".join(f"| {line} |" for line in lines)


async def run(options: Options, work: Path) -> list[Round]:
    work.mkdir(parents=True, exist_ok=True)
    questions = collection_questions(options.questions * options.rounds, options.seed)
    router, starter = LearnedRouter.load(), starter_models().gpt2_dir
    model_dir = starter
    results: list[Round] = []
    sample_files: list[Path] = []
    for index in range(options.rounds + 1):
        saved = work / f"round-{index}.json"
        if saved.is_file():  # resumed
            data = json.loads(saved.read_text("utf-8"))
            results.append(Round(**data["round"]))
            model_dir = Path(data["next_model"]) if data["next_model"] else model_dir
            sample_files += [Path(data["samples"])] if data["samples"] else []
            continue
        batch = questions[index * options.questions:(index + 1) * options.questions] if index < options.rounds else []
        result, samples = await run_round(index, model_dir, work, batch, options, router)
        next_model = None
        if samples is not None:
            sample_files.append(samples)
            base = starter if options.start == "starter" else model_dir
            next_model = retrain(index, base, sample_files, work, options, result)
        saved.write_text(json.dumps({"round": asdict(result), "next_model": str(next_model or ""),
                                     "samples": str(samples or "")}, indent=1), encoding="utf-8")
        results.append(result)
        log.warning("distill.round_done", round=index, cloud_calls=result.cloud_calls, grounded=result.grounded,
                    train_s=round(result.train_s, 1))
        model_dir = next_model or model_dir
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.distill.rounds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=Options.rounds)
    parser.add_argument("--questions", type=int, default=Options.questions, help="training-style questions a round")
    parser.add_argument("--steps", type=int, default=Options.steps, help="0: --epochs over the round's dataset")
    parser.add_argument("--epochs", type=float, default=Options.epochs)
    parser.add_argument("--learning-rate", type=float, default=Options.learning_rate)
    parser.add_argument("--replay", type=float, default=Options.replay)
    parser.add_argument("--cloud-model", default=Options.cloud_model)
    parser.add_argument("--concurrency", type=int, default=Options.concurrency,
                        help="requests in flight at once (the cloud batches them; on a busy CPU 1)")
    parser.add_argument("--heldout", type=int, default=0, help="only the first N evaluation questions (smoke test)")
    parser.add_argument("--form", choices=("edge", "cloud"), default=Options.form,
                        help="teach the cloud's answers in the edge's answer form, or in the cloud's own words")
    parser.add_argument("--start", choices=("starter", "latest"), default=Options.start,
                        help="each round fine-tunes the starter edge (on every sample so far) or the round's edge")
    parser.add_argument("--seed", type=int, default=Options.seed, help="of the questions and the training")
    parser.add_argument("--split", choices=(HELDOUT, DEV), default=Options.split,
                        help="evaluate each round on the held-out questions, or on the development set")
    parser.add_argument("--work", type=Path, default=default_cache_root() / "distill-rounds",
                        help="round figures, samples and models (a rerun resumes from it)")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reports" / "distill_rounds.json")
    args = parser.parse_args(argv)
    configure_logging(json=False, level=args.log_level)
    options = Options(rounds=args.rounds, questions=args.questions, steps=args.steps, epochs=args.epochs,
                      learning_rate=args.learning_rate, replay=args.replay, cloud_model=args.cloud_model,
                      heldout=args.heldout, concurrency=args.concurrency, form=args.form, start=args.start,
                      split=args.split, seed=args.seed)
    results = asyncio.run(run(options, args.work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"options": asdict(options), "rounds": [asdict(r) for r in results]}, indent=1)
                        + "\n", encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
