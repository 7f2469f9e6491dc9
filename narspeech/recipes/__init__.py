"""Corpus preparation (lhotse-style library functions with a thin CLI): mini, fsdd, yesno."""
