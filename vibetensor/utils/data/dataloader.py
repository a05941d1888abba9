"""DataLoader: batches from a map-style dataset (single process; batch, shuffle, drop_last, collate)."""
from __future__ import annotations

from .collate import default_collate  # noqa: F401  (re-exported: vt.utils.data.dataloader.default_collate)
from .sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    """PyTorch's ``DataLoader`` signature, run in this process. Worker options (``num_workers``,
    ``prefetch_factor``, ``persistent_workers``, ``multiprocessing_context``) need ``num_workers > 0``, which is
    not supported; ``timeout``, ``worker_init_fn`` and ``in_order`` only affect workers, so they are accepted and
    unused. ``pin_memory`` is accepted and ignored: batches stay in pageable host memory."""

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError(f"DataLoader: num_workers={num_workers} must be >= 0; use num_workers=0")
        if num_workers:
            raise NotImplementedError(f"DataLoader(num_workers={num_workers}): worker processes are not supported; "
                                      "use num_workers=0")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout={timeout} must be >= 0")
        # PyTorch rejects these without workers too, so a port that passes them was already broken there.
        for name, val, default in (("prefetch_factor", prefetch_factor, None),
                                   ("persistent_workers", persistent_workers, False),
                                   ("multiprocessing_context", multiprocessing_context, None)):
            if val != default:
                raise ValueError(f"DataLoader: {name}={val!r} needs num_workers > 0; leave {name} at {default!r}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        self.dataset = dataset
        self.collate_fn = collate_fn or default_collate
        self.num_workers, self.pin_memory, self.pin_memory_device = num_workers, pin_memory, pin_memory_device
        self.timeout, self.worker_init_fn, self.in_order = timeout, worker_init_fn, in_order
        self.generator = generator
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler excludes batch_size, shuffle, sampler and drop_last")
            self.batch_sampler = batch_sampler
            self.sampler = None
            self.batch_size = None
        else:
            if batch_size is None and drop_last:
                raise ValueError("DataLoader: batch_size=None turns batching off, so drop_last=True has no batch "
                                 "to drop; pass drop_last=False or a batch_size")
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
