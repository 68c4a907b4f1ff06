"""Rounds of the edge learning from the cloud (``python -m tasks.distill.rounds``), measured on held-out questions.

Each round, on a live all-in-one cluster (the serving edge GPT-2, the pretrained cloud with its shipped adapter,
the edge keeping distillation samples):

1. **evaluate** the serving edge on the 71 held-out questions (:mod:`tasks.distill.evaluation`): its own answer,
   with the routing features it computed, next to the fixed reference cloud's. No held-out question reaches the
   cloud, so none is ever kept as a sample;
2. **collect**: ``questions`` fresh training-style questions (self-instruct phrasings asked in real cells,
   never a held-out or development question; each round its own) forwarded to the cloud (``--concurrency`` at
   a time); the edge keeps the cloud's answers, and the round's samples are exported from the edge's live file
   as ``netgpt data distill export`` does;
3. **retrain**: an edge fine-tuned (full, the project's trainer, in this process: the library a compute-plane
   job runs, without the job's ONNX packaging and store round trip, which ``tests/test_distill_samples.py``
   covers) on every grounded sample so far plus a replay share of its own training data
   (:mod:`tasks.distill.dataset`);
4. **gate** (``--gate``, on by default): the candidate serves the next round only when it is no worse than the
   serving edge on the development questions (:func:`tasks.distill.evaluation.passes_gate`), as a deployment
   with a canary would; otherwise the serving edge stays, and the next round retrains it with more samples.

Per round: the held-out figures, what the round cost (cloud calls, training and gate time) and the gate's
figures and decision. Each round's figures are written as soon as they exist (``--work``), so a rerun resumes,
with every answer behind them (``round-N-<split>.json``, the routing-data format).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
from tasks.distill.evaluation import (
    DEV,
    REFERENCE,
    ROOT,
    evaluate,
    evaluation_questions,
    figures,
    gathered,
    passes_gate,
)
from tasks.prompt_completion.evaluate import MAX_NEW_TOKENS, ask_via_edge, cell_venues, evaluation_cluster
from tasks.prompt_completion.heldout import HeldOut
from tasks.prompt_completion.synth import real_cells
from tasks.routing.collect import Collected, shadow_router_file
from tasks.routing.questions import HELDOUT, phrasing_questions

log = structlog.get_logger("netgpt.distill")

SEED = 2027  # of the training-style questions (tasks.routing.questions uses 2026 for the router's)


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
    form: str = "cloud"  # "cloud": the cloud's own words; "edge": rewritten in the edge's answer form
    start: str = "starter"  # "starter": the starter edge, every round, on every sample so far; "latest": the serving
    # edge, fine-tuned again (chosen on DEV over two seeds: fine-tuning the fine-tuned edge again drifts by round 3)
    seed: int = SEED  # of the collected questions and of each round's training
    split: str = HELDOUT  # questions each round is evaluated on: HELDOUT (the figures) or DEV (choosing settings)
    gate: bool = True  # a candidate serves only when no worse on DEV (ignored when the figures are on DEV)


@dataclass
class Round:
    round: int
    edge_model: str  # the edge serving this round
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
    gate_s: float = 0.0
    gate: dict[str, Any] | None = None  # the serving edge's and the candidate's DEV figures, and the decision


def collection_questions(count: int, seed: int = SEED) -> list[HeldOut]:
    """``count`` training-style questions to forward (seeded self-instruct phrasings in real cells): none of the
    held-out or development questions, so no evaluated question is ever taught."""
    evaluated = {q.question for split in (HELDOUT, DEV) for q in evaluation_questions(split)}
    fresh = [q for q in phrasing_questions(10 * count, seed) if q.question not in evaluated]
    if len(fresh) < count:
        raise ValueError(f"only {len(fresh)} fresh questions for {count}: fewer --questions or --rounds")
    return fresh[:count]


def _cluster(model_dir: Path, work: Path, options: Options,
             **edge_settings: Any) -> AbstractAsyncContextManager[Cluster]:
    """An evaluation cluster on ``model_dir`` whose learned router (threshold 0) keeps every request at the
    edge and logs its features."""
    return evaluation_cluster(str(model_dir), options.cloud_model, options.adapter, router="learned",
                              router_threshold=0.0, router_weights=str(shadow_router_file(work)),
                              max_concurrency=options.concurrency, **edge_settings)


async def collect(cluster: Cluster, index: int, db: Path, work: Path, questions: list[HeldOut],
                  options: Options, result: Round) -> Path:
    """Forward the round's questions to the cloud through the edge; the samples it kept, exported."""
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
    venues = cell_venues()
    result.grounded = sum(grounded(row, venues) for row in read_rows(out))
    return out


async def run_round(index: int, model_dir: Path, work: Path, questions: list[HeldOut], options: Options,
                    router: LearnedRouter) -> tuple[Round, Path | None]:
    """Evaluate the serving edge, then collect its samples (none in the last round); (figures, samples file)."""
    db = work / f"round-{index}.sqlite"
    db.unlink(missing_ok=True)
    async with _cluster(model_dir, work, options, distill_samples=True, distill_db=str(db)) as cluster:
        records = await evaluate(cluster, options.split, options.max_new_tokens, options.concurrency, options.heldout)
        # every answer with its confidence and the reference cloud's: which questions decide the round's share
        Collected(f"edge {model_dir}; {REFERENCE.name}", options.max_new_tokens, router.probe_tokens,
                  tuple(records)).write(work / f"round-{index}-{options.split}.json")
        f = figures(records, router)
        result = Round(index, str(model_dir), f["edge_quality"], f["cloud_quality"], f["edge_share_equal"],
                       f["quality_equal"], f["edge_share_95"], f["router_edge_share"], f["router_quality"])
        log.warning("distill.evaluated", **{k: v for k, v in asdict(result).items() if k != "edge_model"})
        if not questions:
            return result, None
        return result, await collect(cluster, index, db, work, questions, options, result)


async def dev_figures(model_dir: Path, work: Path, options: Options, router: LearnedRouter) -> dict[str, float]:
    async with _cluster(model_dir, work, options) as cluster:
        return figures(await evaluate(cluster, DEV, options.max_new_tokens, options.concurrency, options.heldout),
                       router)


def teaching_rows(sample_files: list[Path], form: str) -> list[dict[str, Any]]:
    """Every grounded sample so far (the latest per prompt), in ``form`` ("edge" or "cloud", see Options)."""
    venues, cells = cell_venues(), real_cells()
    latest = {row["prompt"]: row for path in sample_files for row in read_rows(path) if grounded(row, venues)}
    if form == "cloud":
        return list(latest.values())
    rewritten = (in_edge_form(row, cells[str(row.get("meta", {}).get("cell", ""))][1]) for row in latest.values())
    return [row for row in rewritten if row is not None]


def retrain(index: int, model_dir: Path, sample_files: list[Path], work: Path, options: Options,
            result: Round) -> Path | None:
    """A candidate edge: ``model_dir`` fine-tuned on every grounded sample so far plus replay (None while no
    sample is grounded: nothing to learn, the serving edge stays)."""
    taught = teaching_rows(sample_files, options.form)
    if not taught:
        log.warning("distill.nothing_to_teach", round=index, samples=result.samples_kept)
        return None
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
              "cloud calls", "kept / grounded", "train lines", "train s", "gate (dev share, quality)")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rounds:
        gate = "" if r.gate is None else (
            f"{r.gate['candidate']['edge_share_equal']:.1%}, {r.gate['candidate']['edge_quality']:.1%} vs "
            f"{r.gate['serving']['edge_share_equal']:.1%}, {r.gate['serving']['edge_quality']:.1%}: "
            f"{'deployed' if r.gate['deployed'] else 'kept the serving edge'}")
        lines.append(" | ".join((
            str(r.round), f"{r.edge_quality:.1%}", f"{r.cloud_quality:.1%}",
            f"{r.edge_share_equal:.1%} ({r.quality_equal:.1%})", f"{r.edge_share_95:.1%}",
            f"{r.router_edge_share:.1%} ({r.router_quality:.1%})", str(r.cloud_calls),
            f"{r.samples_kept} / {r.grounded}", str(r.train_lines), f"{r.train_s:.0f}", gate)))
    return "\n".join(f"| {line} |" for line in lines)


async def gated(candidate: Path, serving: Path, serving_dev: dict[str, float] | None, work: Path,
                options: Options, router: LearnedRouter, result: Round) -> tuple[Path, dict[str, float]]:
    """The edge that serves next (the candidate or the serving one) and its DEV figures."""
    started = time.perf_counter()
    serving_dev = serving_dev or await dev_figures(serving, work, options, router)
    candidate_dev = await dev_figures(candidate, work, options, router)
    deployed = passes_gate(candidate_dev, serving_dev)
    result.gate_s = time.perf_counter() - started
    result.gate = {"serving": serving_dev, "candidate": candidate_dev, "deployed": deployed}
    log.warning("distill.gate", round=result.round, deployed=deployed, candidate=candidate_dev, serving=serving_dev)
    return (candidate, candidate_dev) if deployed else (serving, serving_dev)


async def run(options: Options, work: Path) -> list[Round]:
    work.mkdir(parents=True, exist_ok=True)
    questions = collection_questions(options.questions * options.rounds, options.seed)
    router, starter = LearnedRouter.load(), starter_models().gpt2_dir
    gate = options.gate and options.split != DEV
    model_dir, serving_dev = starter, None
    results: list[Round] = []
    sample_files: list[Path] = []
    for index in range(options.rounds + 1):
        saved = work / f"round-{index}.json"
        if saved.is_file():  # resumed
            data = json.loads(saved.read_text("utf-8"))
            results.append(Round(**data["round"]))
            model_dir = Path(data["next_model"]) if data["next_model"] else model_dir
            serving_dev = data.get("next_dev") or serving_dev
            sample_files += [Path(data["samples"])] if data["samples"] else []
            continue
        batch = questions[index * options.questions:(index + 1) * options.questions] if index < options.rounds else []
        result, samples = await run_round(index, model_dir, work, batch, options, router)
        if samples is not None:
            sample_files.append(samples)
            base = starter if options.start == "starter" else model_dir
            candidate = retrain(index, base, sample_files, work, options, result)
            if candidate is not None:
                model_dir, serving_dev = (await gated(candidate, model_dir, serving_dev, work, options, router,
                                                      result) if gate else (candidate, None))
        saved.write_text(json.dumps({"round": asdict(result), "next_model": str(model_dir), "next_dev": serving_dev,
                                     "samples": str(samples or "")}, indent=1), encoding="utf-8")
        results.append(result)
        log.warning("distill.round_done", round=index, cloud_calls=result.cloud_calls, grounded=result.grounded,
                    train_s=round(result.train_s, 1))
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
                        help="teach the cloud's answers in its own words, or in the edge's answer form")
    parser.add_argument("--start", choices=("starter", "latest"), default=Options.start,
                        help="fine-tune the serving edge, or the starter edge every round (on every sample so far)")
    parser.add_argument("--seed", type=int, default=Options.seed, help="of the questions and the training")
    parser.add_argument("--split", choices=(HELDOUT, DEV), default=Options.split,
                        help="evaluate each round on the held-out questions, or on the development set")
    parser.add_argument("--gate", action=argparse.BooleanOptionalAction, default=Options.gate,
                        help="a retrained edge serves only when no worse on the development questions")
    parser.add_argument("--work", type=Path, default=default_cache_root() / "distill-rounds",
                        help="round figures, samples and models (a rerun resumes from it)")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reports" / "distill_rounds.json")
    args = parser.parse_args(argv)
    configure_logging(json=False, level=args.log_level)
    options = Options(rounds=args.rounds, questions=args.questions, steps=args.steps, epochs=args.epochs,
                      learning_rate=args.learning_rate, replay=args.replay, cloud_model=args.cloud_model,
                      heldout=args.heldout, concurrency=args.concurrency, form=args.form, start=args.start,
                      split=args.split, seed=args.seed, gate=args.gate)
    results = asyncio.run(run(options, args.work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"options": asdict(options), "rounds": [asdict(r) for r in results]}, indent=1)
                        + "\n", encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
