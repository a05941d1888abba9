"""``vt.utils.data``: Dataset, TensorDataset, samplers (DistributedSampler with set_epoch), DataLoader."""
from .dataset import Dataset, TensorDataset, Subset  # noqa: F401
from .sampler import Sampler, SequentialSampler, RandomSampler, BatchSampler, DistributedSampler  # noqa: F401
from .collate import default_collate  # noqa: F401
from .dataloader import DataLoader  # noqa: F401
