"""Recipes train as a user would: a job on the compute plane (appkit/training_job.py), settings carried by the spec."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from safetensors.torch import load_file

from appkit.training_job import train_cloud_adapter
from cmp.convert import spec_from_settings, train_settings
from netgpt.errors import StartupError
from netgpt.training.trainer import TrainConfig
from netgpt.v1 import common_pb2
from tests.test_training import rows, write_lines

SETTINGS = TrainConfig(method="lora", lora_rank=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
                       max_steps=3, batch_size=2, learning_rate=1e-3, warmup_steps=1, weight_decay=0.01, seed=7,
                       eval_fraction=0.1, threads=1)


def test_a_spec_carries_every_setting_the_trainer_takes() -> None:
    back = TrainConfig(**train_settings(spec_from_settings(asdict(SETTINGS))))  # type: ignore[arg-type]
    assert back == SETTINGS
    assert TrainConfig(**train_settings(spec_from_settings({"method": "full"}))) == TrainConfig(method="full")


@pytest.mark.e2e
async def test_a_recipe_trains_its_adapter_as_a_job_and_gets_the_published_version(tmp_path: Path) -> None:
    data = write_lines(tmp_path / "data.jsonl", rows())
    job, folder = await train_cloud_adapter("tiny", data, asdict(SETTINGS), tmp_path / "adapter")
    assert job.state == common_pb2.TRAINING_STATE_SUCCEEDED and job.step == 3 and job.node_id == "cloud-1"
    assert job.result.kind == common_pb2.MODEL_KIND_LORA_ADAPTER
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (4, 8, ["q_proj", "v_proj"])
    assert load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.e2e
async def test_a_failed_job_is_an_error_naming_it(tmp_path: Path) -> None:
    data = write_lines(tmp_path / "data.jsonl", rows())
    bad = {**asdict(SETTINGS), "target_modules": ["no_such_proj"]}
    with pytest.raises(StartupError, match=r"training job \w+: TRAINING_STATE_FAILED: .*no_such_proj"):
        await train_cloud_adapter("tiny", data, bad, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
