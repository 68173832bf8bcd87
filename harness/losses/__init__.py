"""Training objectives: pruned RNN-T (plain PyTorch, Triton kernels on GPUs, or k2 when
it imports), CTC and attention-decoder losses, combined as the authors combine them.

    >>> from harness.losses import LossConfig, compute_loss
    >>> loss, info = compute_loss(model, feats, feat_lens, tokens, batch_count, LossConfig())
"""
from .attention_loss import attention_decoder_loss
from .config import AUTHORS_HEAD_SCALES, LossConfig
from .ctc_loss import ctc_loss
from .errors import LossInputError
from .rnnt_backend import RnntBackend, k2_available, resolve_rnnt_backend
from .mutual_information import mutual_information_recursion
from .objective import compute_loss, pad_labels
from .pruning import do_rnnt_pruning, get_prune_ranges
from .rnnt_loss import (make_boundary, rnnt_logprobs_joint, rnnt_logprobs_pruned,
                        rnnt_logprobs_smoothed, rnnt_loss, rnnt_loss_pruned, rnnt_loss_smoothed)
from .transducer_loss import transducer_losses

__all__ = [
    "AUTHORS_HEAD_SCALES", "LossConfig", "LossInputError", "RnntBackend", "attention_decoder_loss",
    "compute_loss", "ctc_loss", "do_rnnt_pruning", "get_prune_ranges", "k2_available",
    "make_boundary", "mutual_information_recursion", "pad_labels", "resolve_rnnt_backend",
    "rnnt_logprobs_joint", "rnnt_logprobs_pruned", "rnnt_logprobs_smoothed", "rnnt_loss",
    "rnnt_loss_pruned", "rnnt_loss_smoothed", "transducer_losses",
]
