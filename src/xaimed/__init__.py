"""xaimed: benchmark CNNs and their class activation maps on medical images."""

__version__ = "0.1.0"
