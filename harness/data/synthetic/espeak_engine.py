"""A synchronous eSpeak NG engine driven through ctypes.

The library and its data come from the ``espeakng-loader`` wheel, so nothing is
downloaded and no system package is needed. Synthesis runs in synchronous mode
and returns 22050 Hz int16 PCM, which :meth:`EspeakEngine.synth_16k` resamples
to 16 kHz.

The C library keeps global state that ``espeak_Initialize`` does not reset
(the same text gives a few samples more or less depending on what was spoken
before), so every :class:`EspeakEngine` loads its own private copy of the
shared library: audio then depends only on what that engine was asked to say,
in order, which is what makes the synthetic corpus reproducible. Use one
engine at a time per process (the engine is not thread-safe across copies).
"""
from __future__ import annotations

import _ctypes
import ctypes
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0

#: the engine's native output rate (the wheel's voices all use 22050 Hz)
NATIVE_SAMPLE_RATE = 22050
TARGET_SAMPLE_RATE = 16000

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded or refused a request."""


def espeak_paths() -> tuple[Path, Path]:
    """(shared library, data folder) of the bundled eSpeak NG."""
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - declared dependency
        raise EspeakError("the synthetic corpus needs the 'espeakng-loader' package "
                          "(pip install espeakng-loader)") from e
    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


class EspeakEngine:
    """A freshly loaded, initialised libespeak-ng (a context manager; :meth:`close` frees it)."""

    def __init__(self) -> None:
        lib_path, data_path = espeak_paths()
        # a private copy: dlopen of the same path would share the C globals
        with tempfile.TemporaryDirectory(prefix="espeak-", ignore_cleanup_errors=True) as tmp:
            private = Path(tmp) / "libespeak-ng-private.so"
            shutil.copyfile(lib_path, private)
            self._lib = ctypes.CDLL(str(private))  # stays mapped after the file is deleted
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        # eSpeak NG draws random numbers (e.g. for voicing noise); reseeding it
        # before every utterance makes synthesis reproducible.
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(),
                                     _INITIALIZE_DONT_EXIT)
        if rate != NATIVE_SAMPLE_RATE:
            raise EspeakError(f"espeak_Initialize returned {rate} (expected {NATIVE_SAMPLE_RATE} Hz) "
                              f"with data at {data_path}")
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._resampler = None

    def close(self) -> None:
        """Terminate the engine and unload its private library copy."""
        lib, self._lib = self._lib, None
        if lib is not None:
            lib.espeak_Terminate()
            close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
            if close is not None:
                close(lib._handle)

    def __enter__(self) -> "EspeakEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _collect(self, wav, num_samples, events) -> int:  # noqa: ANN001 (ctypes types)
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0: continue synthesis

    def synth(self, text: str, voice: str, rate: int = 175, pitch: int = 50,
              pitch_range: int = 50, seed: int = 0) -> np.ndarray:
        """Speak ``text`` with ``voice`` (e.g. ``"en-us+m3"``): int16 PCM at 22050 Hz.

        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range``
        0-100; ``seed`` seeds eSpeak's own random numbers (same inputs, same audio).
        """
        if not 80 <= rate <= 450:
            raise ValueError(f"rate={rate} words per minute is outside eSpeak's range 80-450")
        for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
            if not 0 <= value <= 100:
                raise ValueError(f"{name}={value} is outside 0-100")
        data = text.encode("utf-8")
        with self._lock:
            lib = self._lib
            if lib is None:
                raise EspeakError("this EspeakEngine was closed")
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EspeakError(f"eSpeak NG has no voice {voice!r} (voice+variant, e.g. 'en-us+m3')")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100)):
                lib.espeak_SetParameter(param, int(value), 0)
            lib.espeak_ng_SetRandSeed(int(seed))
            self._chunks = []
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                   _CHARS_UTF8 | _ENDPAUSE, None, None)
            if err != _EE_OK:
                raise EspeakError(f"espeak_Synth failed with code {err} for text {text!r}")
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def synth_16k(self, text: str, voice: str, rate: int = 175, pitch: int = 50,
                  pitch_range: int = 50, seed: int = 0) -> np.ndarray:
        """As :meth:`synth`, resampled to 16 kHz float32 in [-1, 1]."""
        import torch
        from lhotse.augmentation.resample import Resample

        pcm = self.synth(text, voice, rate, pitch, pitch_range, seed)
        if self._resampler is None:
            self._resampler = Resample(NATIVE_SAMPLE_RATE, TARGET_SAMPLE_RATE)
        x = torch.from_numpy(pcm.astype(np.float32) / 32768.0).unsqueeze(0)
        y = self._resampler(x).squeeze(0).numpy()
        return np.clip(y, -1.0, 1.0).astype(np.float32)
