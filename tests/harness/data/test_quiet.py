"""`harness data prepare --quiet`: no progress bar at all, lhotse's recipes' included."""
from harness.cli import main


def test_quiet_prepare_draws_no_lhotse_bar(tiny_librispeech, tmp_path, capfd):
    import lhotse.recipes.librispeech as recipe

    root, _ = tiny_librispeech
    assert main(["data", "prepare", "--corpus", "librispeech", "--src", str(root), "--out", str(tmp_path / "o"),
                 "--num-jobs", "1", "--quiet"]) == 0
    err = capfd.readouterr().err
    assert "Dataset parts" not in err and "Distributing tasks" not in err and "%|" not in err, err
    from tqdm import tqdm

    assert recipe.tqdm.__name__ == "tqdm" or issubclass(recipe.tqdm, tqdm)  # put back afterwards
    # the same recipe without --quiet draws its bars (so the check above means something)
    from harness.data.quiet import lhotse_bars

    with lhotse_bars(True):
        for _ in recipe.tqdm(range(2), desc="Dataset parts"):
            pass
    assert "Dataset parts" in capfd.readouterr().err
