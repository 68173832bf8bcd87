import numpy as np
import pytest

from harness.data.synthetic.espeak_engine import (NATIVE_SAMPLE_RATE, TARGET_SAMPLE_RATE, EspeakEngine,
                                                  EspeakError)


def _say(engine, items):
    return [engine.synth(text, voice, rate=rate, seed=7) for text, voice, rate in items]


def test_pcm_format_and_resampling():
    with EspeakEngine() as e:
        assert e.sample_rate == NATIVE_SAMPLE_RATE
        pcm = e.synth("HELLO WORLD", "en-us+m3", rate=170, seed=1)
        assert pcm.dtype == np.int16 and pcm.size > NATIVE_SAMPLE_RATE // 4
        assert np.abs(pcm).max() > 1000  # speech, not silence
    with EspeakEngine() as fresh:  # same history, so the same samples before resampling
        y = fresh.synth_16k("HELLO WORLD", "en-us+m3", rate=170, seed=1)
    assert y.dtype == np.float32 and np.abs(y).max() <= 1.0
    assert abs(y.size - pcm.size * TARGET_SAMPLE_RATE / NATIVE_SAMPLE_RATE) <= 2


def test_fresh_engines_are_reproducible():
    items = [("THE RED CAT", "en-us+m3", 160), ("A BIG DOG RAN", "en+f2", 175), ("THE RED CAT", "en-us+m3", 160)]
    with EspeakEngine() as e1:
        a = _say(e1, items)
    with EspeakEngine() as e2:
        b = _say(e2, items)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_voices_and_variants_differ():
    with EspeakEngine() as e:
        a = e.synth("HELLO THERE", "en-us+m3", seed=1)
        b = e.synth("HELLO THERE", "en-us+f3", seed=1)
    assert a.size != b.size or not np.array_equal(a, b)


def test_bad_requests_are_named():
    with EspeakEngine() as e:
        with pytest.raises(EspeakError, match="no voice 'xx-nowhere"):
            e.synth("HELLO", "xx-nowhere+m3")
        with pytest.raises(ValueError, match="rate=10"):
            e.synth("HELLO", "en-us", rate=10)
        with pytest.raises(ValueError, match="pitch=200"):
            e.synth("HELLO", "en-us", pitch=200)
    with pytest.raises(EspeakError, match="closed"):
        e.synth("HELLO", "en-us")
