"""The interface layer: the `lottery` command and what it runs (configs, experiment folders, stability, sweeps)."""
from lottery.cli.command import main

__all__ = ["main"]
