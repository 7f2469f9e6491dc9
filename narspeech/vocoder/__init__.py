"""Vocoders: log-mel -> waveform (Griffin-Lim so far; the neural ones come with the vocoder issue)."""
