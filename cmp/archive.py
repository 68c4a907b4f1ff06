"""Deployable artifacts as tar archives: packed deterministically, unpacked without trust.

A deployable model is a folder (the edge's ONNX export with its tokenizer and config, or a
LoRA adapter), but the store and the transfer deal in single files, so it travels as one
uncompressed tar (weights do not compress; plain tar unpacks at disk speed). Packing is
deterministic (sorted names, zero times and owners): the same folder always has the same
sha256, so the store keeps it once.

Unpacking trusts nothing: tarfile's ``data`` filter refuses absolute paths, ``..``, links
leaving the folder and device files; pickled weights (``*.bin``, ``*.pt``, ...) are refused
outright, because unpickling runs code (safetensors only). Compressed archives are refused (a
1.6 MiB gzip unpacked to 1 GiB on an edge), and so are sparse members: the files unpacked never
add up to more than the archive itself, whose size and sha256 the manifest fixed; and they must fit
the disk.
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
COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
                     b"PK\x03\x04": "zip"}


def compression_of(archive: Path) -> str | None:
    """The compression format ``archive`` starts with, or None for anything else (a plain tar)."""
    try:
        with open(archive, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None  # unpack reports the unreadable archive
    return next((name for magic, name in COMPRESSION_MAGIC.items() if head.startswith(magic)), None)


def check_members(members: list[tarfile.TarInfo], archive: Path) -> int:
    """The bytes ``members`` unpack to; ModelLoadError when that exceeds the archive's own size (only
    compression or sparse files do that) or a member is sparse."""
    sparse = [m.name for m in members if m.issparse()]
    if sparse:
        raise ModelLoadError(f"artifact {archive.name} holds sparse files {sparse[:3]}: refused")
    size = sum(m.size for m in members if m.isfile())
    if size > archive.stat().st_size:
        raise ModelLoadError(f"artifact {archive.name} claims {size} bytes of files in a "
                             f"{archive.stat().st_size}-byte archive: refused")
    return size


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
    dest, archive = Path(dest), Path(archive)
    compression = compression_of(archive)
    if compression is not None:
        raise ModelLoadError(f"artifact {archive.name} is {compression}-compressed: refused (artifacts are plain "
                             "tar; a compressed one could unpack to far more than its manifest says)")
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            refuse_pickles((m.name for m in members), f"artifact {archive.name}")
            size = check_members(members, archive)
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
