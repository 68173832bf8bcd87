"""The smallest valid grid file, which the grid tests vary."""
import textwrap

BASE = textwrap.dedent("""\
    name: t
    base:
      variant: zipformer-s
      overrides: {num_encoder_layers: [1, 1, 1, 1, 1, 1]}
      objective: ctc
      data: {corpus: synthetic, dir: DATA, max_duration: 40}
      train: {epochs: 2}
    """)
