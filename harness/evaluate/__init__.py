"""What training and ``harness decode`` share: a cell's model and data set up
(``model_setup``, ``data_setup``), checkpoint files (``checkpoint``), weight averaging
(``model_average``), the cell's log (``cell_log``), decoding checkpoints (``decode``)
and transcribing audio files with a trained model (``transcribe``)."""
