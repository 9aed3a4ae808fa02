"""Data segbench makes itself: the labelled `shapes` set, the labelled `clip` (read back by `video`), the
suites' `generated` sets, the reference model's training (`train_reference`), and the generators' `progress`."""
