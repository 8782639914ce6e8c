"""Massage profiles: what to play (pure models and waveforms, no I/O)."""

__all__: list[str] = []
