"""segexport's summary names the units it computes: sizes divided by 1024 are KiB, MiB, GiB."""

from __future__ import annotations

from segexport.cli import _size


def test_file_sizes_are_in_binary_units_named_as_such() -> None:
    assert _size(1023) == "1023 B"
    assert _size(1536) == "1.5 KiB"
    assert _size(7.6 * 2**20) == "7.6 MiB"  # what the decimal name would have called 8.0 MB
    assert _size(3 * 2**30) == "3.0 GiB"
