"""Samplers: index orders for a DataLoader. DistributedSampler gives each rank a disjoint share."""
from __future__ import annotations

import math


def _perm(n, seed=None, generator=None):
    from ...core.factories import randperm
    from ...core.random import Generator
    if seed is not None:
        generator = Generator()
        generator.manual_seed(int(seed))
    return [int(i) for i in randperm(n, generator=generator).numpy()]


class Sampler:
    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation per epoch from ``generator`` (default: vt's global RNG). ``num_samples`` larger than the
    dataset yields whole permutations back to back and then part of one, as PyTorch does."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement!r}")
        if replacement:
            raise NotImplementedError("RandomSampler(replacement=True) is not supported; use replacement=False")
        self.data_source = data_source
        self.replacement = replacement
        self.generator = generator
        self._num_samples = num_samples
        n = self.num_samples
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={n!r}")

    @property
    def num_samples(self):
        # Read the dataset's length each time: it may change between epochs.
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n, k = len(self.data_source), self.num_samples
        if n == 0:
            raise ValueError(f"RandomSampler: can't draw num_samples={k} from an empty data_source")
        for _ in range(k // n):
            yield from _perm(n, generator=self.generator)
        if k % n:
            yield from _perm(n, generator=self.generator)[:k % n]

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DistributedSampler(Sampler):
    """Rank ``rank`` of ``num_replicas`` sees indices ``rank, rank + num_replicas, ...`` of the (shuffled)
    dataset, padded by wrapping (or truncated with ``drop_last``) so every rank has the same count.
    Shuffling uses ``seed + epoch``: call ``set_epoch(epoch)`` each epoch for a new order."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from ... import collectives as _c
            if not _c.is_initialized():
                raise RuntimeError("DistributedSampler: pass num_replicas and rank, or call "
                                   "vt.collectives.init_process_group() first")
            g = _c.default_group()
            if len(g.local_ranks) > 1:
                raise ValueError("DistributedSampler: the default group drives several devices from this process "
                                 "(local backend); pass num_replicas= and rank= explicitly")
            num_replicas = g.size() if num_replicas is None else num_replicas
            rank = g.rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank} for num_replicas={num_replicas}; "
                             f"need 0 <= rank < num_replicas")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed, drop_last, 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        idx = _perm(n, seed=self.seed + self.epoch) if self.shuffle else list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(idx)
            if pad > 0:
                idx += (idx * math.ceil(pad / max(len(idx), 1)))[:pad]
        else:
            idx = idx[:self.total_size]
        return iter(idx[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
