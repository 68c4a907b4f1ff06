"""Deployable artifacts as tar archives: packed deterministically, unpacked without trust.

A deployable model is a folder (the edge's ONNX export with its tokenizer and config, or a
LoRA adapter), but the store and the transfer deal in single files, so it travels as one
uncompressed tar (weights do not compress; plain tar unpacks at disk speed). Packing is
deterministic (sorted names, zero times and owners): the same folder always has the same
sha256, so the store keeps it once.

Unpacking trusts nothing: tarfile's ``data`` filter refuses absolute paths, ``..``, links
leaving the folder and device files; pickled weights (``*.bin``, ``*.pt``, ...) are refused
outright, because unpickling runs code (safetensors only); the unpacked size must fit the disk.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from collections.abc import Iterable
from pathlib import Path

from netgpt.engine import ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
FREE_SPACE_MARGIN = 64 << 20


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def refuse_pickles(names: Iterable[str], where: str) -> None:
    pickled = sorted(n for n in names if is_pickle(n))
    if pickled:
        raise ModelLoadError(f"{where} holds pickled weights {pickled[:3]}: refused (unpickling runs code); "
                             "use safetensors")


def pack(files: dict[str, Path], out: Path) -> Path:
    """Write ``{name in archive: file}`` to the tar ``out`` (through a temporary file); returns ``out``."""
    refuse_pickles(files, "the artifact")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size = files[name].stat().st_size
                info.mode = 0o644
                with open(files[name], "rb") as handle:
                    tar.addfile(info, handle)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def pack_folder(folder: Path, out: Path) -> Path:
    """Every regular file directly in ``folder`` (an adapter folder, say) into the tar ``out``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a folder")
    files = {p.name: p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    if not files:
        raise ModelLoadError(f"{folder} holds no files to pack")
    return pack(files, out)


def unpack(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into the new folder ``dest``; returns the model folder inside it.

    An archive whose files all sit in one top-level folder (``tar cf a.tar lora/``) gives
    that folder. ModelLoadError for an unreadable or unsafe archive; ``dest`` is then removed.
    """
    dest = Path(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            refuse_pickles((m.name for m in members), f"artifact {archive.name}")
            size = sum(m.size for m in members if m.isfile())
            free = shutil.disk_usage(dest).free
            if size + FREE_SPACE_MARGIN > free:
                raise ModelLoadError(f"artifact unpacks to {size >> 20} MiB; {free >> 20} MiB free at {dest}")
            tar.extractall(dest, filter="data")
    except ModelLoadError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ModelLoadError(f"artifact {archive.name} is not a safe, readable tar archive: {exc}") from exc
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest
