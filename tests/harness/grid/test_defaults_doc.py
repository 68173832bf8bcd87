"""experiments/README.md's defaults table is the one generated from the schema and
prepare_corpus's signature, and its example grid passes every check."""
import re
from pathlib import Path

import yaml

from harness.config.schema import DEFAULT_DECODE_METHODS, CellConfig, default_decode_methods
from harness.decoding.decode import METHOD_HEADS
from harness.grid.defaults import BEGIN, END, table
from harness.grid.loader import load_grid
from harness.grid.validate import check_grid
from variants.spec import OBJECTIVE_HEADS

README = Path(__file__).resolve().parents[3] / "experiments" / "README.md"


def test_readme_defaults_table_is_generated_from_the_schema():
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == table(), (
        "experiments/README.md's defaults table is stale: run "
        "`python -m harness.grid.defaults --write experiments/README.md`")


def test_table_rows_hold_the_schema_defaults():
    t = table()
    assert "| `decode.methods` | `null` |" in t and "transducer modified_beam_search" in t
    assert "| `train.save_every_n` | `4000` |" in t
    assert "| `data.options.speed_perturb` | `true` |" in t and "| `data.options.tier` | `null` |" in t


def test_every_objective_has_a_default_decoding_method_for_its_heads():
    assert set(DEFAULT_DECODE_METHODS) == set(OBJECTIVE_HEADS)
    for objective, heads in OBJECTIVE_HEADS.items():
        for m in default_decode_methods(objective):
            assert set(METHOD_HEADS[m]) <= set(heads), (objective, m)
    for heads in (["transducer", "ctc"], ["ctc", "attention"], ["transducer", "attention"]):
        assert all(set(METHOD_HEADS[m]) <= set(heads) for m in default_decode_methods(heads))


def test_readme_example_grid_passes_every_check(tmp_path):
    block = re.search(r"```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(block)
    cells = check_grid(load_grid(path), disk=False)
    by_objective = {c.objective: c.config.decode_methods for c in cells}
    assert set(by_objective) == {"transducer", "ctc"}
    base = {k: v for k, v in yaml.safe_load(block)["base"].items() if k not in ("seeds", "decode")}
    cfg = CellConfig.model_validate(base)
    assert cfg.decode_methods == ["modified_beam_search"]
