"""Statistics: paired tests, model and method comparisons, ranks, quality tables."""
