import pytest

from variants import (InvalidSwitchValueError, UnknownSwitchError, UnknownVariantError,
                      apply_overrides, get_spec, list_variants)
from variants.registry import resolve_objective, variant_base, variant_switches

TABLE5 = ["zipformer-m-no-downsampling", "zipformer-m-double-conformer-blocks", "zipformer-m-no-nla",
          "zipformer-m-no-nla-no-sharing", "zipformer-m-no-bypass", "zipformer-m-layernorm",
          "zipformer-m-swoosh-r-only", "zipformer-m-swish", "zipformer-m-adam"]


def test_required_names_registered():
    names = list_variants()
    for n in ["zipformer-s", "zipformer-m", "zipformer-l", "conformer-s", "conformer-m", "conformer-l",
              *TABLE5, "zipformer-m-no-balancer", "zipformer-m-no-whitener",
              "zipformer-m-no-balancer-no-whitener"]:
        assert n in names
    assert list_variants("conformer-*") == ["conformer-s", "conformer-m", "conformer-l", "conformer-tiny"]
    assert list_variants("*-tiny") == ["zipformer-tiny", "conformer-tiny"]
    assert not set(list_variants(include_tiny=False)) & {"zipformer-tiny", "conformer-tiny"}


@pytest.mark.parametrize("name", TABLE5)
def test_ablations_are_switches_over_zipformer_m(name):
    assert variant_base(name) == "zipformer-m"
    sw = variant_switches(name)
    assert sw, "an ablation must change something"
    base = get_spec("zipformer-m")
    spec = get_spec(name)
    assert spec == apply_overrides(base, sw).model_copy(
        update={"description": spec.description, "paper_params_m": spec.paper_params_m,
                "paper_gflops": spec.paper_gflops})


def test_unknown_variant_lists_allowed():
    with pytest.raises(UnknownVariantError, match="zipformer-s"):
        get_spec("zipformer-xl")


def test_unknown_switch_lists_allowed():
    with pytest.raises(UnknownSwitchError, match="encoder.norm"):
        get_spec("zipformer-m", {"normalisation": "bias_norm"})


def test_bad_switch_value_names_key_and_allowed():
    with pytest.raises(InvalidSwitchValueError, match=r"encoder\.norm.*'bias_norm' or 'layer_norm'"):
        get_spec("zipformer-m", {"norm": "rms_norm"})


def test_impossible_dims_rejected():
    with pytest.raises(InvalidSwitchValueError, match="num_encoder_layers"):
        get_spec("zipformer-s", {"num_encoder_layers": (2, 2)})
    with pytest.raises(InvalidSwitchValueError, match="nhead"):
        get_spec("conformer-s", {"nhead": 5})


def test_conformer_takes_norm_and_activation_switches():
    spec = get_spec("conformer-s", {"norm": "bias_norm", "activation": "swoosh"})
    assert spec.encoder.norm == "bias_norm" and spec.encoder.activation == "swoosh"


def test_objectives():
    assert resolve_objective("ctc_aed") == ("ctc", "attention")
    with pytest.raises(ValueError, match="allowed"):
        resolve_objective("rnnt")
