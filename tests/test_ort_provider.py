"""Choosing ONNX Runtime's execution provider is quiet and logged once.

ORT falls back to CPU by itself when its CUDA provider cannot load, but prints a red
error and a warning to stderr for every session it creates; on a machine without CUDA
every daemon start looked broken. The probe must leave stderr alone and say, in one
structlog event, which provider was chosen and why.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from helpers import captured_events

from edge_node.model import ort_engine
from edge_node.model.onnx_export import ensure_onnx_export
from edge_node.model.ort_engine import CPU_EP, CUDA_EP, OrtGpt2Model
from netgpt.engine import ModelLoadError
from netgpt.tiny_models import TinyModels


@pytest.fixture(scope="module")
def gpt2_dir(tiny: TinyModels) -> Path:
    ensure_onnx_export(tiny.gpt2_dir)  # export (torch prints its own warnings) before stderr is watched
    return tiny.gpt2_dir


def _ort_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "onnxruntime" in line or "ExecutionProvider" in line]


def _provider_events(logs: list[dict]) -> list[dict]:
    return [event for event in logs if event["event"] == "ort.provider"]


def _quiet_auto_load(gpt2_dir: Path, capfd: pytest.CaptureFixture[str]) -> tuple[OrtGpt2Model, dict]:
    """Load with providers="auto": nothing from ORT on stderr, exactly one provider event, naming the choice."""
    capfd.readouterr()
    with captured_events() as logs:
        model = OrtGpt2Model.load(gpt2_dir, providers="auto")
    assert _ort_noise(capfd.readouterr().err) == []
    [event] = _provider_events(logs)
    assert event["provider"] == model.provider
    return model, event


def test_auto_provider_probes_quietly_and_logs_its_choice(gpt2_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    model, event = _quiet_auto_load(gpt2_dir, capfd)
    assert event["requested"] == "auto"
    assert event["reason"]
    if model.provider == CPU_EP and CUDA_EP in ort.get_available_providers():
        assert "CUDA" in event["reason"] or "NVIDIA" in event["reason"], event  # says why not the GPU


def test_cuda_attempt_is_silenced_where_a_driver_is_present(gpt2_dir: Path, capfd: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Where an NVIDIA driver exists, ORT is asked for CUDA; if its provider cannot load, that stays quiet too."""
    if CUDA_EP not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider to try")
    monkeypatch.setattr(ort_engine, "_no_cuda_driver", lambda: None)  # as on a GPU machine
    model, event = _quiet_auto_load(gpt2_dir, capfd)
    if model.provider == CPU_EP:
        assert "CUDA provider" in event["reason"], event
    # ORT's own logging is back on for everything else.
    capfd.readouterr()
    ort.InferenceSession(str(model.onnx_path), providers=[CUDA_EP, CPU_EP])
    if model.provider == CPU_EP:
        assert _ort_noise(capfd.readouterr().err), "ORT's logger was left silenced"


def test_cuda_requested_without_cuda_is_a_quiet_load_error(gpt2_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    if ort_engine._cuda_unavailable() is None:
        pytest.skip("an NVIDIA driver and ORT's CUDA provider are present")
    capfd.readouterr()
    with pytest.raises(ModelLoadError, match="CUDA is not usable here"):
        OrtGpt2Model.load(gpt2_dir, providers="cuda")
    assert _ort_noise(capfd.readouterr().err) == []
