import pytest

from harness.train.counters import lr_batch_count, model_batch_count


def test_model_count_follows_the_authors_reference_duration():
    # 4 GPUs x 1000 s against the authors' 600 s reference
    assert model_batch_count(300, 1000.0, 4, 600.0) == pytest.approx(2000.0)
    # half the GPUs: the same number of batches moves the schedules half as far
    assert model_batch_count(300, 1000.0, 2, 600.0) == pytest.approx(1000.0)


def test_lr_count_keeps_the_schedule_when_the_batch_shrinks():
    # tuned at 4 x 1000 s; one GPU at 1000 s with 2-step accumulation sees half the data per step
    assert lr_batch_count(8000, 2, 1000.0, 1, 4000.0) == pytest.approx(4000.0)
    assert lr_batch_count(100, 1, 1000.0, 4, 4000.0) == pytest.approx(100.0)
    assert lr_batch_count(37, 3, 10.0, 1, None) == 37.0
