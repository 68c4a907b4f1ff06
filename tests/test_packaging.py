"""The host packaging stays in step with the CLI: every unit and the container run a real command."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("netgpt-*.service"))


def test_there_is_a_unit_per_daemon():
    assert [unit.name for unit in UNITS] == ["netgpt-cloud.service", "netgpt-core.service", "netgpt-edge.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_each_unit_starts_its_daemon_with_a_config_the_parser_accepts(unit: Path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(unit.read_text())
    argv = shlex.split(parser["Service"]["ExecStart"])
    assert argv[0].endswith("/netgpt")
    args = build_parser().parse_args(argv[1:])
    assert args.command == unit.stem.removeprefix("netgpt-") and str(args.config) == "/etc/netgpt/netgpt.toml"
    assert parser["Service"]["KillSignal"] == "SIGTERM"


def test_the_container_runs_the_netgpt_command():
    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert 'ENTRYPOINT ["netgpt"]' in text and "python -m build --wheel" in text
