"""Scores of a CAM, one value per image: confidence increase and ROAD, localisation,
faithfulness, sanity.
"""
