"""Scores of a CAM, one value per image: confidence increase and ROAD, localisation,
faithfulness, sanity; and how alike two maps of one image are (agreement).
"""
