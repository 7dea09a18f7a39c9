"""Data: ingesting datasets (formats, manifest), images, duplicates, checks, preprocessing,
folds and the synthetic phantoms.
"""
