import numpy as np
import pytest

from xaimed.data import duplicates


def _fingerprints(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of near-equal hashes and thumbnails (crowded buckets, as scans of one anatomy
    give) plus scattered unrelated images (sparse buckets)."""
    hashes, thumbnails = [], []
    for _ in range(12):
        base_hash = int(rng.integers(0, 2**63))
        base = rng.normal(size=1024)
        for _ in range(int(rng.integers(10, 40))):
            flips = rng.choice(64, size=int(rng.integers(0, 7)), replace=False)
            hashes.append(base_hash ^ sum(1 << int(bit) for bit in flips))
            # copies (correlation ~0.999) or distinct scans of the anatomy (~0.95)
            thumbnails.append(base + rng.normal(size=1024) * rng.choice([0.03, 0.3]))
    for _ in range(150):
        hashes.append(int(rng.integers(0, 2**63)))
        thumbnails.append(rng.normal(size=1024))
    thumbnails = np.array(thumbnails)
    thumbnails = (thumbnails - thumbnails.mean(1, keepdims=True)) / thumbnails.std(1, keepdims=True)
    return np.array(hashes, dtype=np.uint64), thumbnails.astype(np.float32)


@pytest.mark.parametrize("chunk_rows", [5, 512])
def test_near_pairs_are_every_close_and_correlated_pair_of_all_n_squared(monkeypatch, chunk_rows):
    monkeypatch.setattr(duplicates, "CHUNK_ROWS", chunk_rows)
    hashes, thumbnails = _fingerprints(np.random.default_rng(3))
    n = len(hashes)
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    correlation = thumbnails.astype(np.float64) @ thumbnails.T.astype(np.float64) / 1024
    a, b = np.nonzero(np.triu((distance <= 4) & (correlation >= duplicates.MIN_CORRELATION), 1))
    expected = set(zip(a.tolist(), b.tolist(), strict=True))
    assert 50 < len(expected) < n * (n - 1) // 20  # copies among many near but distinct scans
    assert np.triu((distance <= 4) & (correlation < 0.98), 1).sum() > len(expected)
    found = duplicates._near_pairs(hashes, thumbnails, 4)
    assert set(map(tuple, found.tolist())) == expected
