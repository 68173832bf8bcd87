"""Which Triton kernels a tensor gets: CUDA tensors the compiled ones, also in a process whose
module-level kernels run in the interpreter because a CPU test imported them first (the
failure on a CUDA machine: `pytest -k cuda` ran the interpreter on CUDA tensors). No GPU
needed: the selection, and the compiled twin built for sm_90 by Triton's own compiler."""
import pytest
import torch


def test_cuda_tensors_get_compiled_kernels_in_an_interpreter_process(triton_interpreter, monkeypatch, tmp_path):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    m = triton_interpreter
    assert m.interpreted() and isinstance(m._mi_forward_kernel, InterpretedFunction)
    forward, backward = m.kernels_for(torch.device("cuda"))
    for kernel in (forward, backward):
        assert isinstance(kernel, JITFunction) and not isinstance(kernel, InterpretedFunction)
        # the helpers it calls, looked up in its own module, are compiled ones too
        for helper in ("_logaddexp", "_utterance", "_cells"):
            assert isinstance(kernel.fn.__globals__[helper], JITFunction), helper
    assert m.kernels_for(torch.device("cuda", 1)) == (forward, backward)  # built once
    assert m.kernels_for(torch.device("cpu")) == (m._mi_forward_kernel, m._mi_backward_kernel)

    # a real kernel: Triton's compiler builds it for sm_90 here, with TRITON_INTERPRET=1 set
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    src = ASTSource(forward, signature={"px_ptr": "*fp32", "py_ptr": "*fp32", "ends_ptr": "*i64",
                                        "p_ptr": "*fp32", "score_ptr": "*fp32", "S": "i32", "T": "i32",
                                        "BLOCK": "constexpr"}, constexprs={"BLOCK": 128})
    asm = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm
    assert len(asm["cubin"]) > 0 and "bar.sync" in asm["ptx"]

    # CPU tensors go through the same selection and run in the interpreter
    launched = []
    real = m._launch
    monkeypatch.setattr(m, "_launch", lambda kernel, *a, **k: (launched.append(kernel), real(kernel, *a, **k)))
    px, py = torch.randn(2, 3, 5, requires_grad=True), torch.randn(2, 4, 4, requires_grad=True)
    scores = m.mutual_information_recursion_triton(px, py)
    scores.sum().backward()
    assert launched == [m._mi_forward_kernel, m._mi_backward_kernel]
    from harness.losses.mutual_information import mutual_information_recursion

    torch.testing.assert_close(scores, mutual_information_recursion(px.detach(), py.detach()), rtol=1e-5, atol=1e-5)
