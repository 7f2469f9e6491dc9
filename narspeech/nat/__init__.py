"""Shared NAR machinery: CTC decoding/alignment (later: length prediction, masking, iterative refinement)."""

from narspeech.nat.ctc import CTCHypothesis, ctc_collapse, ctc_forced_align, ctc_greedy, ctc_prefix_beam_search

__all__ = ["CTCHypothesis", "ctc_collapse", "ctc_forced_align", "ctc_greedy", "ctc_prefix_beam_search"]
