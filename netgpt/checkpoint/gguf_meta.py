"""What a GGUF file says about itself, read without loading its tensors, with one clear error per problem.

A GGUF file is a header of typed key/value metadata, a tensor index and the tensor data. The
cloud serves LLaMA-architecture models only (its packed forward is LLaMA's), so a file of another
architecture, a file whose data ends early, and a file without a tokenizer are refused here, before
anything is converted, with the file named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netgpt.engine import ModelLoadError
from netgpt.errors import one_line

SERVABLE_ARCHITECTURES = ("llama",)  # PackedLlama: GQA, RoPE, RMSNorm, SwiGLU, tied or untied head
_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
               12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
               32: "BF16"}


@dataclass(frozen=True)
class GgufInfo:
    """The metadata of one GGUF file that an import records in the model's lineage."""

    path: Path
    architecture: str
    name: str
    license: str
    quantization: str  # the file type the weights were quantised to (dequantised to float on import)
    tensor_types: dict[str, int] = field(default_factory=dict)
    has_chat_template: bool = False

    def lineage(self) -> dict[str, str]:
        return {"source_format": "gguf", "source_architecture": self.architecture, "source_name": self.name,
                "quantization": self.quantization, "license": self.license,
                "tensor_types": ",".join(f"{k}:{v}" for k, v in sorted(self.tensor_types.items())),
                "chat_template": "yes" if self.has_chat_template else "no"}


def read_gguf_info(path: Path) -> GgufInfo:
    """Read and check ``path``'s metadata; ModelLoadError naming the file on any problem."""
    import gguf  # numpy-only reader; imported here so the ground floor does not load it at start

    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors on a bad file
        raise ModelLoadError(f"{path} is not a readable GGUF file (truncated or corrupt?): {one_line(exc)}") from exc
    fields = {key: _contents(value) for key, value in reader.fields.items() if not key.startswith("tokenizer.ggml.t")}
    _check_complete(path, reader)
    architecture = str(fields.get("general.architecture", ""))
    if architecture not in SERVABLE_ARCHITECTURES:
        raise ModelLoadError(f"{path} holds a {architecture or 'unnamed'!r} model; the cloud serves "
                             f"{' or '.join(SERVABLE_ARCHITECTURES)}-architecture GGUF files")
    if "tokenizer.ggml.model" not in fields or "tokenizer.ggml.tokens" not in reader.fields:
        raise ModelLoadError(f"{path} carries no tokenizer (tokenizer.ggml.model / tokenizer.ggml.tokens are missing)")
    file_type = fields.get("general.file_type")
    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    quantization = _FILE_TYPES.get(int(file_type), f"file_type {file_type}") if file_type is not None else \
        types.most_common(1)[0][0]
    return GgufInfo(path=path, architecture=architecture, name=str(fields.get("general.name", path.stem)),
                    license=str(fields.get("general.license", "unknown")), quantization=quantization,
                    tensor_types=dict(types), has_chat_template="tokenizer.chat_template" in fields)


def _contents(value: Any) -> Any:
    try:
        return value.contents()
    except Exception:  # a field type the reader cannot render: keep going, it is not one we read
        return None


def _check_complete(path: Path, reader: Any) -> None:
    """The reader maps tensors lazily; a file cut short shows as a tensor that ends past the file."""
    size = path.stat().st_size
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise ModelLoadError(f"{path} is truncated: tensor {tensor.name} ends at byte {end:,} "
                                 f"but the file has {size:,}")
