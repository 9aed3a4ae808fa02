"""PyTorch to ONNX: the export and its checks (`export`), the fused deploy graph (`fused`: uint8 image in, label
map out), its tail rewritten channel-last (`tail`), and what TensorRT requires of every graph (`tensorrt_rules`)."""
