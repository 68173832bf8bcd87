"""The authors' checkpoint layout (committed manifest of their names and shapes) in and out."""
import json
from pathlib import Path

import pytest
import torch

from variants import build_model
from variants.interop import (IcefallCheckpointError, export_icefall_state_dict, icefall_to_ours,
                              load_icefall_checkpoint, ours_to_icefall, resolve_icefall_checkpoint)
from variants.interop.icefall import check_keys

MANIFEST = json.loads((Path(__file__).resolve().parents[3] / "variants" / "interop"
                       / "icefall_manifest.json").read_text())
SCALES = {"S": "zipformer-s", "M": "zipformer-m", "L": "zipformer-l"}
OBJECTIVES = {("transducer",): "transducer", ("ctc",): "ctc", ("ctc", "attention"): "ctc_aed",
              ("transducer", "ctc"): ("transducer", "ctc"),
              ("transducer", "ctc", "attention"): ("transducer", "ctc", "attention")}


def their_shapes(scale: str, heads) -> dict[str, tuple[int, ...]]:
    """Expand the manifest: every parameter name of their model and its shape."""
    out = {}
    for group in ("encoder", *heads):
        for template, (n, shape) in MANIFEST["scales"][scale][group].items():
            names = [template.format(i) for i in range(n)] if "{}" in template else [template]
            assert len(names) == n
            out.update({name: tuple(shape) for name in names})
    return out


def synthetic(scale: str, heads, device="cpu", seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if device == "meta":
        return {k: torch.empty(s, device="meta") for k, s in their_shapes(scale, heads).items()}
    return {k: torch.randn(s, generator=g) for k, s in their_shapes(scale, heads).items()}


@pytest.mark.parametrize("scale", list(SCALES))
def test_manifest_parameter_counts_equal_ours(scale):
    n = MANIFEST["scales"][scale]["num_params"]
    for heads in (("transducer",), ("ctc",), ("ctc", "attention")):
        assert sum(torch.Size(s).numel() for s in their_shapes(scale, heads).values()) == \
            n["encoder"] + sum(n[h] for h in heads)
    with torch.device("meta"):
        ours = build_model(SCALES[scale], ("transducer", "ctc", "attention")).param_counts()
    assert ours["encoder_embed"] + ours["encoder"] == n["encoder"]
    assert ours["decoder"] + ours["joiner"] + ours["simple_proj"] == n["transducer"]
    assert ours["ctc_output"] == n["ctc"] and ours["attention_decoder"] == n["attention"]


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("heads", list(OBJECTIVES))
def test_every_name_and_shape_maps_onto_our_model(scale, heads):
    sd = synthetic(scale, heads, device="meta")
    imp = resolve_icefall_checkpoint({"model": sd})
    assert imp.variant == SCALES[scale]
    assert imp.objective == OBJECTIVES[heads]
    assert imp.overrides == {}  # their defaults are our defaults
    with torch.device("meta"):
        model = imp.build()
    check_keys(model, imp.state_dict)  # raises on any missing / unknown / mis-shaped key
    ours = model.state_dict()
    assert len(ours) == len(sd)
    for k in sd:
        assert ours_to_icefall(icefall_to_ours(k)) == k
        assert tuple(ours[icefall_to_ours(k)].shape) == tuple(sd[k].shape)


def test_every_parameter_lands_where_the_mapping_says():
    heads = ("transducer", "ctc", "attention")
    sd = synthetic("S", heads)
    model = load_icefall_checkpoint({"model": sd})
    assert model.head_names == heads and not model.training
    ours = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(ours[icefall_to_ours(k)], v), k
    # the six renames, spot-checked by name
    for theirs, mine in (("encoder_embed.conv.4.weight", "encoder_embed.conv.3.weight"),
                         ("encoder_embed.conv.7.bias", "encoder_embed.conv.6.bias"),
                         ("encoder.encoders.1.encoder.layers.0.bypass_scale",
                          "encoder.encoders.1.encoder.layers.0.unused_bypass_scale"),
                         ("encoder.encoders.0.layers.1.nonlin_attention.in_proj.weight",
                          "encoder.encoders.0.layers.1.nonlinear_attention.in_proj.weight"),
                         ("ctc_output.1.weight", "ctc_output.linear.weight"),
                         ("attention_decoder.decoder.layers.5.src_attn.linear_k.weight",
                          "attention_decoder.layers.5.src_attn.linear_k.weight"),
                         ("joiner.encoder_proj.weight", "joiner.encoder_proj.weight"),
                         ("simple_am_proj.weight", "simple_am_proj.weight")):
        assert torch.equal(ours[mine], sd[theirs])


def test_import_of_export_is_the_identity():
    torch.manual_seed(3)
    model = build_model("zipformer-s", "ctc_aed", **{"heads.vocab_size": 37, "heads.blank_id": 0})
    for p in model.parameters():
        torch.nn.init.normal_(p)
    theirs = export_icefall_state_dict(model)
    assert set(theirs) == set(their_shapes("S", ("ctc", "attention")))
    back = load_icefall_checkpoint({"model": theirs})
    assert back.spec == model.spec and back.head_names == model.head_names
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_layouts_train_pretrained_and_averaged(tmp_path):
    sd = synthetic("S", ("transducer",), seed=1)
    avg = {k: v + 1 for k, v in sd.items()}
    train = {"model": sd, "model_avg": avg, "optimizer": {}, "scheduler": None, "grad_scaler": None,
             "sampler": None, "batch_idx_train": 1234, "cur_epoch": 7, "blank_id": 0, "sos_id": 1,
             "encoder_unmasked_dim": "192,192,192,192,192,128", "exp_dir": Path("zipformer/exp"),
             "query_head_dim": "32", "causal": False}
    torch.save(train, tmp_path / "epoch-7.pt")
    torch.save({"model": sd}, tmp_path / "pretrained.pt")
    torch.save(sd, tmp_path / "averaged.pt")
    imp = resolve_icefall_checkpoint(tmp_path / "epoch-7.pt")
    assert (imp.step, imp.epoch) == (1234, 7)
    # a flag their checkpoint records and the shapes cannot show
    assert imp.overrides == {"encoder.encoder_unmasked_dim": (192, 192, 192, 192, 192, 128)}
    m_avg = load_icefall_checkpoint(tmp_path / "epoch-7.pt", use_averaged_model=True)
    assert torch.equal(m_avg.state_dict()["joiner.output_linear.weight"], avg["joiner.output_linear.weight"])
    for f in ("pretrained.pt", "averaged.pt"):
        m = load_icefall_checkpoint(tmp_path / f)
        assert torch.equal(m.state_dict()["encoder_embed.conv.3.weight"], sd["encoder_embed.conv.4.weight"])


def test_missing_and_unknown_keys_are_named_in_one_error():
    sd = synthetic("S", ("ctc",), device="meta")
    del sd["encoder.encoders.2.encoder.layers.1.conv_module2.out_proj.bias"]
    del sd["ctc_output.1.bias"]
    sd["encoder.encoders.0.layers.0.extra_scale"] = torch.empty(3, device="meta")
    imp = resolve_icefall_checkpoint(sd)
    with torch.device("meta"):
        model = imp.build()
    with pytest.raises(IcefallCheckpointError) as e:
        check_keys(model, imp.state_dict, ours_to_icefall)
    msg = str(e.value)
    assert "missing keys (2): encoder.encoders.2.encoder.layers.1.conv_module2.out_proj.bias, ctc_output.1.bias" in msg
    assert "unknown keys (1): encoder.encoders.0.layers.0.extra_scale" in msg


def test_objective_that_disagrees_with_the_heads_names_the_keys():
    sd = synthetic("S", ("transducer",))
    with pytest.raises(IcefallCheckpointError, match=r"missing keys \(2\): ctc_output.1.weight, ctc_output.1.bias; "
                                                     r"unknown keys \(12\): decoder.embedding.weight"):
        load_icefall_checkpoint(sd, objective="ctc")


def test_wrong_variant_and_ablations_are_refused():
    sd = synthetic("M", ("ctc",), device="meta")
    with pytest.raises(IcefallCheckpointError, match=r"variant 'zipformer-s' does not match the checkpoint: "
                                                     r"encoder.num_encoder_layers=\(2, 2, 3, 4, 3, 2\)"):
        resolve_icefall_checkpoint(sd, variant="zipformer-s")
    with pytest.raises(IcefallCheckpointError, match="encoder.activation='swish' \\(authors: 'swoosh'\\)"):
        resolve_icefall_checkpoint(sd, variant="zipformer-m-swish")
    with pytest.raises(IcefallCheckpointError, match="is a conformer"):
        resolve_icefall_checkpoint(sd, variant="conformer-m")
    with pytest.raises(IcefallCheckpointError, match="unknown variant 'zipformer-q'"):
        resolve_icefall_checkpoint(sd, variant="zipformer-q")
    assert resolve_icefall_checkpoint(sd, variant="zipformer-m-no-balancer").variant == "zipformer-m-no-balancer"


def test_export_refuses_what_their_code_cannot_run():
    with torch.device("meta"):
        for name, what in (("zipformer-m-layernorm", "encoder.norm='layer_norm'"),
                           ("zipformer-m-no-downsampling", "encoder.embed_time_stride=4"),
                           ("conformer-s", "a conformer encoder")):
            with pytest.raises(IcefallCheckpointError, match=what):
                export_icefall_state_dict(build_model(name, "ctc"))


def test_bad_files(tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(IcefallCheckpointError, match="junk.pt: not a torch checkpoint"):
        resolve_icefall_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(IcefallCheckpointError, match="no such file"):
        resolve_icefall_checkpoint(tmp_path / "absent.pt")
    torch.save({"state": 1}, tmp_path / "other.pt")
    with pytest.raises(IcefallCheckpointError, match="other.pt: model: no state dict there; top-level keys: state"):
        resolve_icefall_checkpoint(tmp_path / "other.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "cpu_jit.pt")
    with pytest.raises(IcefallCheckpointError, match="TorchScript"):
        resolve_icefall_checkpoint(tmp_path / "cpu_jit.pt")
    with pytest.raises(IcefallCheckpointError, match="causal"):
        resolve_icefall_checkpoint({"model": synthetic("S", ("ctc",), device="meta"), "causal": True})
