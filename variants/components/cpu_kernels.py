"""Fused CPU loops in C (``csrc/*.c``): one pass over a tensor where torch's operators
take several, and a few per-channel computations in one call instead of ~40 tiny ops.

For the CPU fast paths of single-threaded training (the main job's cells train one per
core): the sources are compiled once per machine and source version with the system's C
compiler (``cc -O3 -march=native``; exp and log vectorised through glibc's libmvec) into a
cache folder, and loaded with ctypes. Each ``KERNEL name(args)`` prototype in the sources
gives its ctypes signature (see ``csrc/kernels.h``).

They are used only where :func:`usable` says so: the fused paths on (``fast_paths``), the
CPU layout paths on (not ``device_independent()``), torch on one thread (the loops are
single-threaded; with more threads torch's own parallel kernels run), not tracing or
compiling, and the library built. Without a C compiler (or when the build or its self-test
fails) one warning says why and the torch fast paths run; ``HARNESS_CPU_KERNELS=0`` turns
them off, ``HARNESS_KERNEL_CACHE`` moves the cache (default
``$XDG_CACHE_HOME/zipformer-harness/cpu-kernels``). Results agree with the torch fast paths
within float32 roundings (libmvec's exp/log are within 4 ulp of the correctly rounded
value; sums accumulate in another order), not bit for bit (the dropout loops' masks and
plain dropout's values are torch's bits: see ``dropout.py``); :func:`disabled` turns them
off for a block (tests compare the two).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import torch

from .. import fast_paths

SOURCES = Path(__file__).with_name("csrc")

_on = True

_PROTOTYPE = re.compile(r"^KERNEL\s+(\w+)\s*\(([^)]*)\)", re.MULTILINE)


def _ctype(arg: str) -> type:
    """The ctypes type of one C parameter declaration (``const float *x``, ``int64_t n``, ...)."""
    if "*" in arg:
        return ctypes.c_void_p
    words = arg.replace("const", " ").split()
    base = words[0] if words else ""
    types = {"int64_t": ctypes.c_int64, "float": ctypes.c_float, "double": ctypes.c_double,
             "int": ctypes.c_int}
    if base not in types:
        raise ValueError(f"csrc: unsupported kernel parameter type {arg!r}")
    return types[base]


def signatures() -> dict[str, list[type]]:
    """Each kernel's ctypes argument types, read from the ``KERNEL`` prototypes in ``csrc``."""
    out: dict[str, list[type]] = {}
    for src in sorted(SOURCES.glob("*.c")):
        for name, args in _PROTOTYPE.findall(src.read_text()):
            params = [a.strip() for a in args.split(",") if a.strip() and a.strip() != "void"]
            out[name] = [_ctype(a) for a in params]
    return out


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _flags() -> list[str]:
    flags = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fvisibility=hidden",
             "-fno-math-errno", "-fno-trapping-math"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags += ["-march=native", "-mprefer-vector-width=512"]
        if platform.libc_ver()[0] == "glibc":
            flags.append("-DHARNESS_LIBMVEC")
    return flags


def _cpu_id() -> str:
    """What the ``-march=native`` build depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def cache_dir() -> Path:
    env = os.environ.get("HARNESS_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zipformer-harness" / "cpu-kernels"


def _build(cc: str, flags: list[str], target: Path) -> None:
    """Compile every source into ``target``: into a temporary file of the same folder,
    then renamed (concurrent builders each finish their own; a reader never sees half)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [cc, *flags, "-I", str(SOURCES), "-o", tmp, *map(str, sorted(SOURCES.glob("*.c"))), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _selftest(lib: ctypes.CDLL) -> None:
    x = torch.linspace(-30.0, 30.0, 101)
    y = torch.empty_like(x)
    lib.selftest(x.data_ptr(), y.data_ptr(), x.numel())
    if not torch.allclose(y, torch.nn.functional.softplus(x), rtol=1e-5, atol=1e-6):
        raise RuntimeError("the built library's self-test computed wrong values")


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded library (built on first use), or None where it cannot be (one warning)."""
    if os.environ.get("HARNESS_CPU_KERNELS", "1") == "0":
        return None
    cc = _compiler()
    if cc is None:
        warnings.warn("no C compiler (cc) found: the fused CPU loops are off; torch's CPU fast paths run instead")
        return None
    flags = _flags()
    sources = sorted(SOURCES.glob("*.[ch]"))
    h = hashlib.sha256()
    for part in [cc, " ".join(flags), _cpu_id(), platform.platform(), torch.__version__]:
        h.update(part.encode() + b"\0")
    for src in sources:
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    target = cache_dir() / h.hexdigest()[:20] / "kernels.so"
    if not os.environ.get("HARNESS_KERNEL_CACHE"):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError:       # a read-only home: the system's temporary folder instead
            target = (Path(tempfile.gettempdir()) / f"zipformer-harness-{os.getuid()}"
                      / h.hexdigest()[:20] / "kernels.so")
    try:
        if not target.exists():
            try:
                _build(cc, flags, target)
            except RuntimeError:
                if "-DHARNESS_LIBMVEC" not in flags:
                    raise
                # no vector maths library: scalar exp/log
                flags.remove("-DHARNESS_LIBMVEC")
                _build(cc, flags, target)
        lib = ctypes.CDLL(str(target))
        for name, argtypes in signatures().items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, None
        _selftest(lib)
    except (OSError, RuntimeError, AttributeError) as e:
        warnings.warn(f"the fused CPU loops could not be built or loaded ({e}); torch's CPU fast paths run instead")
        return None
    return lib


def usable(x: torch.Tensor) -> bool:
    """Whether the fused loops apply to a float32 tensor ``x`` now (see the module docstring)."""
    # cpu_layout (False while compiling) before get_num_threads: Dynamo cannot trace that
    # (a graph break per call)
    return (_on and x.dtype == torch.float32
            and fast_paths.cpu_layout(x) and torch.get_num_threads() == 1
            and library() is not None)


def dense(*tensors: torch.Tensor) -> bool:
    """Whether the tensors share one shape and one gap-free layout (any order of axes):
    an elementwise loop may then run over their storage in memory order."""
    first = tensors[0]
    expected = 1
    for d in sorted(range(first.ndim), key=lambda d: first.stride(d)):
        if first.shape[d] != 1 and first.stride(d) != expected:
            return False
        expected *= first.shape[d]
    return all(t.shape == first.shape and t.stride() == first.stride() for t in tensors[1:])


def call(name: str, *args) -> None:
    """Run kernel ``name``; tensors are passed as pointers to their first element."""
    lib = library()
    assert lib is not None
    getattr(lib, name)(*[a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args])


@contextlib.contextmanager
def disabled(off: bool = True) -> Iterator[None]:
    """Within the block the fused loops are off (``off=False``: on, where usable)."""
    global _on
    old, _on = _on, not off
    try:
        yield
    finally:
        _on = old
