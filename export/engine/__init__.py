"""ONNX to TensorRT engines: the build (`build`), its optimization profile (`profile`), the engine and card on
disk (`files`), what a machine lacks to build (`prerequisites`), the export's engine step (`step`) and an
engine checked or rebuilt later (`check`)."""
