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
    monkeypatch.setattr(time, "time", lambda: 110.0)
    p.update(20, 0.5)  # 10 steps in 10 s
    assert p.rate() == 1.0 and p.eta() == 20.0
    assert p.describe() == "step 20/40 (50%), 1.00 steps/s, ETA 0m20s"
    p.write(epoch=1.5)
    data = read_progress(tmp_path)
    assert data["step"] == 20 and data["total"] == 40 and data["eta_s"] == 20.0 and data["loss"] == 0.5
    monkeypatch.setattr(time, "time", lambda: 115.0)
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
