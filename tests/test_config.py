"""Settings precedence, validation, and the README's config reference staying complete."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from netgpt import config as cfg
from netgpt.errors import StartupError

ROOT = Path(__file__).resolve().parent.parent


def parse(cls: type, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cfg.add_flags(parser, cls)
    return parser.parse_args(argv)


def test_defaults_file_env_flags_precedence(tmp_path: Path):
    path = tmp_path / "netgpt.toml"
    path.write_text('[edge]\ncore = "file:1"\nmax_queue = 3\ncells = ["a", "b"]\ncloud_token_timeout_s = 2\n')
    env = {"NETGPT_EDGE_CORE": "env:2", "NETGPT_EDGE_MAX_CONCURRENCY": "7"}
    args = parse(cfg.EdgeConfig, "--config", str(path), "--max-concurrency", "9", "--edge-tasks", "chat,lookup")
    config = cfg.load(cfg.EdgeConfig, "edge", args, env)
    assert config.core == "env:2"  # env beats file
    assert config.max_concurrency == 9  # flag beats env
    assert config.max_queue == 3 and config.cells == ["a", "b"]  # from the file
    assert config.cloud_token_timeout_s == 2.0 and config.edge_tasks == ["chat", "lookup"]
    assert config.intent_tokens == 12  # default


def test_example_config_loads_for_every_section():
    args = parse(cfg.CoreConfig, "--config", str(ROOT / "examples" / "netgpt.toml"))
    for section, cls in cfg.SECTIONS.items():
        assert isinstance(cfg.load(cls, section, args, {}), cls)


@pytest.mark.parametrize("text, needle", [
    ('[edge]\nmax_queue = "many"\n', "max_queue must be int"),
    ('[edge]\nmax_qeue = 3\n', "unknown key(s) in [edge]: max_qeue"),
    ('[edge\n', "config file"),
])
def test_bad_config_file_is_a_one_line_startup_error(tmp_path: Path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StartupError) as err:
        cfg.load(cfg.EdgeConfig, "edge", parse(cfg.EdgeConfig, "--config", str(path)), {})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [f.name for cls in cfg.SECTIONS.values() for f in dataclasses.fields(cls) if f"`{f.name}`" not in readme]
    assert not missing, f"README config reference lacks: {missing}"


def test_cloud_torch_threads_are_applied_and_a_negative_count_refused():
    import torch

    from cloud_node.daemon import use_threads
    from netgpt.errors import StartupError

    before = torch.get_num_threads()
    try:
        use_threads(1)
        assert torch.get_num_threads() == 1
        use_threads(0)  # torch's default: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(StartupError, match="torch_threads must be 0"):
        use_threads(-1)
