"""Training progress: budget in steps, ETA, the log line and progress.json for `harness status`."""
import io
import time

from harness.train.progress import TrainProgress, budget_steps, eta_now, format_seconds, read_progress


def test_budget_is_the_smaller_of_steps_and_epochs():
    assert budget_steps(None, 3, 10.0, 1) == 30
    assert budget_steps(None, 3, 10.0, 4) == 9  # ceil(10 / 4) steps per epoch
    assert budget_steps(20, 3, 10.0, 1) == 20 and budget_steps(50, 3, 10.0, 1) == 30
    assert budget_steps(None, None, 10.0, 1) is None
    assert format_seconds(3725) == "1h02m" and format_seconds(65) == "1m05s" and format_seconds(None) == "?"


def test_progress_eta_log_line_and_file(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 100.0)
    p = TrainProgress(tmp_path, total=40, start_step=10, tty=False)  # resumed at step 10
    monkeypatch.setattr(time, "time", lambda: 700.0)
    p.update(11, 0.6)  # the resumed run's first step: start-up and sampler fast-forward, 600 s
    assert p.rate() is None and p.eta() is None
    monkeypatch.setattr(time, "time", lambda: 709.0)
    p.update(20, 0.5)  # 9 steps in 9 s: the speed of this run's steps, not the start-up's
    assert p.rate() == 1.0 and p.eta() == 20.0
    assert p.describe() == "step 20/40 (50%), 1.00 steps/s, ETA 0m20s"
    p.write(epoch=1.5)
    data = read_progress(tmp_path)
    assert data["step"] == 20 and data["total"] == 40 and data["eta_s"] == 20.0 and data["loss"] == 0.5
    monkeypatch.setattr(time, "time", lambda: 714.0)
    assert eta_now(data) == 15.0 and read_progress(tmp_path / "none") is None


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    p = TrainProgress(tmp_path, total=8, start_step=0, tty=True)
    for s in range(1, 9):
        p.update(s, 1.0 / s)
    p.close()
    text = err.getvalue()
    assert "8/8" in text and "loss=0.1250" in text
    assert TrainProgress(tmp_path, total=8, start_step=0, tty=False).bar is None


def test_an_estimated_total_is_never_shown_as_done_while_training_goes_on(tmp_path):
    """An epoch budget's total is estimated from durations: past it, no "100%" and no ETA
    0m00s; each epoch end re-estimates it; the end sets it to the steps run."""
    p = TrainProgress(tmp_path, total=5, start_step=0, tty=False, exact=False)
    for s in range(1, 6):
        p.update(s, 1.0)
    assert p.total is None and "%" not in p.describe() and p.describe().endswith("ETA ?")
    p.update(7, 1.0)
    p.epoch_done(1, 7, epochs=3, max_steps=None)  # 7 steps per epoch: 21 in all
    assert p.total == 21 and p.describe().startswith("step 7/21 (33%)")
    p.epoch_done(2, 14, epochs=3, max_steps=18)  # the step budget is smaller
    assert p.total == 18
    p.finish(18)
    assert p.total == 18 and p.describe().startswith("step 18/18 (100%)")
    exact = TrainProgress(tmp_path, total=1000, start_step=0, tty=False)
    exact.update(999, 1.0)
    assert exact.describe().startswith("step 999/1000 (99%)")  # not rounded up to 100 %


def test_progress_bar_total_is_the_steps_run(tmp_path, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    p = TrainProgress(tmp_path, total=8, start_step=0, tty=True, exact=False)  # 8 estimated, 11 run
    for s in range(1, 12):
        p.update(s, 1.0)
    p.finish(11)
    p.close()
    text = err.getvalue()
    assert "11/11" in text and "8/8" not in text and "100%" in text.split("11/11")[0].rsplit("\r", 1)[-1]
