"""DataLoader: batches from a map-style dataset (single process; batch, shuffle, drop_last, collate)."""
from __future__ import annotations

import numbers

import numpy as np

from ...core.tensor import Tensor
from .sampler import BatchSampler, RandomSampler, SequentialSampler


def default_collate(batch):
    """Stack tensors (and numpy arrays / numbers) along a new first dimension; recurse into
    tuples, lists and dicts."""
    from ...core import factories as F
    from ...core.dispatcher import ops
    e = batch[0]
    if isinstance(e, Tensor):
        return ops.vt.stack(list(batch), 0)
    if isinstance(e, np.ndarray):
        return F.from_numpy(np.stack(batch))
    if isinstance(e, bool):
        return F.tensor(list(batch))
    if isinstance(e, numbers.Integral):
        return F.tensor(list(batch), dtype="int64")
    if isinstance(e, numbers.Real):
        return F.tensor(list(batch), dtype="float64")
    if isinstance(e, dict):
        return {k: default_collate([b[k] for b in batch]) for k in e}
    if isinstance(e, tuple) and hasattr(e, "_fields"):
        return type(e)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(e, (tuple, list)):
        lens = {len(b) for b in batch}
        if len(lens) != 1:
            raise ValueError(f"default_collate: samples have different lengths {sorted(lens)}")
        return [default_collate(list(s)) for s in zip(*batch)]
    if isinstance(e, (str, bytes)):
        return list(batch)
    raise TypeError(f"default_collate: don't know how to batch {type(e).__name__}; pass collate_fn=")


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, generator=None, **kwargs):
        if num_workers:
            raise NotImplementedError("DataLoader(num_workers>0): worker processes are not supported; "
                                      "use num_workers=0")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        self.dataset = dataset
        self.collate_fn = collate_fn or default_collate
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler excludes batch_size, shuffle, sampler and drop_last")
            self.batch_sampler = batch_sampler
            self.sampler = None
            self.batch_size = None
        else:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
            self.sampler = sampler
            self.batch_size = batch_size
            self.batch_sampler = BatchSampler(sampler, batch_size, drop_last) if batch_size is not None else None
        self.drop_last = drop_last

    def __iter__(self):
        if self.batch_sampler is None:
            for i in self.sampler:
                yield self.dataset[i]
            return
        for idx in self.batch_sampler:
            yield self.collate_fn([self.dataset[i] for i in idx])

    def __len__(self):
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)
