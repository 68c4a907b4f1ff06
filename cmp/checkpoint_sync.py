"""A training job's checkpoints in the core's model store, so the job outlives its node.

The trainer writes ``work/checkpoints/step-N/`` every ``checkpoint_every`` steps; the node's
:class:`CheckpointUploader` publishes each one (a flat tar) as version ``step-N`` of the job's
checkpoint model (:func:`cmp.records.checkpoint_model`), one upload at a time, the newest
waiting one next (an older one still waiting is skipped). The upload is an ordinary
PublishModel, so the core refuses it from a node the job was taken from. A node the job moves to
calls :func:`restore_latest` before training: with no checkpoint of its own in the work folder,
it fetches the newest stored one, and the trainer resumes from it.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from pathlib import Path

import grpc
import structlog

from cmp.node_kit import CoreLink, describe
from cmp.records import CHECKPOINT_FORMAT, checkpoint_model, checkpoint_version
from netgpt.errors import DataLoss
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

log = structlog.get_logger(__name__)

STEP_KEY = "training.step"
# a checkpoint folder of netgpt.training.checkpoints (not imported here: it imports torch): the trainer
# loads optimizer.pt with torch.load(weights_only=True), so unlike a model artifact's pickles
# (cmp.archive refuses those) it runs no code; nothing else is packed or unpacked
FILES = ("weights.safetensors", "optimizer.pt", "state.json")


def pack_checkpoint(folder: Path, out: Path) -> Path:
    """The checkpoint's three files as a flat tar ``out`` (OSError when the trainer dropped the folder)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in FILES:
            tar.add(folder / name, arcname=name, recursive=False)
    return out


def unpack_checkpoint(archive: Path, dest: Path) -> Path:
    """``archive`` into the new folder ``dest``: exactly the checkpoint's files, regular files only."""
    dest.mkdir(parents=True)
    with tarfile.open(archive, "r:") as tar:
        members = tar.getmembers()
        names = sorted(m.name for m in members)
        if names != sorted(FILES) or not all(m.isfile() for m in members):
            raise DataLoss(f"stored checkpoint {archive.name} holds {names[:8]}, not the files {list(FILES)}")
        tar.extractall(dest, members=members, filter="data")
    return dest


class CheckpointUploader:
    """Publishes one job's checkpoints as they are written; never fails the job (a refused or failed
    upload is logged, the next checkpoint tries again)."""

    def __init__(self, core: CoreLink, job_id: str, scratch: Path) -> None:
        self._core = core
        self.job_id = job_id
        self._scratch = scratch
        self._waiting: tuple[Path, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self.uploaded_step = 0  # the newest step in the store (from this node)
        self.refused = ""  # the core's last refusal (FAILED_PRECONDITION: the job is not ours any more)

    def offer(self, folder: Path, step: int) -> None:
        """Upload ``folder`` (checkpoint ``step``) soon; called as the trainer reports each checkpoint."""
        self._waiting = (folder, step)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"checkpoint-upload-{self.job_id}")

    async def close(self) -> None:
        """Stop (an upload in flight is abandoned: the store keeps only complete versions)."""
        self._waiting = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _drain(self) -> None:
        while self._waiting is not None:
            folder, step = self._waiting
            self._waiting = None
            await self._upload(folder, step)

    async def _upload(self, folder: Path, step: int) -> None:
        bound = log.bind(job_id=self.job_id, step=step)
        tar = self._scratch / f"step-{step}.tar"
        try:
            self._scratch.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(pack_checkpoint, folder, tar)
            manifest = cmp_pb2.ModelManifest(
                name=checkpoint_model(self.job_id), version=checkpoint_version(step),
                kind=common_pb2.MODEL_KIND_CHECKPOINT,
                metadata={"format": CHECKPOINT_FORMAT, "lineage.job_id": self.job_id, STEP_KEY: str(step)})
            await self._core.publish(manifest, tar)
            self.uploaded_step = step
            bound.info("training.checkpoint_uploaded", version=manifest.version)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                self.refused = describe(exc)
            bound.warning("training.checkpoint_upload_failed", code=exc.code().name, error=describe(exc))
        except Exception as exc:  # the trainer dropped the folder meanwhile, a full disk: the next one tries
            bound.warning("training.checkpoint_upload_failed", error=describe(exc))
        finally:
            tar.unlink(missing_ok=True)


def _has_checkpoint(root: Path) -> bool:
    return root.is_dir() and any(p.is_dir() for p in root.glob("step-*"))


async def restore_latest(core: CoreLink, job_id: str, checkpoints: Path, scratch: Path) -> int:
    """The job's newest stored checkpoint as ``checkpoints/step-N`` when that folder holds none yet;
    returns N (0: nothing restored: the node has its own, or the store none). A failure is logged and
    the job starts without it (slower, never wrong)."""
    if _has_checkpoint(checkpoints):
        return 0
    bound = log.bind(job_id=job_id)
    try:
        stub = cmp_grpc.ComputePlaneServiceStub(core.channel)
        reply = await stub.ListModelVersions(cmp_pb2.ListModelVersionsRequest(name=checkpoint_model(job_id)),
                                             timeout=30)
        stored = [m for m in reply.manifests if m.metadata.get(STEP_KEY, "").isdigit()]
        if not stored:
            return 0
        newest = max(stored, key=lambda m: int(m.metadata[STEP_KEY]))
        step = int(newest.metadata[STEP_KEY])
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        ref = common_pb2.ModelRef(name=newest.name, version=newest.version, sha256=newest.sha256, kind=newest.kind)
        await core.fetch(ref, scratch / "checkpoint.tar", "training.checkpoint_fetch.retry", job_id=job_id)
        folder = await asyncio.to_thread(unpack_checkpoint, scratch / "checkpoint.tar", scratch / "unpacked")
        checkpoints.mkdir(parents=True, exist_ok=True)
        folder.rename(checkpoints / f"step-{step}")
    except Exception as exc:
        bound.warning("training.checkpoint_restore_failed", error=describe(exc))
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bound.info("training.checkpoint_restored", step=step, version=newest.version)
    return step
