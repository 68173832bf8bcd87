"""Training one cell: the authors' loop and the runner's plumbing around it.

Modules: ``trainer`` (the loop: accumulation, schedules, divergence, checkpoints
at intervals), ``train_state`` (what a checkpoint restores, the run's result),
``oom_check`` (the sampler's largest batches at start), ``validation`` (the
validation loss), ``rng`` (seeds and generator states), ``precision``
(bf16/fp16/fp32 selection, loss scaler), ``distributed`` (torchrun,
NCCL/gloo), ``counters`` (batch counts scaled by the real batch size),
``step_profile`` (where a step's time goes), ``progress`` (progress and time
left), ``compile`` (``train.compile``), ``interrupt`` (signals) and
``cell_runner`` (one cell end to end, recorded in the results store).

A cell's model and data, checkpoint files, averaging, decoding and transcribing
are ``harness.evaluate``'s (shared with ``harness decode`` and ``transcribe``);
the device is :func:`harness.devices.select_device`.
"""
