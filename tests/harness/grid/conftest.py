import pytest

from support.gridtext import BASE

@pytest.fixture
def write_grid(tmp_path):
    """Write a grid file (``BASE`` when no text is given) and return its path."""

    def write(text: str = BASE, name: str = "g.yaml") -> str:
        p = tmp_path / name
        p.write_text(text.replace("DATA", str(tmp_path / "data")))
        return str(p)

    return write


@pytest.fixture
def tiny_grid(tmp_path, tiny_corpus):
    """Write a grid of ``zipformer-tiny`` CTC cells on the tiny corpus; ``rows`` adds ablation rows."""

    def write(name: str = "e2e", rows: str = "", train: str = "epochs: 1, save_every_n: 1, average_period: 1",
              decode: str = "methods: [ctc_greedy_search]") -> str:
        text = (f"name: {name}\nstore: {tmp_path / 'runs' / 'results.sqlite'}\nrun_root: {tmp_path / 'runs'}\n"
                "base:\n  variant: zipformer-tiny\n"
                "  objective: ctc\n"
                f"  data: {{corpus: synthetic, dir: {tiny_corpus}, options: {{tier: tiny}}, max_duration: 8, max_train_cuts: 10}}\n"
                f"  train: {{{train}}}\n  decode: {{{decode}}}\n")
        if rows:
            text += "ablations:\n" + rows
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        return str(p)

    return write
