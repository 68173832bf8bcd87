"""`harness profile`: params per part and objective, FLOPs with and without the
authors' rules, the JSON/Markdown/CSV outputs and the store rows (tiny models)."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from harness.profile.flops import PLAIN, WITH_RULES, profile_flops
from harness.profile.params import objective_parts, objective_total
from variants.components.bias_norm import BiasNorm
from variants.specs.tiny import TINY_HEADS as TINY_VARIANT_HEADS

torch.set_num_threads(1)

#: the tiny variants' heads (variants/specs/tiny.py) as overrides
TINY_HEADS = {f"heads.{k}": v for k, v in TINY_VARIANT_HEADS.items()}
TINY = {
    "conformer-s": {"num_encoder_layers": 1, "d_model": 32, "dim_feedforward": 64, "nhead": 2,
                    "cnn_module_kernel": 7, **TINY_HEADS},
    "zipformer-s": {"num_encoder_layers": (1,) * 6, "encoder_dim": (16,) * 6,
                    "feedforward_dim": (32,) * 6, "encoder_unmasked_dim": (16,) * 6,
                    "num_heads": (2,) * 6, "cnn_module_kernel": (7,) * 6, "query_head_dim": 8,
                    "value_head_dim": 4, "pos_head_dim": 2, "pos_dim": 8, **TINY_HEADS},
}
FRAMES = 120


class LinearBiasNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 16)
        self.norm = BiasNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.lin(x))


def test_rules_add_per_element_flops_through_deepspeed():
    model, x = LinearBiasNorm(), torch.ones(2, 5, 8)
    plain, extra, fc, _, tally = profile_flops(model, (x,), rules={})
    assert (plain, extra, tally) == (2 * 10 * 8 * 16, 0, {})
    assert fc == plain                      # a linear layer: both counters agree
    plain2, extra2, _, _, tally2 = profile_flops(model, (x,), rules={BiasNorm: 5})
    assert plain2 == plain
    assert extra2 == 5 * 2 * 5 * 16 and tally2 == {"BiasNorm": extra2}


class BatchedMatmul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


def test_batched_matmul_counted_once_by_each_counter():
    # under a dispatch mode torch.matmul re-enters DeepSpeed's patched Tensor.bmm:
    # the two counters must run in separate passes
    a, b = torch.ones(4, 1, 10, 8), torch.ones(4, 1, 8, 6)
    plain, extra, fc, _, _ = profile_flops(BatchedMatmul(), (a, b), rules={})
    assert plain == fc == 2 * 4 * 10 * 8 * 6 and extra == 0


def test_authors_table_is_applied_by_default():
    from variants.components.flop_rules import EXTRA_FLOPS_PER_ELEMENT

    assert EXTRA_FLOPS_PER_ELEMENT[BiasNorm] == 5
    plain, extra, _, _, _ = profile_flops(LinearBiasNorm(), (torch.ones(1, 3, 8),))
    assert extra == 5 * 3 * 16 and plain == 2 * 3 * 8 * 16


def test_objective_totals_add_the_parts_their_heads_use():
    parts = {"encoder_embed": 1, "encoder": 10, "decoder": 100, "joiner": 1000,
             "simple_proj": 10000, "ctc_output": 100000, "attention_decoder": 1000000}
    assert objective_total(parts, "transducer") == 11111
    assert objective_total(parts, "ctc") == 100011
    assert objective_total(parts, "ctc_aed") == 1100011
    with pytest.raises(ValueError, match="unknown objective.*allowed: transducer, ctc, ctc_aed"):
        objective_parts("rnnt")


@pytest.mark.parametrize("variant", sorted(TINY))
def test_profile_variant_rows(variant):
    from harness.profile.summary import profile_variant
    from variants import build_model

    rows = profile_variant(variant, overrides=TINY[variant], frames=FRAMES)
    assert [r["objective"] for r in rows] == ["transducer", "ctc", "ctc_aed"]
    for r in rows:
        assert sum(r["parts"].values()) == r["params"]
        built = build_model(variant, objective=r["objective"], **TINY[variant])
        assert built.param_counts()["total"] == r["params"]  # parameters + unused_bypass_scale
        assert r["encoder_params"] == r["parts"]["encoder_embed"] + r["parts"]["encoder"]
        assert r["gflops"] > 0 and r["gflops_convention"] in (PLAIN, WITH_RULES)
        assert r["gflops_flop_counter"] <= r["gflops_deepspeed"] * 1.001
        assert r["gflops_paper"] is None and r["params_paper"] is None  # overridden: not the paper's model


def test_paper_values_beside_the_registered_model():
    from harness.profile.summary import profile_variant

    rows = profile_variant("zipformer-s", flops=False)
    assert [r["params"] for r in rows] == [23_285_615, 22_118_279, 46_282_107]  # the authors' implementation's counts
    assert [r["params_paper"] for r in rows] == [23.3, 22.1, 46.3]
    assert rows[0]["gflops_paper"] == 40.8 and rows[0]["gflops"] is None
    assert abs(rows[0]["params_diff_pct"] - (23.285615 - 23.3) / 23.3 * 100) < 1e-9


def test_cli_json_markdown_csv_and_store(tmp_path, capsys):
    from harness.cli import main
    from harness.store import ResultsStore

    store = tmp_path / "r.sqlite"
    argv = ["profile", "conformer-s", "--json", "--out", str(tmp_path / "rep"), "--store", str(store),
            "--frames", str(FRAMES), "--objectives", "transducer,ctc"]
    for k, v in TINY["conformer-s"].items():
        argv += ["--set", f"{k}={v}"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    for key in ("variant", "objective", "params", "encoder_params", "gflops", "params_paper",
                "gflops_paper", "parts", "gflops_convention"):
        assert key in rows[0]
    md = (tmp_path / "rep" / "profile.md").read_text()
    assert "conformer-s" in md and "paper" in md
    with open(tmp_path / "rep" / "profile.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["objective"] for r in csv_rows] == ["transducer", "ctc"]
    assert int(csv_rows[0]["params"]) == rows[0]["params"]
    stored = ResultsStore(store).rows("profile", variant="conformer-s")
    assert {r["objective"] for r in stored} == {"transducer", "ctc"}
    assert json.loads(stored[0]["parts"])["encoder"] == rows[0]["parts"]["encoder"]


def test_cli_unknown_variant_and_objective(tmp_path, capsys):
    from harness.cli import main

    out = ["--out", str(tmp_path), "--no-store", "--no-flops"]
    assert main(["profile", "no-such-model", *out]) == 2
    assert "unknown variant 'no-such-model'" in capsys.readouterr().err
    assert main(["profile", "conformer-s", "--objectives", "rnnt", *out]) == 2
    assert "allowed: transducer, ctc, ctc_aed" in capsys.readouterr().err
