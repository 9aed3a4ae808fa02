"""What each figure of a report means, exactly: the definitions report.md ends with."""

from __future__ import annotations

from segbench.cases.suite_keys import BASELINE
from segbench.measure.timing import MIN_ROUNDS, STAGES
from segbench.scoring.temporal import FLICKER_WORDS

INCLUDES_TEMPLATE = f"""\
- **e2e** (end to end): wall time (`perf_counter_ns`) of one call, from an N x H x W x 3 uint8 array already in
  host memory to the N x H x W uint8 label maps in host memory: input checks, host pre-processing
  (unfused graphs), copies to and from the device, the network, and for fused graphs the in-graph
  resize, normalize, upsample and argmax; host post-processing (unfused graphs). Not included: reading
  and decoding the image file, colorizing or overlays, loading the model, warm-up calls.
  For `{BASELINE}`, the torchvision docs' pipeline under `torch.no_grad()`: each frame to a PIL image, the
  weights' `transforms()` on it, the model's forward pass (aux head included), `F.interpolate` to the image
  size, `argmax`, `.numpy()`. A `{BASELINE} cpu autograd` row is the same pipeline with autograd left on, as
  the docs' snippet is written; speed-ups stay over the no_grad one.
- **network H x W**: the size the network ran at. `{BASELINE}` takes it from the weights' preset
  (torchvision's resizes the shorter side to 520: 520x543 for a 612x640 photo), the exported graphs from
  their model card (a fixed `--input-size 520x520`); where the two differ a note under the table says so.
- **ms** figures are per call; a call processes N frames (the batch). **FPS** = N x 1000 / mean e2e ms.
- **stages**: the pipeline's own timers inside the call (CUDA events for `{BASELINE}` on a GPU,
  `perf_counter_ns` elsewhere): {"; ".join(f"`{name}` {words}" for name, words in STAGES.items())}.
  The stages of each sample add up to its e2e time.
- **tail**: the fused graph's last steps (the logits resized to the image size, argmax, uint8), cut out of
  the case's ONNX file and run on the same backend with the logits of the case's own batch, timed in blocks
  alternating with the whole call: its share of the call's p50 (for `{BASELINE}`, its `post` stage's share
  of the mean: `F.interpolate` and argmax). **tail MiB @1080p**: the bytes its nodes write for one 1080x1920
  frame (for `{BASELINE}`, the float logits interpolated, the int64 argmax and the uint8 labels).
- **network**: the bare network alone, on the same backend and precision: the `--no-fuse` graph's
  `backend.run` on a float tensor already pre-processed to the network size (for `{BASELINE}`, its
  `compute` stage: the eager model with its aux head). **outside network** = 1 - network p50 / e2e p50:
  the share of the frame spent on anything but the network (resizes, normalize, argmax, copies, Python).
  The bare network is timed in blocks of a quarter second alternating with blocks of the case's own call
  (for the suite's count and time; a block's first call, which finds the caches cold, is dropped when the
  block holds more calls), so both see the same machine load; for `{BASELINE}` both come from the same
  calls. The share is shown only where its 95 % bootstrap interval (over the rounds of blocks) lies above
  zero over at least {MIN_ROUNDS} rounds (fewer: not measured apart from zero); "≈0 %" means the steps
  around the network cost less than the spread of the whole call (the interval is listed under the table),
  or that too few rounds ran to tell; never that they cost nothing, and never a negative share.
- **speed-up** = e2e p50 of `{BASELINE}` / e2e p50 of the case, same model, batch and image size, same
  run and machine (the baseline on the case's device where it ran there, else on the CPU).
- **at camera rate** (suites with `camera_fps`): frames arrive every 1/fps s whether or not the pipeline
  is free; each time it is free it takes the newest frame and the ones it missed are **dropped**; a
  processed frame is **late** when its labels come after the next frame arrived; **deadline misses** =
  (dropped + late) / frames; **capture→labels** is from a frame's arrival to its label map, waiting included.
- **agreement**: share of label pixels equal to the FP32 PyTorch reference's on the same input images; the
  reference runs the exported network with the deploy graph's steps (resize to the network size without
  antialiasing), so `{BASELINE}`, which resizes with antialiasing as torchvision's preset does, differs on
  edge pixels by design. **mIoU**: on the labelled set's val split, mean over classes of a confusion
  matrix, label 255 ignored.
- **on video** (models with `video =`): the case goes over a labelled clip frame by frame, in order, one
  frame per call (batch 1, the clip's frame size, frames as OpenCV decodes the video), after warm-up calls on
  its first frame. **mIoU over the clip**: one confusion matrix summed over every frame. **flicker**: FLICKER.
  0 % is a pipeline whose labels change only where the scene moved. **agreement** there is with the FP32
  PyTorch reference on the same frames.
- **peak RSS**: the highest resident memory of the segbench process while the case loaded and ran (sampled
  every 20 ms; it includes what the process held before, see "added"); device memory, power, clocks and
  energy per frame come from NVML (or tegrastats on a Jetson) where the machine has them."""
INCLUDES = INCLUDES_TEMPLATE.replace("FLICKER", FLICKER_WORDS)
