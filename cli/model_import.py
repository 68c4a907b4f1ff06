"""``netgpt model import PATH``: a GGUF file or a Hugging Face folder → a checkpoint version in the store.

The conversion (``netgpt.checkpoint``) runs here, on the operator's machine, once per source file
(cached by its sha256); the result is packed and published like any folder, with its lineage (source
file, sha256, the quantisation it was dequantised from, license) in the manifest's metadata.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from cli.transfers import human_size, publish_with_progress
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2

NAME_CHARS = re.compile(r"[^a-z0-9._-]+")


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .gguf file (LLaMA architecture), a Hugging Face LLaMA folder, or 'pretrained' "
                                     "(the pinned SmolLM2-135M-Instruct from pretrained.txt)")
    parser.add_argument("--name", default="", help="model name in the store (default: from the file name)")
    parser.add_argument("--version", default="", help="version in the store (default: the source's sha256[:12])")
    parser.add_argument("--license", default="", help="license to record when the source does not say")
    parser.add_argument("--no-publish", action="store_true", help="only convert (and cache); print the folder")


def run_import(args: argparse.Namespace) -> int:
    from cmp.archive import pack_folder
    from netgpt.checkpoint.importer import import_checkpoint
    from netgpt.checkpoint.pretrained import PRETRAINED, pretrained_base

    source = str(args.path)
    print(f"importing {source} ...")
    imported = pretrained_base() if source == PRETRAINED else import_checkpoint(Path(source), license=args.license)
    lineage = imported.lineage
    size = sum(p.stat().st_size for p in imported.folder.iterdir() if p.is_file())
    print(f"{imported.folder}: {human_size(size)}, {'converted' if imported.converted else 'already converted (cache)'}"
          f"; from {lineage.get('source_file')} (sha256 {lineage.get('source_sha256', '')[:12]}, "
          f"{lineage.get('quantization', 'float')}), license {lineage.get('license')}")
    if args.no_publish:
        return 0
    name = args.name or NAME_CHARS.sub("-", Path(source).stem.lower()).strip("-.") or "checkpoint"
    version = args.version or lineage["source_sha256"][:12]
    manifest = cmp_pb2.ModelManifest(name=name, version=version, kind=common_pb2.MODEL_KIND_CHECKPOINT,
                                     metadata={"format": "tar", **lineage})
    with tempfile.TemporaryDirectory(prefix="netgpt-import-") as tmp:
        publish_with_progress(args.core, manifest, pack_folder(imported.folder, Path(tmp) / f"{name}-{version}.tar"))
    return 0
