"""Piece hashes of a blob: the sha256 of each fixed-size slice, so bytes fetched from several
sources can be checked range by range (and a source sending bad bytes named) before the
whole blob's sha256 is checked at the end. gRPC-free."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from netgpt.errors import DataLoss
from netgpt.hashing import CHUNK_SIZE

MIN_PIECE = 1 << 20  # 1 MiB: the protocol's chunk
MAX_PIECES = 128  # pieces per blob: the deploy command stays a few KB whatever the size


def piece_size_for(size_bytes: int) -> int:
    """The smallest power-of-two multiple of 1 MiB giving at most MAX_PIECES pieces."""
    piece = MIN_PIECE
    while piece * MAX_PIECES < size_bytes:
        piece *= 2
    return piece


@dataclass(frozen=True)
class Pieces:
    """``size_bytes`` split into ``piece_size`` slices, each with its hex sha256."""

    size_bytes: int
    piece_size: int
    sha256: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sha256)

    def span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of piece ``index``."""
        offset = index * self.piece_size
        return offset, min(self.piece_size, self.size_bytes - offset)

    def check(self, index: int, data: bytes | bytearray | memoryview, source: str) -> None:
        """DATA_LOSS unless ``data`` is exactly piece ``index``."""
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != self.span(index)[1] or digest != self.sha256[index]:
            raise DataLoss(f"piece {index} from {source} has {len(data)} bytes hashing to {digest[:16]}..., "
                           f"expected {self.span(index)[1]} bytes with sha256 {self.sha256[index][:16]}...")


def hash_pieces(path: Path, size_bytes: int, piece_size: int | None = None) -> Pieces:
    """Read ``path`` once and hash it piece by piece; DATA_LOSS when it is shorter than ``size_bytes``."""
    piece_size = piece_size or piece_size_for(size_bytes)
    digests: list[str] = []
    with open(path, "rb") as handle:
        for offset in range(0, size_bytes, piece_size):
            digest, left = hashlib.sha256(), min(piece_size, size_bytes - offset)
            while left:
                block = handle.read(min(CHUNK_SIZE, left))
                if not block:
                    raise DataLoss(f"{path.name} ends before byte {size_bytes}: the file is damaged")
                digest.update(block)
                left -= len(block)
            digests.append(digest.hexdigest())
    return Pieces(size_bytes, piece_size, tuple(digests))
