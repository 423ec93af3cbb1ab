"""Bit Diffusion on token sequences: data (MOSES or any file), tokenisers, training, sampling, metrics."""

from bitcompose.seq.config import PRESETS, SeqRunConfig, preset
from bitcompose.seq.data import MOSES, SequenceData, load_sequences, read_lines
from bitcompose.seq.model import SeqModel, load_seq_model
from bitcompose.seq.tokenizer import END, SeqTokenizer, build_tokenizer, smiles_tokens
from bitcompose.seq.train import train_or_load, train_seq

__all__ = [
    "END",
    "MOSES",
    "PRESETS",
    "SeqModel",
    "SeqRunConfig",
    "SeqTokenizer",
    "SequenceData",
    "build_tokenizer",
    "load_seq_model",
    "load_sequences",
    "preset",
    "read_lines",
    "smiles_tokens",
    "train_or_load",
    "train_seq",
]
