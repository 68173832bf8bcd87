"""Exported models: the encoder and the heads greedy decoding needs, as TorchScript or ONNX.

Parts (each a plain function of tensors, in eval mode):

* ``encoder``: ``x`` (N, T, num_features) fbank, ``x_lens`` (N,) -> ``encoder_out``
  (N, T', D), ``encoder_out_lens`` (N,);
* ``decoder`` (transducer): ``y`` (n, context_size) last tokens -> ``decoder_out`` (n, decoder_dim);
* ``joiner`` (transducer): ``encoder_out`` (n, D), ``decoder_out`` (n, decoder_dim) -> ``logits`` (n, vocab);
* ``ctc`` (CTC): ``encoder_out`` (N, T', D) -> ``log_probs`` (N, T', vocab).

The encoder is exported for one input size, ``batch`` x ``frames`` (pad shorter
utterances: our encoder's output for an utterance does not depend on its
padding). It cannot be exported for any size yet, for reasons in the encoder
code (measured with torch 2.13): ``torch.jit.script`` rejects its Python
(``random.random()`` in Balancer/Whitener/skip schedules); ``torch.export``
with a dynamic length stops at Conv-Embed's length check
(``int(lengths.max())`` is data-dependent) and, past it, at guards on the
downsampled lengths it cannot prove; and tracing bakes the batch and length
into the relative-position shift (``as_strided`` strides). The decoder and
joiner take any ``n``; ``ctc`` takes the encoder's output size.

:func:`check_exported` runs each exported part on fresh inputs and returns
the largest absolute difference from the eager model.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


class EncoderPart(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.encoder_embed, self.encoder = model.encoder_embed, model.encoder

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, x_lens = self.encoder_embed(x, x_lens)
        return self.encoder(x, x_lens)


class DecoderPart(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(y, need_pad=False)[:, 0]


class JoinerPart(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.joiner(encoder_out, decoder_out)


class CtcPart(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.ctc_output = model.ctc_output

    def forward(self, encoder_out: torch.Tensor) -> torch.Tensor:
        return self.ctc_output(encoder_out)


@dataclass
class Part:
    name: str
    module: nn.Module
    make_inputs: Callable[[torch.Generator, int], tuple[torch.Tensor, ...]]  # (generator, n) -> inputs
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_batch: bool  # False: exported for one batch size


def example_lengths(gen: torch.Generator, batch: int, frames: int, min_frames: int) -> torch.Tensor:
    """Lengths in [min_frames, frames] with the first one full (the padded size is used)."""
    lens = torch.randint(min_frames, frames + 1, (batch,), generator=gen)
    lens[0] = frames
    return lens


def parts(model: nn.Module, batch: int = 1, frames: int = 1000) -> list[Part]:
    """The parts of ``model`` to export for greedy decoding, with input makers for checks."""
    model = model.eval()
    f = model.spec.encoder.num_features
    min_frames = max(getattr(model.encoder_embed, "min_frames", 9), min(frames, 100))
    if frames < getattr(model.encoder_embed, "min_frames", 9):
        raise ValueError(f"frames={frames} is below Conv-Embed's minimum of {model.encoder_embed.min_frames}")
    with torch.no_grad():
        t_out = int(EncoderPart(model)(torch.zeros(1, frames, f), torch.tensor([frames]))[0].shape[1])
    d, v = model.encoder_dim, model.vocab_size
    out = [Part("encoder", EncoderPart(model),
                lambda g, n: (torch.randn(batch, frames, f, generator=g),
                              example_lengths(g, batch, frames, min_frames)),
                ("x", "x_lens"), ("encoder_out", "encoder_out_lens"), False)]
    if "transducer" in model.head_names:
        c, dd = model.decoder.context_size, model.decoder.decoder_dim
        out.append(Part("decoder", DecoderPart(model),
                        lambda g, n: (torch.randint(0, v, (n, c), generator=g),),
                        ("y",), ("decoder_out",), True))
        out.append(Part("joiner", JoinerPart(model),
                        lambda g, n: (torch.randn(n, d, generator=g), torch.randn(n, dd, generator=g)),
                        ("encoder_out", "decoder_out"), ("logits",), True))
    if "ctc" in model.head_names:
        out.append(Part("ctc", CtcPart(model),
                        lambda g, n: (torch.randn(batch, t_out, d, generator=g),),
                        ("encoder_out",), ("log_probs",), False))
    return out


def export_part(part: Part, fmt: str, path: Path, gen: torch.Generator) -> None:
    inputs = part.make_inputs(gen, 3)
    part.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter
        if fmt == "torchscript":
            traced = torch.jit.trace(part.module, inputs, check_trace=False)
            torch.jit.save(traced, str(path))
        elif fmt == "onnx" and part.name == "encoder":
            # the TorchScript-based exporter has no rule for the relative-position shift
            # (as_strided); torch.export captures it for the one input size
            program = torch.export.export(part.module, inputs)
            torch.onnx.export(program, inputs, str(path), dynamo=True, external_data=False, verbose=False,
                              input_names=list(part.input_names), output_names=list(part.output_names))
        elif fmt == "onnx":
            # the heads check token ids by value, which torch.export cannot trace; tracing can
            axes = {n: {0: "N"} for n in (*part.input_names, *part.output_names)} if part.dynamic_batch else None
            torch.onnx.export(part.module, inputs, str(path), dynamo=False, opset_version=17,
                              input_names=list(part.input_names), output_names=list(part.output_names),
                              dynamic_axes=axes)
        else:
            raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _runner(fmt: str, path: Path) -> Callable[..., tuple[torch.Tensor, ...]]:
    if fmt == "torchscript":
        mod = torch.jit.load(str(path))

        def run(*xs):
            with torch.no_grad():
                y = mod(*xs)
            return y if isinstance(y, tuple) else (y,)
        return run
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def run_onnx(*xs):
        return tuple(torch.from_numpy(o) for o in sess.run(None, {n: x.numpy() for n, x in zip(names, xs)}))
    return run_onnx


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_exported(part: Part, fmt: str, path: Path, gen: torch.Generator, trials: int = 2) -> float:
    """Largest |exported - eager| over ``trials`` fresh inputs (other lengths; other n where dynamic).

    Integer outputs (lengths) must be equal: a mismatch returns ``inf``."""
    run = _runner(fmt, path)
    part.module.eval()  # an exporter may leave modules in training mode
    worst = 0.0
    for i in range(trials):
        xs = part.make_inputs(gen, 2 + 3 * i)
        with torch.no_grad():
            ref = part.module(*xs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = run(*xs)
        for a, b in zip(got, ref):
            if a.shape != b.shape:
                return float("inf")
            if not torch.is_floating_point(b):
                if not torch.equal(a.to(b.dtype), b):
                    return float("inf")
                continue
            worst = max(worst, float((a.float() - b.float()).abs().max()))
    return worst


def export_model(model: nn.Module, fmt: str, out_dir: Path, batch: int = 1, frames: int = 1000,
                 seed: int = 0) -> dict:
    """Export every part into ``out_dir``, check each against eager, write ``export.json``; return it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    info: dict = {"format": fmt, "batch": batch, "frames": frames,
                  "num_features": model.spec.encoder.num_features, "heads": list(model.head_names),
                  "vocab_size": model.vocab_size, "blank_id": model.blank_id, "parts": {}}
    if "transducer" in model.head_names:
        info["context_size"] = model.decoder.context_size
    checked = fmt == "torchscript" or onnxruntime_available()
    for part in parts(model, batch, frames):
        path = out_dir / f"{part.name}{SUFFIX[fmt]}"
        export_part(part, fmt, path, gen)
        diff = check_exported(part, fmt, path, gen) if checked else None
        info["parts"][part.name] = {"file": path.name, "inputs": list(part.input_names),
                                    "outputs": list(part.output_names),
                                    "any_batch": part.dynamic_batch, "max_abs_diff": diff}
    (out_dir / "export.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
