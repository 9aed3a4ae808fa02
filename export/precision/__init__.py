"""ONNX to ONNX in lower precision: the FP16 and INT8 passes (`passes`, calibrated by `calibration`), and the
accuracy budget (`budget`): its `val_set`, the `search` for the nodes to keep, graphs with nodes kept
(`keep_fp16`, `keep_qdq`), each trial's `scoring`, and the `budget_report`."""
