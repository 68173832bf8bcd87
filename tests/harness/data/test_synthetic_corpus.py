import hashlib
import json
from pathlib import Path

import pytest

from harness.data.synthetic.corpus import plan_corpus, plan_speakers
from harness.data.synthetic.tiers import ENGLISH_VOICES, TIERS, get_tier


@pytest.mark.parametrize("name", list(TIERS))
def test_plan_splits_are_disjoint_and_hold_out_speakers(name):
    tier = get_tier(name)
    plan, speakers = plan_corpus(tier, seed=0)
    texts = {split: {u.text for u in utts} for split, utts in plan.items()}
    for a in texts:
        for b in texts:
            if a < b:
                assert not texts[a] & texts[b], (a, b)
    seen = {u.speaker for u in plan["train"]}
    held = {u.speaker for u in plan["test_held_out"]}
    assert held and not held & seen
    assert {u.speaker for u in plan["test"]} <= seen
    assert all(u.voice == speakers[u.speaker] for utts in plan.values() for u in utts)
    ids = [u.id for utts in plan.values() for u in utts]
    assert len(ids) == len(set(ids))


def test_easy_tier_is_easier_than_standard():
    easy, std = TIERS["easy"], TIERS["standard"]
    assert len(plan_speakers(easy, 0)["train"]) < len(plan_speakers(std, 0)["train"])
    assert easy.rate_wpm[1] - easy.rate_wpm[0] < std.rate_wpm[1] - std.rate_wpm[0]
    assert easy.max_words < std.max_words and easy.vocab_level < std.vocab_level


def test_tier_options_and_errors():
    assert get_tier("easy", hours=0.5).train_hours == 0.5
    two = get_tier("standard", voices=2)
    assert two.voices == ENGLISH_VOICES[:2] and not set(two.held_out_voices) & set(two.voices)
    with pytest.raises(ValueError, match="unknown synthetic tier 'huge'.*allowed: tiny"):
        get_tier("huge")
    with pytest.raises(ValueError, match="hours=-1"):
        get_tier("easy", hours=-1)
    with pytest.raises(ValueError, match="voices=9"):
        get_tier("easy", voices=9)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepared_corpus_contents(tiny_prepared):
    p = tiny_prepared
    assert set(p.splits) == {"train", "dev", "test", "test_held_out"}
    assert p.train_split == "train" and p.valid_split == "dev"
    assert p.test_splits == ["test", "test_held_out"] and p.unit == "word"
    train = list(p.cuts("train"))
    dev = list(p.cuts("dev"))
    assert all(c.has_features and c.num_features == 80 for c in train + dev)
    originals = [c for c in train if "_sp" not in c.id]
    assert len(train) == 3 * len(originals)  # 1.0, 0.9 and 1.1
    assert {c.id for c in train} - {c.id for c in originals} == \
        {f"{c.id}_sp{f}" for c in originals for f in (0.9, 1.1)}
    info = json.loads((p.out_dir / "corpus.json").read_text())
    assert info["tier"]["name"] == "tiny" and info["seed"] == 0
    assert info["vocab_size"] == p.vocab_size <= 500
    assert info["splits"]["train"]["utterances"] == len(originals)


def test_same_seed_same_corpus(tiny_prepared, tmp_path):
    from harness.data import prepare_corpus

    again = prepare_corpus("synthetic", tmp_path / "again", tier="tiny", seed=0, num_jobs=2, progress=False)
    a, b = tiny_prepared.out_dir, again.out_dir
    audio_a, audio_b = _digest(a / "audio"), _digest(b / "audio")
    assert audio_a == audio_b and audio_a
    for split in ("train", "test_held_out"):
        ca = [c.to_dict() for c in tiny_prepared.cuts(split)]
        cb = [c.to_dict() for c in again.cuts(split)]
        assert json.dumps(ca).replace(str(a), "") == json.dumps(cb).replace(str(b), "")
    assert (a / "lang" / "bpe_500.model").read_bytes() == (b / "lang" / "bpe_500.model").read_bytes()


def test_rerun_skips_and_other_options_are_refused(tiny_prepared):
    from harness.data import DataError, prepare_corpus

    cuts = tiny_prepared.splits["train"]
    before = cuts.stat().st_mtime_ns
    again = prepare_corpus("synthetic", tiny_prepared.out_dir, tier="tiny", seed=0, progress=False)
    assert cuts.stat().st_mtime_ns == before and again.splits == tiny_prepared.splits
    with pytest.raises(DataError, match="prepared with other options.*seed"):
        prepare_corpus("synthetic", tiny_prepared.out_dir, tier="tiny", seed=1, progress=False)


def test_variants_come_from_the_wheel_without_non_speech_ones():
    from harness.data.synthetic.corpus import available_variants
    from harness.data.synthetic.tiers import EXCLUDED_VARIANTS, PLAIN_VARIANTS

    variants = available_variants()
    assert len(variants) > 50 and list(variants) == sorted(variants)
    assert not set(variants) & set(EXCLUDED_VARIANTS)
    assert set(PLAIN_VARIANTS) <= set(variants)
    hard = plan_speakers(TIERS["hard"], 0)
    assert len(hard["train"]) == TIERS["hard"].max_train_speakers
    assert {s.split("+")[0] for s in hard["held_out"]} <= set(TIERS["hard"].held_out_voices)
