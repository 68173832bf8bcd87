"""Text <-> token ids through the corpus's sentencepiece model (see :mod:`harness.data.bpe`)."""
from __future__ import annotations

import os
from pathlib import Path


class Tokenizer:
    """``<blk>`` = 0 (the CTC/transducer blank), ``<sos/eos>`` = 1, ``<unk>`` = 2."""

    def __init__(self, bpe_model_path: str | os.PathLike):
        import sentencepiece as spm

        path = Path(bpe_model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no sentencepiece model at {path} (run `harness data prepare`)")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.blank_id = self.sp.piece_to_id("<blk>")
        self.sos_id = self.eos_id = self.sp.piece_to_id("<sos/eos>")
        self.unk_id = self.sp.unk_id()
        if self.blank_id != 0:
            raise ValueError(f"{path}: <blk> must be id 0 (got {self.blank_id}); train it with "
                             "harness.data.bpe.train_bpe")

    @property
    def vocab_size(self) -> int:
        return self.sp.vocab_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text."""
        if isinstance(texts, str):
            raise TypeError("Tokenizer.encode takes a list of texts, got one str")
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: list[int]) -> str:
        """Text of one id sequence; blank and <sos/eos> ids are dropped."""
        ids = [int(i) for i in ids if int(i) not in (self.blank_id, self.sos_id)]
        return self.sp.decode(ids)

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(int(token_id))

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"
