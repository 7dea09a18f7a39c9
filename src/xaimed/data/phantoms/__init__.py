"""Synthetic phantom datasets: one module per anatomy, `generate` writes them."""
