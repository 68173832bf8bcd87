"""The fused C loops of the CPU fast paths (variants/components/cpu_kernels.py, csrc/):
building, loading, falling back, and each loop against the torch arithmetic it replaces."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from variants import fast_paths
from variants.components import balancer, cpu_kernels, swoosh

needs_library = pytest.mark.skipif(cpu_kernels.library() is None,
                                   reason="no C compiler: the fused CPU loops are off")


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """library() rebuilt from scratch into an empty cache folder (restored afterwards)."""
    monkeypatch.setenv("HARNESS_KERNEL_CACHE", str(tmp_path / "cache"))
    cpu_kernels.library.cache_clear()
    yield tmp_path / "cache"
    monkeypatch.undo()
    cpu_kernels.library.cache_clear()


def test_every_prototype_has_a_ctypes_signature():
    sigs = cpu_kernels.signatures()
    assert {"selftest", "swoosh_forward", "balancer_extra_2d"} <= set(sigs)
    assert sigs["swoosh_forward"][:3] == [cpu_kernels.ctypes.c_void_p] * 3
    assert sigs["swoosh_forward"][3] is cpu_kernels.ctypes.c_int64
    assert sigs["balancer_extra_2d"][-1] is cpu_kernels.ctypes.c_double
    with pytest.raises(ValueError, match="unsupported kernel parameter type"):
        cpu_kernels._ctype("long double x")


@needs_library
def test_builds_into_the_cache_and_loads(fresh_library):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = cpu_kernels.library()
    assert lib is not None
    built = list(fresh_library.glob("*/kernels.so"))
    assert len(built) == 1 and not list(fresh_library.glob("*/*.tmp*"))
    for name in cpu_kernels.signatures():
        assert getattr(lib, name).argtypes


def test_without_a_working_compiler_the_torch_paths_run(fresh_library, monkeypatch, one_thread):
    monkeypatch.setenv("CC", "false")                  # a "compiler" that always fails
    with pytest.warns(UserWarning, match="could not be built or loaded"):
        assert cpu_kernels.library() is None
    x = torch.randn(64, 8)
    assert not cpu_kernels.usable(x)
    y, d = swoosh.swoosh_and_level_deriv(x, 1.0, 0.313261687)      # the torch path
    with cpu_kernels.disabled():
        y0, d0 = swoosh.swoosh_and_level_deriv(x, 1.0, 0.313261687)
    assert torch.equal(y, y0) and torch.equal(d, d0)


@needs_library
def test_an_unwritable_cache_falls_back_to_the_temporary_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("HARNESS_KERNEL_CACHE", raising=False)
    blocked = tmp_path / "file"
    blocked.write_text("")                               # a file where a folder would go
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(cpu_kernels.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    cpu_kernels.library.cache_clear()
    try:
        assert cpu_kernels.library() is not None
        assert list((tmp_path / "tmp").glob("zipformer-harness-*/*/kernels.so"))
    finally:
        monkeypatch.undo()
        cpu_kernels.library.cache_clear()


def test_switched_off_by_the_environment(fresh_library, monkeypatch):
    monkeypatch.setenv("HARNESS_CPU_KERNELS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.library() is None
    assert not list(fresh_library.glob("*/kernels.so"))


@needs_library
def test_concurrent_builders_each_load_a_whole_library(tmp_path):
    env = dict(os.environ, HARNESS_KERNEL_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(sys.path))
    code = "from variants.components import cpu_kernels as k; assert k.library() is not None; print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["ok", "ok"]
    assert all(p.returncode == 0 for p in procs)
    assert len(list((tmp_path / "cache").glob("*/kernels.so"))) == 1


def test_usable_only_where_the_loops_apply(one_thread):
    x = torch.randn(8, 8)
    ok = cpu_kernels.library() is not None
    assert cpu_kernels.usable(x) == ok
    assert not cpu_kernels.usable(x.double())
    with fast_paths.reference_paths():
        assert not cpu_kernels.usable(x)
    with fast_paths.device_independent():
        assert not cpu_kernels.usable(x)
    with cpu_kernels.disabled():
        assert not cpu_kernels.usable(x)
    torch.set_num_threads(2)
    assert not cpu_kernels.usable(x)                    # torch's parallel kernels instead


def test_dense_layouts():
    x = torch.randn(2, 3, 4, 5)
    assert cpu_kernels.dense(x, torch.empty_like(x))
    cl = x.contiguous(memory_format=torch.channels_last)
    assert cpu_kernels.dense(cl, torch.empty_like(cl)) and cpu_kernels.dense(cl.transpose(1, 3))
    assert not cpu_kernels.dense(x, cl)                 # the same shape, another layout
    assert not cpu_kernels.dense(x[:, :, :2])           # a gap between rows
    assert cpu_kernels.dense(x[:1])


@needs_library
@pytest.mark.parametrize("offset, constant", [(1.0, 0.313261687), (4.0, 0.035)])
def test_swoosh_loop_matches_the_torch_arithmetic(offset, constant, one_thread):
    """Values within float32 roundings (including where softplus is the identity and exp
    would overflow), the derivative levels equal but for rare roundings across a level."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200_000, generator=g) * 6.0,
                   torch.tensor([-200.0, -90.0, 19.0, 21.0, 79.0, 81.0, 89.0, 200.0, 1e30, -1e30])])
    x = x.view(-1, 10).t().contiguous().t()             # a transposed (dense) layout
    y, d = swoosh.swoosh_and_level_deriv(x, offset, constant)
    with cpu_kernels.disabled():
        y0, d0 = swoosh.swoosh_and_level_deriv(x, offset, constant)
    assert y.stride() == x.stride() and d.stride() == x.stride()
    assert torch.allclose(y, y0, rtol=2e-6, atol=1e-6)
    assert int((d != d0).sum()) <= 5                     # measured: 0-3 in 2 M
    assert float((d - d0).abs().max()) <= swoosh.LEVEL_STEP * 1.001
    nan = swoosh.swoosh_and_level_deriv(torch.tensor([float("nan")] * 16), offset, constant)[0]
    assert bool(nan.isnan().all())                      # NaN stays NaN


@needs_library
@pytest.mark.parametrize("scale", [1.0, 0.01, 100.0])
def test_balancer_loop_matches_the_torch_arithmetic(scale, one_thread):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3000, 24, generator=g) * torch.linspace(0.05, 3.0, 24) + torch.linspace(-2, 2, 24)) * scale
    grad = torch.randn(3000, 24, generator=g)
    limits = (balancer.proportion_positive_to_mean(0.05), balancer.proportion_positive_to_mean(0.95),
              balancer.abs_to_rms(0.2), balancer.abs_to_rms(4.0))
    out = balancer.add_extra_gradient_2d(x, grad, limits, 0.04)
    with cpu_kernels.disabled():
        ref = balancer.add_extra_gradient_2d(x, grad, limits, 0.04)
    added = float((ref - grad).abs().max())
    assert added > 1e-3                                 # the constraints act
    assert float((out - ref).abs().max()) < 1e-3 * added
    inplace = grad.clone()
    assert balancer.add_extra_gradient_2d(x, inplace, limits, 0.04, out=inplace) is inplace
    assert torch.equal(inplace, out)
