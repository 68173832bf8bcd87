"""Training one cell: the authors' loop and the runner's plumbing around it.

Modules: ``trainer`` (the loop: precision, accumulation, schedules, divergence,
OOM check), ``checkpoint`` (atomic writes, newest valid checkpoint),
``model_average`` (running average, averaging over epochs), ``precision``
(device and bf16/fp16/fp32 selection, loss scaler), ``distributed`` (torchrun,
NCCL/gloo), ``counters`` (batch counts scaled by the real batch size),
``step_profile`` (where a step's time goes), ``evaluate`` (decoding and WER),
``data_setup`` (corpus, tokenizer, cuts) and ``cell_runner`` (one cell end to
end, recorded in the results store).
"""
