"""An LRU cache of frozen-encoder outputs, keyed by image identity.

One chest X-ray usually carries several instructions; its SAM and vision-tower embeddings do
not depend on the instruction, so each image is encoded once and reused.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from monai_ils.models import EncodedImages


def image_key(image) -> str:
    """A key that changes when the image changes.

    Paths: resolved path + modification time + size (no need to read the file). Arrays, tensors
    and PIL images: a BLAKE2 digest of the pixels, shape and dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).resolve()
        try:
            st = path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"Image file not found: {image}") from None
        return f"path:{path}:{st.st_mtime_ns}:{st.st_size}"
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(f"{array.shape}{array.dtype}".encode())
    return "pixels:" + digest.hexdigest()


class EmbeddingCache:
    """Least-recently-used store of one-image :class:`EncodedImages`; ``max_items=0`` disables it."""

    def __init__(self, max_items: int = 64) -> None:
        if int(max_items) < 0:
            raise ValueError(f"EmbeddingCache: max_items must be >= 0, got {max_items}.")
        self.max_items = int(max_items)
        self._store: OrderedDict[str, EncodedImages] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> EncodedImages | None:
        entry = self._store.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._store.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: str, encoded: EncodedImages) -> None:
        if self.max_items == 0:
            return
        if len(encoded) != 1:
            raise ValueError(f"EmbeddingCache stores one image per key, got a batch of {len(encoded)}.")
        self._store[key] = encoded
        self._store.move_to_end(key)
        while len(self._store) > self.max_items:
            self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def stats(self) -> dict:
        return {"items": len(self), "max_items": self.max_items, "hits": self.hits, "misses": self.misses}
