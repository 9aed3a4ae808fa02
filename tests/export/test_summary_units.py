"""segexport's summary names the units it computes: sizes divided by 1024 are KiB, MiB, GiB."""

from __future__ import annotations

from segexport.progress import file_size


def test_file_sizes_are_in_binary_units_named_as_such() -> None:
    assert file_size(1023) == "1023 B"
    assert file_size(1536) == "1.5 KiB"
    assert file_size(7.6 * 2**20) == "7.6 MiB"  # what the decimal name would have called 8.0 MB
    assert file_size(3 * 2**30) == "3.0 GiB"
