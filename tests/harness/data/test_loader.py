import pytest
import torch
from lhotse import load_manifest

from harness.data import batch_cut_ids, batch_lengths, batch_texts, make_dataloader
from harness.data.loader import SPEC_AUGMENT, spec_augment


def _batches(loader):
    return list(loader)


def test_eval_batches_cover_the_split_once(tiny_prepared):
    path = tiny_prepared.splits["dev"]
    batches = _batches(make_dataloader(path, max_duration=8.0, train=False))
    ids = [i for b in batches for i in batch_cut_ids(b)]
    cuts = {c.id: c for c in load_manifest(path)}
    assert sorted(ids) == sorted(cuts)
    for b in batches:
        x, lens = b["inputs"], batch_lengths(b)
        assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[2] == 80
        assert lens.dtype == torch.long and lens.max() == x.shape[1]
        assert sum(cuts[i].duration for i in batch_cut_ids(b)) <= 8.0
        for i, n, text in zip(batch_cut_ids(b), lens.tolist(), batch_texts(b)):
            assert n == cuts[i].num_frames and text == cuts[i].supervisions[0].text


def test_padding_is_beyond_lengths(tiny_prepared):
    b = next(iter(make_dataloader(tiny_prepared.splits["train"], max_duration=30.0, train=False)))
    lens = batch_lengths(b)
    cuts = {c.id: c for c in load_manifest(tiny_prepared.splits["train"])}
    for row, (cid, n) in enumerate(zip(batch_cut_ids(b), lens.tolist())):
        feats = torch.from_numpy(cuts[cid].load_features())
        assert torch.allclose(b["inputs"][row, :n], feats)


def test_training_applies_spec_augment_and_shuffles_by_seed(tiny_prepared):
    path = tiny_prepared.splits["train"]
    plain = {i: x for b in make_dataloader(path, 30.0, train=True, spec_augment=False, seed=1)
             for i, x in zip(batch_cut_ids(b), b["inputs"])}
    aug = [b for b in make_dataloader(path, 30.0, train=True, seed=1)]
    assert aug and any(not torch.equal(x, plain[i]) for b in aug for i, x in zip(batch_cut_ids(b), b["inputs"]))
    order = lambda seed: [i for b in make_dataloader(path, 30.0, train=True, spec_augment=False, seed=seed)
                          for i in batch_cut_ids(b)]
    assert order(1) == order(1) and order(1) != order(2)


def test_ranks_get_disjoint_batches(tiny_prepared):
    path = tiny_prepared.splits["train"]
    ranks = [{i for b in make_dataloader(path, 20.0, train=True, world_size=2, rank=r) for i in batch_cut_ids(b)}
             for r in (0, 1)]
    assert ranks[0] and ranks[1] and not ranks[0] & ranks[1]


def test_on_the_fly_features_and_workers_match_precomputed(tiny_prepared):
    path = tiny_prepared.splits["test"]
    pre = next(iter(make_dataloader(path, 100.0, train=False)))
    fly = next(iter(make_dataloader(path, 100.0, train=False, on_the_fly_features=True, num_workers=1)))
    assert batch_cut_ids(pre) == batch_cut_ids(fly)
    assert torch.equal(batch_lengths(pre), batch_lengths(fly))
    # lilcom storage is lossy; fbank values are log-energies of magnitude ~10
    diff = (pre["inputs"] - fly["inputs"]).abs()
    assert diff.mean() < 0.05 and diff.max() < 1.5


def test_authors_spec_augment_settings():
    sa = spec_augment()
    assert (sa.time_warp_factor, sa.features_mask_size, sa.num_feature_masks, sa.frames_mask_size) == \
        (80, 27, 2, 100)
    assert sa.num_frame_masks in (SPEC_AUGMENT["num_frame_masks"], 2)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_duration": 0}, "max_duration"), ({"num_workers": -1}, "num_workers"),
    ({"world_size": 2, "rank": 2}, "rank=2"),
])
def test_bad_arguments_are_named(tiny_prepared, kwargs, match):
    args = {"max_duration": 10.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_dataloader(tiny_prepared.splits["dev"], train=False, **args)


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jsonl.gz"):
        make_dataloader(tmp_path / "nothing.jsonl.gz", 10.0, train=False)
