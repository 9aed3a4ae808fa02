"""A Triton model repository from an ONNX file or engine (`repository`) and the export's step that writes it
(`step`)."""
