import numpy as np
import pytest

from xaimed.io import integrity


def test_rows_written_one_by_one_make_the_file_np_save_makes(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 7, 7), dtype=np.uint8)
    integrity.save_array(tmp_path / "whole.npy", array)
    integrity.save_rows(tmp_path / "rows.npy", iter(array), array.shape, np.uint8)
    assert (tmp_path / "rows.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()
    checksums = [(tmp_path / f"{n}.npy.sha256").read_text().split()[0] for n in ("rows", "whole")]
    assert checksums[0] == checksums[1]  # taken while writing = taken from the file
    np.testing.assert_array_equal(integrity.load_array(tmp_path / "rows.npy"), array)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([np.zeros((2, 2), np.uint8)], "1 rows given for an array of shape"),
        ([np.zeros((2, 3), np.uint8)] * 2, r"row 0 is \(2, 3\) uint8, not \(2, 2\) uint8"),
        ([np.zeros((2, 2), np.float32)] * 2, "row 0 is .* float32"),
    ],
)
def test_too_few_or_wrong_rows_are_an_error_and_leave_nothing(tmp_path, rows, message):
    path = tmp_path / "images.npy"
    with pytest.raises(ValueError, match=message) as error:
        integrity.save_rows(path, iter(rows), (2, 2, 2), np.uint8)
    assert str(path) in str(error.value)
    assert list(tmp_path.iterdir()) == []  # no store, no checksum, no temporary file
