"""The edge's learned router as a compute-plane model version (``MODEL_KIND_ROUTER``).

A router version is its weights JSON packed as a tar (``netgpt model publish router.json --kind router``
packs it). It is deployed, verified and rolled back by the same :class:`cmp.deployer.Deployer` as the
edge's GPT-2, in its own slot and folder (``deploy_dir/router``): the JSON is parsed and evaluated once
before the swap (a file that is not a router, names unknown features or gives no probability is refused
with FAILED_PRECONDITION and the old router keeps routing). A swap hands the new router to the
routing policy; a request reads the policy once when it starts, so requests in flight finish with the
router they started with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from cmp.blob_cache import BlobCache
from cmp.deployer import Deployer
from edge_node.serving.learned_router import LearnedRouter, RouterFileError, weights_text
from netgpt.config import EdgeConfig
from netgpt.engine import ModelLoadError
from netgpt.model_slot import ModelSlot, Served
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from node.runtime import deploy_dir

ROUTER_NAME = "learned-router"  # the name an edge advertises for the router it starts with
WEIGHTS_FILE = "learned_router.json"  # inside a router artifact (the CLI packs it under this name)


def starting_router(path: str) -> Served[LearnedRouter]:
    """The router the edge starts with (``router_weights``), advertised by its version and file sha256."""
    text = weights_text(path)
    router = LearnedRouter.parse(text, str(path))
    ref = common_pb2.ModelRef(name=ROUTER_NAME, version=router.version, kind=common_pb2.MODEL_KIND_ROUTER,
                              sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
    return Served(router, ref)


def weights_in(folder: Path) -> Path:
    """The weights file of an unpacked router artifact: ``learned_router.json``, else its only ``*.json``."""
    named = folder / WEIGHTS_FILE
    if named.is_file():
        return named
    found = sorted(p for p in folder.rglob("*.json") if p.is_file())
    if len(found) != 1:
        raise ModelLoadError(f"a router artifact holds one weights JSON ({WEIGHTS_FILE}); found "
                             f"{[p.name for p in found] or 'none'}")
    return found[0]


def load_router(folder: Path, ref: common_pb2.ModelRef) -> LearnedRouter:
    """Parse and evaluate a router version once; ModelLoadError (FAILED_PRECONDITION) naming what is wrong."""
    source = f"router {ref.name} {ref.version}"
    try:
        router = LearnedRouter.parse(weights_in(folder).read_text("utf-8"), source)
        router.check()
    except (RouterFileError, UnicodeDecodeError, OverflowError) as exc:
        raise ModelLoadError(str(exc)) from exc
    return router


def router_deployer(config: EdgeConfig, node_id: str, slot: ModelSlot[LearnedRouter],
                    on_swap: Callable[[Served[LearnedRouter]], None], transport: Transport | None = None,
                    blobs: BlobCache | None = None) -> Deployer[LearnedRouter]:
    """The router's deployer, in ``deploy_dir/router`` with a blob shelf of its own."""
    folder = deploy_dir(config, node_id) / "router"
    return Deployer(slot, common_pb2.MODEL_KIND_ROUTER, load_router, config.core, folder, on_swap, blobs=blobs,
                    node_id=node_id, transport=transport, check=lambda router, ref: None)  # load_router evaluated it
