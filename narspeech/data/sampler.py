"""Length-bucketed batch sampler with a cap on padded frames per batch; DDP-aware and resumable mid-epoch."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length items whose padded size ``max_len * batch_size`` stays within ``max_frames``.

    Items are sorted by length (with a little seeded noise so batches change across epochs), cut into batches, and
    the batch order is shuffled with ``(seed, epoch)``. Under DDP every rank gets the same number of batches
    (``batches[rank::world_size]``, the few left over dropped), so no rank waits forever in an all-reduce.
    ``start_batch`` skips the first batches of the epoch (resuming a run killed mid-epoch).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        length_noise: float = 0.1,
    ) -> None:
        if max_frames <= 0:
            raise ValueError("max_frames must be positive")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.length_noise = length_noise
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100003 + self.epoch)
        if self.shuffle:
            keys = [n * (1.0 + self.length_noise * rng.random()) for n in self.lengths]
        else:
            keys = list(self.lengths)
        order = sorted(range(len(self.lengths)), key=lambda i: keys[i])
        batches: list[list[int]] = []
        cur: list[int] = []
        cur_max = 0
        for i in order:
            n = max(1, self.lengths[i])
            if cur and max(cur_max, n) * (len(cur) + 1) > self.max_frames:
                batches.append(cur)
                cur, cur_max = [], 0
            cur.append(i)
            cur_max = max(cur_max, n)
        if cur:
            batches.append(cur)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1:
            usable = len(batches) - len(batches) % self.num_replicas
            if usable == 0:
                raise ValueError(f"{len(batches)} batches cannot be shared by {self.num_replicas} ranks; lower max_frames")
            batches = batches[self.rank : usable : self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(0, len(self._all_batches()) - self.start_batch)
