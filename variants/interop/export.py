"""Exported models a runtime can serve: the encoder and the heads, as TorchScript or ONNX.

Parts (each a plain function of tensors, in eval mode), in the layout
sherpa-onnx's offline models use (``encoder``/``decoder``/``joiner`` for a
transducer, one ``ctc`` model for CTC):

* ``encoder``: ``x`` (N, T, num_features) fbank, ``x_lens`` (N,) int64 -> ``encoder_out``
  (N, T', D), ``encoder_out_lens`` (N,);
* ``decoder`` (transducer): ``y`` (n, context_size) last tokens (-1: none yet) ->
  ``decoder_out`` (n, decoder_dim);
* ``joiner`` (transducer): ``encoder_out`` (n, D), ``decoder_out`` (n, decoder_dim) ->
  ``logit`` (n, vocab);
* ``ctc`` (CTC): ``x``, ``x_lens`` -> ``log_probs`` (N, T', vocab), ``log_probs_len`` (N,).

Every part takes any batch size, and the encoder and ``ctc`` any number of frames
up to ``max_frames`` (the relative-position tables are stored for that many; a
longer input fails in the runtime, it is never cut). What made the encoder
exportable for one size only is traced differently, with the eager numerics
unchanged: the relative-position shift is a gather instead of ``as_strided``
(whose strides held the batch and length), and Conv-Embed always masks its
padding instead of testing the lengths' values. Parts are traced
(``torch.jit.trace``; for ONNX, the TorchScript-based exporter with dynamic axes).

ONNX files carry the metadata sherpa-onnx reads (``model_type``: ``zipformer2`` or
``conformer`` on the encoder, ``zipformer2_ctc`` on the CTC model, whose runner
takes any encoder with these inputs and outputs; ``vocab_size`` and
``context_size`` on the decoder). :func:`write_tokens` writes ``tokens.txt``.

:func:`check_exported` runs each exported part on fresh inputs of other sizes and
returns the largest absolute difference from the eager model;
:func:`greedy_search_parts` is the transducer greedy search over exported parts
(sherpa-onnx's and the harness's: one symbol per frame, blank and unk emit nothing).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
#: (batch, frames) of the checks: three lengths, two batch sizes
CHECK_SIZES = ((1, 1.0), (3, 0.55), (1, 1.6), (3, 1.0), (2, 0.3))


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
        self.encoder = EncoderPart(model)
        self.ctc_output = model.ctc_output

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder_out, lens = self.encoder(x, x_lens)
        return self.ctc_output(encoder_out), lens


@dataclass
class Part:
    name: str
    module: nn.Module
    #: (generator, batch, frames) -> inputs; frames is the encoder's input length
    make_inputs: Callable[[torch.Generator, int, int], tuple[torch.Tensor, ...]]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    #: input/output name -> {axis: symbolic name}
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, str] = field(default_factory=dict)


def example_lengths(gen: torch.Generator, batch: int, frames: int, min_frames: int) -> torch.Tensor:
    """Lengths in [min_frames, frames] with the first one full (the padded size is used)."""
    lens = torch.randint(min(min_frames, frames), frames + 1, (batch,), generator=gen)
    lens[0] = frames
    return lens


def encoder_kind(model: nn.Module) -> str:
    """sherpa-onnx's ``model_type`` of the encoder: ``zipformer2`` (the Zipformer of the paper,
    icefall's ``zipformer``) or ``conformer``."""
    name = type(model.encoder).__name__.lower()
    return "conformer" if "conformer" in name else "zipformer2"


def fill_position_tables(model: nn.Module, max_frames: int) -> None:
    """Store each relative-position table for ``max_frames`` input frames, so that a traced
    graph slices one stored table for any shorter input (a row does not depend on the
    table's size, so the values are those eager computes)."""
    from variants.components.rel_pos_encoding import RelPositionalEncoding
    from variants.components.rel_sinusoidal_positional_encoding import RelSinusoidalPositionalEncoding

    mods = [m for m in model.modules() if isinstance(m, (RelPositionalEncoding, RelSinusoidalPositionalEncoding))]
    if not mods:
        return
    seen: dict[nn.Module, int] = {}

    def record(mod, args):  # returns None: the inputs stay as they are
        seen.setdefault(mod, int(args[0].shape[1]))

    hooks = [m.register_forward_pre_hook(record) for m in mods]
    probe = 1000  # 496 frames after Conv-Embed: divisible by every stack's downsampling
    f = model.spec.encoder.num_features
    try:
        with torch.no_grad():
            embedded = int(model.encoder_embed(torch.zeros(1, probe, f), torch.tensor([probe]))[1][0])
            EncoderPart(model)(torch.zeros(1, probe, f), torch.tensor([probe]))
    finally:
        for h in hooks:
            h.remove()
    longest = -(-max_frames * embedded // probe) + 4  # Conv-Embed's output for max_frames, rounded up
    for m, t in seen.items():
        factor = max(1, round(embedded / t))
        frames = -(-longest // factor) + 1
        width = m.d_model if isinstance(m, RelSinusoidalPositionalEncoding) else 1
        with torch.no_grad():
            m(torch.zeros(1, frames, width))


def parts(model: nn.Module, frames: int = 1000) -> list[Part]:
    """The parts of ``model`` to export for greedy decoding, with input makers for checks
    (``frames``: the length of the example the encoder is traced with)."""
    model = model.eval()
    f = model.spec.encoder.num_features
    min_frames = getattr(model.encoder_embed, "min_frames", 9)
    if frames < min_frames:
        raise ValueError(f"frames={frames} is below Conv-Embed's minimum of {min_frames}")
    d, v = model.encoder_dim, model.vocab_size

    def features(g, n, t):
        t = max(min_frames, t)
        return torch.randn(n, t, f, generator=g), example_lengths(g, n, t, max(min_frames, t // 2))

    seq = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}}
    kind = encoder_kind(model)
    common = {"version": "1", "model_author": "zipformer-harness", "vocab_size": str(v),
              "num_features": str(f), "blank_id": str(model.blank_id)}
    out = [Part("encoder", EncoderPart(model), features, ("x", "x_lens"), ("encoder_out", "encoder_out_lens"),
                {**seq, "encoder_out": {0: "N", 1: "T_out"}, "encoder_out_lens": {0: "N"}},
                {**common, "model_type": kind, "comment": f"non-streaming {kind} encoder"})]
    if "transducer" in model.head_names:
        c, dd = model.decoder.context_size, model.decoder.decoder_dim
        n_axes = {0: "N"}
        out.append(Part("decoder", DecoderPart(model),
                        lambda g, n, t: (torch.randint(-1, v, (n, c), generator=g),),
                        ("y",), ("decoder_out",), {"y": n_axes, "decoder_out": n_axes},
                        {**common, "context_size": str(c)}))
        out.append(Part("joiner", JoinerPart(model),
                        lambda g, n, t: (torch.randn(n, d, generator=g), torch.randn(n, dd, generator=g)),
                        ("encoder_out", "decoder_out"), ("logit",),
                        {"encoder_out": n_axes, "decoder_out": n_axes, "logit": n_axes},
                        {**common, "joiner_dim": str(model.joiner.output_linear.in_features)}))
    if "ctc" in model.head_names:
        out.append(Part("ctc", CtcPart(model), features, ("x", "x_lens"), ("log_probs", "log_probs_len"),
                        {**seq, "log_probs": {0: "N", 1: "T_out"}, "log_probs_len": {0: "N"}},
                        {**common, "model_type": "zipformer2_ctc", "encoder": kind,
                         "comment": f"non-streaming {kind} CTC"}))
    return out


def export_part(part: Part, fmt: str, path: Path, gen: torch.Generator, frames: int) -> None:
    inputs = part.make_inputs(gen, 2, frames)
    part.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter (shape checks fixed at trace time are only checks)
        if fmt == "torchscript":
            traced = torch.jit.trace(part.module, inputs, check_trace=False)
            traced.save(str(path), _extra_files={"metadata.json": json.dumps(part.metadata)})
        elif fmt == "onnx":
            torch.onnx.export(part.module, inputs, str(path), dynamo=False, opset_version=17,
                              input_names=list(part.input_names), output_names=list(part.output_names),
                              dynamic_axes=part.dynamic_axes)
            add_onnx_metadata(path, part.metadata)
        else:
            raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")


def add_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Write ``metadata`` into the ONNX file's ``metadata_props`` (what ``GetModelMetadata`` reads)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.save(model, str(path))


def runner(fmt: str, path: Path) -> Callable[..., tuple[torch.Tensor, ...]]:
    """A function of torch tensors that runs the exported part at ``path`` and returns its outputs."""
    if fmt == "torchscript":
        mod = torch.jit.load(str(path))

        def run(*xs):
            with torch.no_grad():
                y = mod(*xs)
            return y if isinstance(y, tuple) else (y,)
        return run
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
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


def check_exported(part: Part, fmt: str, path: Path, gen: torch.Generator, frames: int,
                   sizes: Sequence[tuple[int, float]] = CHECK_SIZES, max_frames: int | None = None) -> dict:
    """Largest |exported - eager| over fresh inputs of each (batch, frames x factor) in ``sizes``.

    Integer outputs (lengths) must be equal: a mismatch counts as ``inf``. Returns
    ``{"max_abs_diff": float, "sizes": [[batch, frames], ...]}``."""
    run = runner(fmt, path)
    part.module.eval()  # an exporter may leave modules in training mode
    worst = 0.0
    checked = []
    for batch, factor in sizes:
        t = max(1, int(frames * factor))
        t = t if max_frames is None else min(t, max_frames)
        xs = part.make_inputs(gen, batch, t)
        checked.append([batch, int(xs[0].shape[1]) if xs[0].ndim == 3 else None])
        with torch.no_grad():
            ref = part.module(*xs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = run(*xs)
        for a, b in zip(got, ref):
            if a.shape != b.shape:
                return {"max_abs_diff": float("inf"), "sizes": checked}
            if not torch.is_floating_point(b):
                if not torch.equal(a.to(b.dtype), b):
                    return {"max_abs_diff": float("inf"), "sizes": checked}
                continue
            worst = max(worst, float((a.float() - b.float()).abs().max()))
    return {"max_abs_diff": worst, "sizes": checked}


def greedy_search_parts(encoder: Callable, decoder: Callable, joiner: Callable, x: torch.Tensor,
                        x_lens: torch.Tensor, context_size: int, blank_id: int = 0,
                        unk_id: int | None = None) -> list[list[int]]:
    """Transducer greedy search over exported parts (each a :func:`runner`): one symbol per
    frame at most; blank and ``unk_id`` emit nothing; the first context is ``-1 ... -1 blank``
    (sherpa-onnx's offline greedy search, and the harness's)."""
    enc, enc_lens = encoder(x, x_lens)
    silent = {blank_id, blank_id if unk_id is None else unk_id}
    hyps = [[-1] * (context_size - 1) + [blank_id] for _ in range(enc.shape[0])]

    def decoder_out(rows):
        return decoder(torch.tensor([h[-context_size:] for h in rows], dtype=torch.int64))[0]

    dec = decoder_out(hyps)
    lens = enc_lens.tolist()
    for t in range(enc.shape[1]):
        active = [b for b in range(len(hyps)) if lens[b] > t]
        if not active:
            break
        logits = joiner(enc[active, t].contiguous(), dec[active].contiguous())[0]
        emitted = False
        for b, y in zip(active, logits.argmax(dim=-1).tolist()):
            if y not in silent:
                hyps[b].append(y)
                emitted = True
        if emitted:
            dec = decoder_out(hyps)
    return [h[context_size:] for h in hyps]


def write_tokens(path: Path, pieces: Sequence[str]) -> None:
    """``tokens.txt``: one ``<piece> <id>`` per line, ids 0, 1, ... (sherpa-onnx's symbol table)."""
    Path(path).write_text("".join(f"{p} {i}\n" for i, p in enumerate(pieces)), encoding="utf-8")


def export_model(model: nn.Module, fmt: str, out_dir: Path, frames: int = 1000, max_frames: int = 30000,
                 seed: int = 0, pieces: Sequence[str] | None = None) -> dict:
    """Export every part into ``out_dir``, check each against eager at several sizes, write
    ``tokens.txt`` (when ``pieces``, the units by id, are given) and ``export.json``; return it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if max_frames < frames:
        raise ValueError(f"max_frames={max_frames} is below the example's {frames} frames")
    if pieces is not None and len(pieces) != model.vocab_size:
        raise ValueError(f"the units have {len(pieces)} pieces but the model {model.vocab_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    model = model.eval()
    fill_position_tables(model, max_frames)
    info: dict = {"format": fmt, "max_frames": max_frames, "example_frames": frames,
                  "num_features": model.spec.encoder.num_features, "heads": list(model.head_names),
                  "encoder": encoder_kind(model), "vocab_size": model.vocab_size, "blank_id": model.blank_id,
                  "parts": {}}
    if "transducer" in model.head_names:
        info["context_size"] = model.decoder.context_size
    checked = fmt == "torchscript" or onnxruntime_available()
    for part in parts(model, frames):
        path = out_dir / f"{part.name}{SUFFIX[fmt]}"
        export_part(part, fmt, path, gen, frames)
        check = check_exported(part, fmt, path, gen, frames, max_frames=max_frames) if checked else {"max_abs_diff": None, "sizes": []}
        info["parts"][part.name] = {"file": path.name, "inputs": list(part.input_names),
                                    "outputs": list(part.output_names), "dynamic_axes": part.dynamic_axes,
                                    "metadata": part.metadata, "checked_sizes": check["sizes"],
                                    "max_abs_diff": check["max_abs_diff"]}
    if pieces is not None:
        write_tokens(out_dir / "tokens.txt", pieces)
        info["tokens"] = "tokens.txt"
    (out_dir / "export.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
