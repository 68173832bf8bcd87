"""compute_loss on a tiny real Zipformer: head combinations, weights, warm-up, input errors."""
from __future__ import annotations

import pydantic
import pytest
import torch

from harness.losses import (LossConfig, LossInputError, attention_decoder_loss, compute_loss, ctc_loss,
                            k2_available, pad_labels, resolve_rnnt_backend)

FEATS_T = 100  # fbank frames; the tiny Zipformer gives 23 encoder frames (18 for 80)


def _batch():
    torch.manual_seed(1)
    feats = torch.randn(2, FEATS_T, 80)
    feat_lens = torch.tensor([FEATS_T, 80])
    tokens = [[3, 4, 5, 6], [7, 7, 8]]
    return feats, feat_lens, tokens


def test_config_defaults_are_the_authors():
    cfg = LossConfig()
    assert (cfg.prune_range, cfg.lm_scale, cfg.am_scale) == (5, 0.25, 0.0)
    assert (cfg.simple_loss_scale, cfg.warm_step, cfg.label_smoothing) == (0.5, 2000, 0.1)
    assert cfg.head_scales(("ctc", "attention")) == {"ctc": 0.1, "attention": 0.9}
    assert cfg.head_scales(("transducer", "ctc")) == {"ctc": 0.2}
    assert cfg.head_scales(("ctc",)) == {"ctc": 0.2}
    assert LossConfig(ctc_loss_scale=0.3).head_scales(("ctc", "attention")) == {"ctc": 0.3, "attention": 0.9}


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(pydantic.ValidationError, match="prune_rang"):
        LossConfig(prune_rang=4)
    with pytest.raises(pydantic.ValidationError, match="rnnt_backend"):
        LossConfig(rnnt_backend="cuda")
    with pytest.raises(pydantic.ValidationError, match="lm_scale \\+ am_scale"):
        LossConfig(lm_scale=0.7, am_scale=0.5)


def test_warm_up_of_simple_and_pruned_scales():
    cfg = LossConfig()
    assert cfg.transducer_scales(0) == (1.0, 0.1)
    assert cfg.transducer_scales(1000) == pytest.approx((0.75, 0.55))
    assert cfg.transducer_scales(2000) == (0.5, 1.0)
    assert cfg.transducer_scales(10 ** 6) == (0.5, 1.0)


def test_backend_choice():
    assert resolve_rnnt_backend("torch").name == "torch"
    assert resolve_rnnt_backend("auto").name == ("k2" if k2_available() else "torch")
    if not k2_available():
        with pytest.raises(RuntimeError, match="k2 does not import"):
            resolve_rnnt_backend("k2")


def test_transducer_objective_combines_simple_and_pruned(tiny_model):
    model = tiny_model("transducer")
    feats, feat_lens, tokens = _batch()
    cfg = LossConfig(rnnt_backend="torch")
    loss, info = compute_loss(model, feats, feat_lens, tokens, batch_count=500, cfg=cfg, utt_ids=["a", "b"])
    s, p = cfg.transducer_scales(500)
    assert info["rnnt_backend"] == "torch"
    assert info["utterances"] == 2 and info["frames"] == 23 + 18
    assert loss.item() == pytest.approx(s * info["simple_loss"] + p * info["pruned_loss"], rel=1e-5)
    # with a random model the pruned loss sits near T * log(V) per utterance, well above zero
    assert 10 < info["pruned_loss"] < 1000
    loss.backward()
    assert model.joiner.output_linear.weight.grad.abs().sum() > 0
    assert model.simple_am_proj.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_ctc_aed_objective(tiny_model):
    model = tiny_model("ctc_aed")
    feats, feat_lens, tokens = _batch()
    loss, info = compute_loss(model, feats, feat_lens, tokens, batch_count=0)
    assert info["rnnt_backend"] is None and "simple_loss" not in info
    assert loss.item() == pytest.approx(0.1 * info["ctc_loss"] + 0.9 * info["attention_loss"], rel=1e-5)
    loss.backward()
    assert model.attention_decoder.output_layer.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_all_three_heads(tiny_model):
    model = tiny_model(("transducer", "ctc", "attention"))
    feats, feat_lens, tokens = _batch()
    loss, info = compute_loss(model, feats, feat_lens, tokens, batch_count=5000)
    expected = (0.5 * info["simple_loss"] + info["pruned_loss"] + 0.2 * info["ctc_loss"]
                + 0.8 * info["attention_loss"])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ctc_loss_is_torch_ctc_summed():
    torch.manual_seed(2)
    log_probs = torch.randn(2, 6, 5).log_softmax(-1)
    y, y_lens = pad_labels([[1, 2], [3, 3, 4]], 0, "cpu")
    lens = torch.tensor([6, 5])
    per_utt = [torch.nn.functional.ctc_loss(log_probs[b, : lens[b]].unsqueeze(1), y[b: b + 1, : y_lens[b]],
                                            lens[b: b + 1], y_lens[b: b + 1], reduction="sum")
               for b in range(2)]
    assert ctc_loss(log_probs, lens, y, y_lens, 0).item() == pytest.approx(sum(per_utt).item(), rel=1e-6)


def test_attention_loss_is_label_smoothed_cross_entropy(tiny_model):
    dec = tiny_model("ctc_aed").attention_decoder.eval()
    torch.manual_seed(3)
    enc, enc_lens = torch.randn(2, 7, 32), torch.tensor([7, 5])
    tokens = [[1, 2, 3], [4]]
    got = attention_decoder_loss(dec, enc, enc_lens, tokens, label_smoothing=0.1)
    # the authors' formula: target distribution (1 - e) * onehot + e / V, ignored positions dropped
    V, eps, eos = 20, 0.1, dec.eos_id
    total = 0.0
    for b, seq in enumerate(tokens):
        tokens_in = torch.tensor([[dec.sos_id] + seq])
        logp = dec(enc[b: b + 1, : enc_lens[b]], enc_lens[b: b + 1], tokens_in).log_softmax(-1)[0]
        for pos, target in enumerate(seq + [eos]):
            dist = torch.full((V,), eps / V)
            dist[target] += 1 - eps
            total -= float((dist * logp[pos]).sum().detach())
    assert got.item() == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize("tokens, message", [
    ([[3, 4], []], "utterance 'utt-b' has an empty transcript"),
    ([[3, 20], [4]], "utterance 'utt-a': token id 20 at position 1 is outside the vocabulary \\[0, 20\\)"),
    ([[3, 4], [-2]], "utterance 'utt-b': token id -2 at position 0 is outside"),
    ([[0, 4], [5]], "utterance 'utt-a': token id 0 at position 0 is the blank id"),
])
def test_bad_transcripts_name_the_utterance(tiny_model, tokens, message):
    feats, feat_lens, _ = _batch()
    with pytest.raises(LossInputError, match=message):
        compute_loss(tiny_model("transducer"), feats, feat_lens, tokens, 0, utt_ids=["utt-a", "utt-b"])


def test_eos_in_transcript_rejected_with_attention_decoder(tiny_model):
    feats, feat_lens, _ = _batch()
    with pytest.raises(LossInputError, match="utterance 'batch\\[1\\]': token id 1 .* <sos/eos>"):
        compute_loss(tiny_model("ctc_aed"), feats, feat_lens, [[3], [1]], 0)


def test_labels_too_long_for_ctc_name_the_utterance(tiny_model):
    feats, feat_lens, _ = _batch()
    # second utterance: 80 fbank frames -> 18 encoder frames; 10 labels with 9 repeats need 19
    tokens = [[3, 4], [5] * 10]
    with pytest.raises(LossInputError, match="utterance 'short': 10 labels need at least 19 encoder "
                                             "frames for CTC but the encoder produced 18"):
        compute_loss(tiny_model("ctc"), feats, feat_lens, tokens, 0, utt_ids=["long", "short"])
    # the transducer has no such limit (several labels per frame), and its loss stays finite
    loss, _ = compute_loss(tiny_model("transducer"), feats, feat_lens, [[3, 4], [5, 6] * 12], 0)
    assert torch.isfinite(loss)


def test_batch_shape_mismatch(tiny_model):
    feats, feat_lens, tokens = _batch()
    with pytest.raises(LossInputError, match="do not match 3 transcripts"):
        compute_loss(tiny_model("transducer"), feats, feat_lens, tokens + [[1]], 0)
    with pytest.raises(LossInputError, match="3 utterance ids for 2 transcripts"):
        compute_loss(tiny_model("transducer"), feats, feat_lens, tokens, 0, utt_ids=["a", "b", "c"])


def test_unsupported_head_combination_is_named():
    with pytest.raises(ValueError, match=r"unsupported head combination \['attention'\]; allowed: "):
        LossConfig().head_scales(("attention",))
