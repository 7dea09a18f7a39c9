"""Explanations: held-out images, CAMs, the explain stage, baselines, and `metrics`."""
