"""Training-time data loading, as in the authors' recipes.

lhotse's ``DynamicBucketingSampler`` (batches by total duration) feeding
``K2SpeechRecognitionDataset`` (which does not need k2), SpecAugment with the
authors' settings on training batches, precomputed or on-the-fly fbank, and
worker processes.
"""
from __future__ import annotations

import inspect
import os
import random
from itertools import islice
from pathlib import Path

import torch

from .features import fbank_extractor, require_lhotse

#: the authors' SpecAugment settings (icefall asr_datamodule)
SPEC_AUGMENT = {"time_warp_factor": 80, "num_frame_masks": 10, "features_mask_size": 27,
                "num_feature_masks": 2, "frames_mask_size": 100}
NUM_BUCKETS = 30


def spec_augment():
    """lhotse SpecAugment with the authors' settings (10 frame masks, or 2 on
    lhotse versions whose default is 1, as the authors' code does)."""
    from lhotse.dataset import SpecAugment

    kwargs = dict(SPEC_AUGMENT)
    if inspect.signature(SpecAugment.__init__).parameters["num_frame_masks"].default == 1:
        kwargs["num_frame_masks"] = 2
    return SpecAugment(**kwargs)


class _SeedWorker:
    """Seeds each worker's RNGs from a base seed (SpecAugment draws from them)
    and keeps each worker to one thread (workers are the parallelism)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, worker_id: int) -> None:
        s = self.seed + 1000 * worker_id
        torch.set_num_threads(1)
        random.seed(s)
        torch.manual_seed(s)
        import numpy as np

        np.random.seed(s % 2**32)


def _as_cutset(cuts):
    from lhotse import CutSet, load_manifest_lazy

    if isinstance(cuts, (str, os.PathLike)):
        path = Path(cuts)
        if not path.is_file():
            raise FileNotFoundError(f"no cut manifest at {path}")
        return load_manifest_lazy(path)
    if not isinstance(cuts, CutSet):
        raise TypeError(f"cuts must be a CutSet or a manifest path, got {type(cuts).__name__}")
    return cuts


def make_dataloader(cuts, max_duration: float, train: bool, spec_augment: bool | None = None,
                    num_workers: int = 0, seed: int = 0, world_size: int = 1, rank: int = 0,
                    shuffle: bool | None = None, on_the_fly_features: bool = False,
                    num_buckets: int = NUM_BUCKETS, drop_last: bool | None = None
                    ) -> torch.utils.data.DataLoader:
    """A DataLoader of K2SpeechRecognitionDataset batches.

    Each batch: ``batch["inputs"]`` (B, T, 80) float fbank; ``batch["supervisions"]``
    with "text", "cut", "sequence_idx", "start_frame", "num_frames" (see
    :func:`batch_lengths`, :func:`batch_texts`, :func:`batch_cut_ids`).
    ``spec_augment``, ``shuffle`` and ``drop_last`` default to ``train``. For
    a new epoch call ``loader.sampler.set_epoch(epoch)``. ``num_buckets`` is
    lowered for small sets (see :func:`_buckets_for`).
    """
    require_lhotse()
    from lhotse.dataset import (DynamicBucketingSampler, K2SpeechRecognitionDataset,
                                PrecomputedFeatures, SimpleCutSampler)
    from lhotse.dataset.input_strategies import OnTheFlyFeatures

    if max_duration <= 0:
        raise ValueError(f"max_duration={max_duration} must be > 0 seconds")
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be >= 0")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    cuts = _as_cutset(cuts)
    num_buckets = _buckets_for(cuts, max_duration, num_buckets)
    spec_augment = train if spec_augment is None else spec_augment
    shuffle = train if shuffle is None else shuffle
    drop_last = train if drop_last is None else drop_last
    strategy = OnTheFlyFeatures(fbank_extractor()) if on_the_fly_features else PrecomputedFeatures()
    dataset = K2SpeechRecognitionDataset(
        input_strategy=strategy,
        input_transforms=[spec_augment_transform()] if spec_augment else [],
        return_cuts=True)
    if num_buckets >= 2:
        sampler = DynamicBucketingSampler(
            cuts, max_duration=max_duration, shuffle=shuffle, num_buckets=num_buckets,
            buffer_size=num_buckets * 2000, drop_last=drop_last,
            world_size=world_size, rank=rank, seed=seed)
    else:  # too little audio to bucket
        sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=shuffle,
                                   drop_last=drop_last, world_size=world_size, rank=rank, seed=seed)
    return torch.utils.data.DataLoader(
        dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
        persistent_workers=False, worker_init_fn=_SeedWorker(seed) if num_workers else None)


spec_augment_transform = spec_augment

PEEK_CUTS = 20000


def _buckets_for(cuts, max_duration: float, num_buckets: int) -> int:
    """Buckets such that each holds at least 4 batches of audio and 10 cuts.

    With ``drop_last`` every bucket drops its last, incomplete batch, so on a
    small corpus (the synthetic one) 30 buckets would drop much of the data.
    Only the first :data:`PEEK_CUTS` cuts are read: beyond that the corpus is
    large and ``num_buckets`` stands. Below 2 buckets no bucketing is used.
    """
    count, seconds = 0, 0.0
    for cut in islice(cuts, PEEK_CUTS):
        count += 1
        seconds += cut.duration
    if count == 0:
        raise ValueError("make_dataloader: the cut set is empty")
    if count == PEEK_CUTS:
        return num_buckets
    return min(num_buckets, count // 10, int(seconds // (4 * max_duration)))


def batch_lengths(batch: dict) -> torch.Tensor:
    """Valid frames of each row of ``batch["inputs"]`` (LongTensor of shape (B,))."""
    sup = batch["supervisions"]
    num_frames = torch.as_tensor(sup["num_frames"], dtype=torch.long)
    order = torch.as_tensor(sup["sequence_idx"], dtype=torch.long)
    if order.numel() != batch["inputs"].shape[0] or not torch.equal(order, torch.arange(order.numel())):
        raise ValueError("batch_lengths needs one supervision per cut, in batch order "
                         "(prepared cuts are trimmed to their supervisions)")
    return num_frames + torch.as_tensor(sup["start_frame"], dtype=torch.long)


def batch_texts(batch: dict) -> list[str]:
    """Transcript of each row, in batch order."""
    return list(batch["supervisions"]["text"])


def batch_cut_ids(batch: dict) -> list[str]:
    """Cut id of each row, in batch order."""
    return [c.id for c in batch["supervisions"]["cut"]]


def batch_speakers(batch: dict) -> list[str]:
    """Speaker of each row (its cut's first supervision's), in batch order; '' where none is named."""
    out = []
    for c in batch["supervisions"]["cut"]:
        sups = getattr(c, "supervisions", None) or []
        spk = sups[0].speaker if sups else None
        out.append("" if spk is None else str(spk))
    return out
