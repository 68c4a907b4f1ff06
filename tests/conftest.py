"""Shared fixtures: an isolated model cache, tiny models, and loopback servers on ephemeral ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netgpt.logs import configure_logging


@pytest.fixture(scope="session", autouse=True)
def netgpt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test run builds its own tiny models and ONNX exports unless CI points at a cache."""
    path = Path(os.environ.get("NETGPT_CACHE_DIR") or tmp_path_factory.mktemp("netgpt-cache"))
    os.environ["NETGPT_CACHE_DIR"] = str(path)
    os.environ["NETGPT_DATA_DIR"] = str(tmp_path_factory.mktemp("netgpt-data"))  # profiles of daemon tests
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))  # default core store + state: never ~
    configure_logging(json=True, level=os.environ.get("NETGPT_TEST_LOG", "warning"))
    from throwaway_ca import operator

    from netgpt.channels import set_default_transport

    set_default_transport(operator())  # the suite's clients call as the operator unless a test says otherwise
    return path


@pytest.fixture(scope="session")
def tiny(netgpt_cache: Path):
    from netgpt.tiny_models import ensure_tiny_models

    return ensure_tiny_models()


@pytest.fixture(scope="session")
def models(netgpt_cache: Path):
    """(edge GPT-2 on ONNX Runtime, cloud LLaMA on torch): the trained starter models, loaded once per run."""
    from appkit.all_in_one import load_models

    return load_models("starter", "starter")


@pytest.fixture(scope="session")
def tiny_models(tiny):
    """The same pair with random weights, for plumbing tests that need the tiny architecture (e.g. an
    adapter built for the tiny LLaMA)."""
    from appkit.all_in_one import load_models

    return load_models("tiny", "tiny")


@pytest.fixture(scope="module")
async def cluster(models):
    from harness import start_cluster

    running = await start_cluster(*models, heartbeat_interval_s=0.3)
    yield running
    await running.stop()


@pytest.fixture
async def core(tmp_path: Path):
    """A core controller on an ephemeral loopback port with a fast heartbeat and its own model store."""
    from throwaway_ca import tls

    from core.daemon import start_core
    from netgpt.config import CoreConfig

    handle = await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", heartbeat_interval_s=0.2,
                                         store_dir=str(tmp_path / "store")))
    yield handle
    await handle.stop(0)


@pytest.fixture
async def core_channel(core):
    from netgpt.channels import open_channel

    async with open_channel(core.address) as channel:
        yield channel


@pytest.fixture(scope="session")
def pg_server() -> Iterator:
    """One throw-away PostgreSQL 15 server for the run (tests/pg_server.py); skips where it cannot start."""
    from pg_server import PgUnavailable, local_postgres

    try:
        with local_postgres() as server:
            yield server
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def pg_url(pg_server) -> Iterator[str]:
    """A fresh, empty database on the run's server, dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def core_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], object]]:
    """Opens the core's database again at each call, as a restarted core would: None for memory (the test
    keeps its memory stores), the core's SQLite file, or a PostgreSQL database of the test's own."""
    from core.state import STATE_FILE, open_db, open_pg

    opened: list = []
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""

    def open_again():
        if request.param == "memory":
            return None
        opened.append(open_pg(url) if url else open_db(tmp_path / STATE_FILE))
        return opened[-1]

    yield open_again
    for db in opened:
        db.close()
