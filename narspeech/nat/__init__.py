"""Shared NAR machinery: CTC utilities (``ctc``), the refinement loop and masking (``refine``), mask-span length
machinery (``length``), the Imputer's loss and block decoding (``imputation``), the CTC prefix scorer of AR search
(``ctc_prefix_score``)."""

from narspeech.nat.ctc import (
    CTCHypothesis,
    ctc_collapse,
    ctc_forced_align,
    ctc_forced_align_batch,
    ctc_greedy,
    ctc_loss,
    ctc_prefix_beam_search,
)
from narspeech.nat.refine import RefineState, fill_most_confident, refine, uniform_mask

__all__ = [
    "CTCHypothesis", "RefineState", "ctc_collapse", "ctc_forced_align", "ctc_forced_align_batch", "ctc_greedy",
    "ctc_loss", "ctc_prefix_beam_search", "fill_most_confident", "refine", "uniform_mask",
]
