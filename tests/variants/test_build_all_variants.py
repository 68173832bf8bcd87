"""Every registered variant builds with every objective, counts its parameters
part by part, and trains (tiny sizes) on a padded 2-utterance batch."""
from __future__ import annotations

import pytest
import torch

from variants import build_model, get_spec, list_variants
from variants.specs.tiny import TINY_HEADS

torch.set_num_threads(1)

VOCAB = 500
OBJECTIVE_PARTS = {
    "transducer": {"decoder", "joiner", "simple_proj"},
    "ctc": {"ctc_output"},
    "ctc_aed": {"ctc_output", "attention_decoder"},
}
HEAD_PARTS = ("decoder", "joiner", "simple_proj", "ctc_output", "attention_decoder")


def expected_heads(e: int) -> dict[str, int]:
    """Exact head sizes for encoder dim ``e`` (authors' defaults, vocabulary 500)."""
    return {
        "decoder": 260_096,
        "joiner": (e + 1) * 512 + 513 * 512 + 513 * VOCAB,
        "simple_proj": (e + 1) * VOCAB + 513 * VOCAB,
        "ctc_output": (e + 1) * VOCAB,
        # 6 layers: 3 LayerNorms, self-attn 4 x 512^2, cross-attn with k/v from e, ff 2048
        "attention_decoder": 2 * 500 * 512 + 500 + 6 * (
            3 * 1024 + 4 * 262_656 + 2 * 262_656 + 2 * (e * 512 + 512) + 2_099_712),
    }


# (embed + encoder) of each preset; zipformer: the authors' per-part counts; conformer: the authors'
# encoder minus their Linear(d, 500) output layer, which the heads replace
ENCODERS = {
    "zipformer-s": 611_953 + 21_377_826,
    "zipformer-m": 611_953 + 63_382_150,
    "zipformer-l": 611_953 + 146_013_641,
    "conformer-s": 8_690_400,
    "conformer-m": 27_262_464,
    "conformer-l": 121_174_016,
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_param_counts_per_part(name):
    with torch.device("meta"):
        model = build_model(name, ("transducer", "ctc", "attention"))
    parts = model.param_counts()
    assert parts["encoder_embed"] + parts["encoder"] == ENCODERS[name]
    want = expected_heads(model.encoder_dim)
    assert {k: parts[k] for k in HEAD_PARTS} == want
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    paper = get_spec(name).paper_params_m
    for objective, heads in OBJECTIVE_PARTS.items():
        if objective not in paper:
            continue
        total = ENCODERS[name] + sum(want[h] for h in heads)
        assert abs(total / 1e6 - paper[objective]) / paper[objective] < 0.01, (objective, total)


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_PARTS))
def test_objective_builds_only_its_heads(objective):
    with torch.device("meta"):
        model = build_model("conformer-s", objective, num_encoder_layers=1)
    parts = model.param_counts()
    assert {k for k in HEAD_PARTS if parts[k]} == OBJECTIVE_PARTS[objective]


def tiny_overrides(name: str) -> dict:
    """Small sizes keeping the variant's structure and switches: the tiny variants' heads and
    Conformer sizes (``variants/specs/tiny.py``); Zipformer stacks of alternating widths, so
    every stack boundary converts channels."""
    enc = get_spec(name).encoder
    heads = dict(TINY_HEADS)
    if enc.kind == "conformer":
        tiny = get_spec("conformer-tiny").encoder
        encoder = {k: getattr(tiny, k) for k in ("num_encoder_layers", "d_model", "dim_feedforward", "nhead",
                                                 "cnn_module_kernel")}
    else:
        n = len(enc.downsampling_factor)
        encoder = {"num_encoder_layers": (1,) * n, "encoder_dim": tuple(32 + 8 * (i % 2) for i in range(n)),
                   "feedforward_dim": (48,) * n, "encoder_unmasked_dim": (16,) * n,
                   "num_heads": (2,) * n, "cnn_module_kernel": (5,) * n,
                   "query_head_dim": 8, "value_head_dim": 4, "pos_dim": 16}
    return {"encoder": encoder, "heads": heads}


@pytest.mark.parametrize("name", list_variants())
def test_tiny_variant_trains_on_padded_batch(name):
    torch.manual_seed(0)
    model = build_model(name, ("transducer", "ctc", "attention"), **tiny_overrides(name))
    model.train()
    x, x_lens = torch.randn(2, 120, 80), torch.tensor([120, 83])
    out, out_lens = model(x, x_lens)
    assert out.shape == (2, int(out_lens.max()), model.encoder_dim)
    assert int(out_lens[1]) < int(out_lens[0])
    valid = (torch.arange(out.size(1)) < out_lens[:, None]).unsqueeze(-1)

    y = torch.tensor([[0, 3, 4, 5], [0, 7, 8, -1]])
    dec = model.decoder(y)
    logits = model.joiner(out.unsqueeze(2), dec.unsqueeze(1))
    ctc = model.ctc_output(out)
    tokens_in, tokens_lens, targets = model.attention_decoder.make_inputs_and_targets([[3, 4, 5], [7, 8]])
    aed = model.attention_decoder(out, out_lens, tokens_in, tokens_lens)
    loss = ((logits * valid.unsqueeze(2)).logsumexp(-1).mean() - (ctc * valid).mean()
            + torch.nn.functional.cross_entropy(aed.transpose(1, 2), targets, ignore_index=-1)
            + (model.simple_am_proj(out) * valid).mean() + model.simple_lm_proj(dec).mean())
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == [], f"parameters without a gradient: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        a, _ = model(x, x_lens)
        b, _ = model(x, x_lens)
    assert torch.equal(a, b)


def test_unused_bypass_scale_is_a_counted_state_dict_buffer():
    """The authors' never-used vector: in the state_dict (old checkpoints load), not trained,
    but counted as they count it."""
    torch.manual_seed(0)
    model = build_model("zipformer-s", **tiny_overrides("zipformer-s"))
    names = [n for n in model.state_dict() if n.endswith(".unused_bypass_scale")]
    assert len(names) == 6 and all(".layers.0." in n for n in names)
    assert not any(n.endswith("unused_bypass_scale") for n, _ in model.named_parameters())
    extra = sum(model.state_dict()[n].numel() for n in names)
    assert model.param_counts()["total"] == sum(p.numel() for p in model.parameters()) + extra
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[names[0]].fill_(0.25)
    model.load_state_dict(state)
    assert float(model.state_dict()[names[0]][0]) == 0.25
