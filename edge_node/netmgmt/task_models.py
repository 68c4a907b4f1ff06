"""The edge's network-management models (popularity prediction, intent inference) beside its
prompt-completion GPT-2: one model slot and one deployer per task.

Each task model is a GPT-2 edge artifact like the main one and is published, deployed and rolled
back with the same compute-plane commands. A deploy goes to the task whose served model has the
deploy's model *name* (``gpt2-popularity``, ``gpt2-intent``); a router version (``MODEL_KIND_ROUTER``)
to the learned router's slot (``edge_node.model.router_deploy``); every other deploy goes to the main
model. A rollback undoes the last deploy this node ran, whichever slot it went to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmp.deployer import Deployer
from edge_node.model.deployer import edge_deployer
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.netmgmt.intent_reader import PRETRAINED_INTENT, IntentReader, pretrained_intent_folder
from edge_node.netmgmt.intent_reader import packaged_model_dir as packaged_intent
from edge_node.netmgmt.popularity import PopularityPredictor, ViewLog
from edge_node.netmgmt.popularity import packaged_model_dir as packaged_popularity
from netgpt.config import EdgeConfig
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import StartupError
from netgpt.model_slot import ModelSlot, Served
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from node.runtime import advertise_model
from up.convert import model_ref


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the task: popularity | intent
    model_name: str  # the model name its versions are published under; deploys of it go to this task
    packaged: Callable[[], Path]  # the trained model shipped in the package
    reader: Callable[[LanguageModel], object]  # the task's reader over a model; raises if the model cannot serve it

    def setting(self, config: EdgeConfig) -> str:
        return str(getattr(config, f"{self.name}_model"))


TASKS = (TaskSpec("popularity", "gpt2-popularity", packaged_popularity, PopularityPredictor),
         TaskSpec("intent", "gpt2-intent", packaged_intent, IntentReader))
SPECS = {spec.name: spec for spec in TASKS}


def task_folder(spec: TaskSpec, value: str) -> Path | None:
    """``<task>_model`` → folder: ``packaged`` (the shipped model), a path, or ``none``/empty (task off);
    for intent also ``pretrained``: SmolLM2-135M-Instruct with the shipped intent LoRA adapter merged in
    (merged once, cached; the ONNX export is cached too)."""
    if value in ("", "none"):
        return None
    if spec.name == "intent" and value == PRETRAINED_INTENT:
        try:
            return pretrained_intent_folder()
        except ModelLoadError as exc:
            raise StartupError(f"intent_model = {PRETRAINED_INTENT}: {exc}") from exc
    folder = spec.packaged() if value == "packaged" else Path(value)
    if not (folder / "config.json").is_file():
        raise StartupError(f"{spec.name}_model: {folder} is not a GPT-2 folder (no config.json); "
                           "use packaged, none, or a fine-tuned model's folder")
    return folder


def load_task_models(config: EdgeConfig) -> dict[str, OrtGpt2Model]:
    """The configured task models, exported to ONNX on first use (cached) and opened; blocking."""
    models = {}
    for spec in TASKS:
        folder = task_folder(spec, spec.setting(config))
        if folder is not None:
            models[spec.name] = OrtGpt2Model.load(folder, providers=config.providers, name=spec.model_name,
                                                  quantization="fp32", max_batch=1)
    return models


def load_view_log(config: EdgeConfig) -> ViewLog | None:
    """The view log PredictPopularity reads intervals from (``popularity_log``), or None; blocking."""
    if not config.popularity_log:
        return None
    if config.popularity_interval_s <= 0:
        raise StartupError(f"popularity_interval_s must be > 0, got {config.popularity_interval_s}")
    try:
        return ViewLog.from_csv(Path(config.popularity_log), config.popularity_interval_s)
    except (OSError, ValueError) as exc:
        raise StartupError(f"popularity_log {config.popularity_log}: {exc}") from exc


def task_slots(models: Mapping[str, OrtGpt2Model]) -> dict[str, ModelSlot]:
    return {task: ModelSlot(Served(model, model_ref(model.identity, common_pb2.MODEL_KIND_ONNX_EDGE)))
            for task, model in models.items()}


class TaskDeployers:
    """The main deployer and one per task slot, behind the one ``deploy``/``rollback`` handler."""

    def __init__(self, main: Deployer, tasks: Mapping[str, Deployer], router: Deployer[Any] | None = None) -> None:
        """``router``: the learned router's deployer (None: the edge routes by rules and serves no router)."""
        self.main = main
        self.tasks = dict(tasks)
        self.router = router
        self._last: Deployer[Any] = main  # the deployer of the last deploy: a rollback undoes that one

    def for_model(self, ref: common_pb2.ModelRef) -> Deployer[Any]:
        if ref.kind == common_pb2.MODEL_KIND_ROUTER and self.router is not None:
            return self.router
        return next((d for d in self.tasks.values() if d.slot.current.ref.name == ref.name), self.main)

    def others(self) -> list[Deployer[Any]]:
        """Every deployer but the main one's."""
        return [*self.tasks.values(), *([self.router] if self.router is not None else [])]

    def handle(self, command: cp_pb2.NodeCommand) -> bool:
        if command.WhichOneof("command") == "deploy":
            self._last = self.for_model(command.deploy.model)
        return self._last.handle(command)

    def states(self) -> list[common_pb2.DeploymentState]:
        states = self.main.states()
        for deployer in self.others():
            states.extend(deployer.states())
        return states

    def served(self) -> list[common_pb2.ModelRef]:
        """Main model first: the core reads a node's first served model as the one it serves."""
        return [self.main.slot.current.ref, *(d.slot.current.ref for d in self.others())]

    async def idle(self) -> None:
        for deployer in [self.main, *self.others()]:
            await deployer.idle()

    async def close(self) -> None:
        for deployer in self.others():
            await deployer.close()


def task_deployers(config: EdgeConfig, node_id: str, main: Deployer, slots: Mapping[str, ModelSlot],
                   transport: Transport | None, info: common_pb2.NodeInfo,
                   router: Deployer[Any] | None = None) -> TaskDeployers:
    """A deployer per task slot, in its own folder with its own blob shelf (the main model's shelf is
    the one peers fetch from); after a task model's swap, ``info`` (what the node registers with)
    lists the versions now served."""
    def advertise(_served: Served) -> None:
        advertise_model(info, main.slot.current, result.served())

    deployers = {task: edge_deployer(config, node_id, slot, advertise, transport=transport, sub_dir=task,
                                     check=SPECS[task].reader)
                 for task, slot in slots.items()}
    result = TaskDeployers(main, deployers, router)
    return result
