"""Domain shift: corruptions and acquisition sites, calibration, generalisation."""
