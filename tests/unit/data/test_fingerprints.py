import numpy as np

from xaimed.data.images import fingerprints, perceptual_hash, standardized_thumbnail


def test_both_fingerprints_from_one_thumbnail_equal_each_computed_alone():
    for shape in [(300, 200), (120, 90, 3)]:
        pixels = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
        phash, small = fingerprints(pixels)
        assert phash == perceptual_hash(pixels)
        np.testing.assert_array_equal(small, standardized_thumbnail(pixels))
