"""Batches with positives and negatives at 1:1 (ROSALIA's ``--batch_balance``), resumable mid-epoch.

An epoch visits every positive once, each followed by a negative; negatives are drawn from
reshuffled passes over the negative pool. Orders derive from (seed, epoch) only, so a saved
``state_dict`` (epoch, batch index) reproduces the remaining batches exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BalancedBatchSampler(Sampler[list[int]]):
    """Yield index batches interleaving positives and negatives (p, n, p, n, ...).

    Even batch sizes hold exactly half of each; odd sizes alternate the extra one. With
    ``world_size`` > 1, batch i goes to rank ``i % world_size`` and every rank gets the same count.
    The trainer calls :meth:`advance` after each consumed batch; prefetching loaders do not move it.
    """

    def __init__(
        self,
        positive_indices: Sequence[int],
        negative_indices: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if not positive_indices:
            raise ValueError("BalancedBatchSampler: the dataset has no positive samples.")
        if not negative_indices:
            raise ValueError("BalancedBatchSampler: the dataset has no negative samples; 1:1 balance is impossible.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.positives = np.asarray(positive_indices, dtype=np.int64)
        self.negatives = np.asarray(negative_indices, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.seed, self.rank, self.world_size, self.drop_last = int(seed), int(rank), int(world_size), bool(drop_last)
        self.epoch = 0
        self.batch_index = 0

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        pos = rng.permutation(self.positives)
        passes = -(-len(pos) // len(self.negatives))
        neg = np.concatenate([rng.permutation(self.negatives) for _ in range(passes)])[: len(pos)]
        stream = np.empty(2 * len(pos), dtype=np.int64)
        stream[0::2], stream[1::2] = pos, neg
        batches = [stream[i : i + self.batch_size].tolist() for i in range(0, len(stream), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        usable = len(batches) - len(batches) % self.world_size if self.world_size > 1 else len(batches)
        return batches[:usable][self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._epoch_batches(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._epoch_batches(self.epoch)[self.batch_index :]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch, self.batch_index = int(epoch), 0

    def advance(self, batches: int = 1) -> None:
        """Record that ``batches`` more batches of the current epoch were trained on."""
        self.batch_index += int(batches)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "batch_index": self.batch_index}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"Sampler state was saved with seed {state['seed']}, this sampler uses {self.seed}.")
        self.epoch, self.batch_index = int(state["epoch"]), int(state["batch_index"])
