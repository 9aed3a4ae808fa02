"""Train the reference U-Net on the generated shapes set, on CPU, and write the shipped checkpoint.

Why: precision loss is measured on a trained model, and this one is trained here
from data generated here, so nothing is downloaded. The checkpoint and its card
(export/weights/unet_shapes.{pt,json}) are what `segexport` exports by default.

    python -m segbench.data.train_reference --out export/weights

Validation runs the deployed computation, `segexport.onnx.fused.FusedSegmentation`
(resize to the input size, network, bilinear upsample of the logits to the image
size, argmax), in FP32 on every val image at its own size. torch is imported
inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segbench.data import shapes
from segrt.dataset import VocDataset
from segrt.errors import SegError
from segrt.meta import atomic_write, write_bytes_atomic
from segrt.scoring import confusion_matrix, iou_per_class

CHECKPOINT_NAME = "unet_shapes.pt"
CARD_NAME = "unet_shapes.json"


# --- data --------------------------------------------------------------------------------------------


def ensure_data(root: Path, *, train: int, val: int, seed: int) -> Path:
    """Generate the shapes set under `root` unless the same one (same counts and seed) is already there."""
    info_path = root / "dataset.json"
    if info_path.is_file():
        info = _read_dataset_info(info_path)
        if (info.get("train"), info.get("val"), info.get("seed")) == (train, val, seed):
            return root
    print(f"generating {train} train + {val} val samples (seed {seed}) into {root} ...", flush=True)
    return shapes.generate(root, train=train, val=val, seed=seed)


def _read_dataset_info(info_path: Path) -> dict[str, Any]:
    """The generator's record of a shapes set; a damaged one is refused, as its images may be half written too."""
    fix = (
        f"delete {info_path.parent} and run again to regenerate it "
        f"(or python -m segbench.data.shapes {info_path.parent})"
    )
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegError(f"{info_path}: not a readable dataset.json ({exc}); {fix}") from None
    if not isinstance(info, dict):
        raise SegError(f"{info_path}: not a segbench.data.shapes dataset.json (no settings object); {fix}")
    return info


def load_resized(dataset: VocDataset, size: int) -> tuple[Any, Any]:
    """All samples resized to size x size as the fused graph resizes images: uint8 N x 3 x S x S, labels N x S x S.

    Images: bilinear, half-pixel centres, no antialias (rounded back to uint8 to
    keep memory small). Labels: nearest with half-pixel centres.
    """
    import torch
    import torch.nn.functional as F

    images = torch.empty((len(dataset), 3, size, size), dtype=torch.uint8)
    labels = torch.empty((len(dataset), size, size), dtype=torch.uint8)
    for index, sample in enumerate(dataset):
        image = torch.from_numpy(sample.image.copy()).permute(2, 0, 1)[None].float()
        resized = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
        images[index] = resized[0].round().clamp(0, 255).to(torch.uint8)
        truth = torch.from_numpy(sample.labels.copy())[None, None].float()
        labels[index] = F.interpolate(truth, size=(size, size), mode="nearest-exact")[0, 0].to(torch.uint8)
    return images, labels


def augment(images: Any, labels: Any, generator: Any) -> tuple[Any, Any]:
    """Random flips, transposition (the classes do not depend on orientation), channel order and light."""
    import torch

    count = images.shape[0]
    flips = (torch.rand(count, 3, generator=generator) < 0.5).tolist()
    out_images, out_labels = [], []
    for index, (hflip, vflip, transpose) in enumerate(flips):
        image, label = images[index], labels[index]
        if hflip:
            image, label = image.flip(-1), label.flip(-1)
        if vflip:
            image, label = image.flip(-2), label.flip(-2)
        if transpose:
            image, label = image.transpose(-1, -2), label.transpose(-1, -2)
        out_images.append(image[torch.randperm(3, generator=generator)])
        out_labels.append(label)
    images, labels = torch.stack(out_images), torch.stack(out_labels)
    gain = torch.empty(count, 1, 1, 1).uniform_(0.75, 1.25, generator=generator)
    offset = torch.empty(count, 1, 1, 1).uniform_(-20, 20, generator=generator)
    return (images.float() * gain + offset).clamp(0, 255), labels


# --- training ----------------------------------------------------------------------------------------


def build_model(*, base: int, depth: int, size: int) -> Any:
    """The U-Net wrapped as a SegmentationModel with the shapes classes (random weights)."""
    from segexport.models.base import SegmentationModel
    from segexport.models.unet import UNet

    network = UNet(len(shapes.CLASSES), depth=depth, base=base, bilinear=True)
    return SegmentationModel(
        name="unet_shapes",
        network=network,
        classes=shapes.CLASSES,
        palette=shapes.PALETTE,
        input_size=(size, size),
        size_divisor=network.size_divisor,
    )


def dice_loss(logits: Any, truth: Any) -> Any:
    """1 - mean soft Dice over classes: weighs the small shape classes as much as the background."""
    import torch.nn.functional as F

    probabilities = logits.softmax(dim=1)
    one_hot = F.one_hot(truth, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    overlap = (probabilities * one_hot).sum(dim=(0, 2, 3))
    sizes = probabilities.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3))
    return 1.0 - ((2 * overlap + 1.0) / (sizes + 1.0)).mean()


def train(model: Any, images: Any, labels: Any, args: argparse.Namespace) -> list[float]:
    """AdamW, one-cycle schedule, cross-entropy + Dice; bf16 autocast and channels-last (2x faster on AVX-512 BF16).

    Progressive resizing: the first `args.coarse_steps` steps see the batches shrunk to
    `args.coarse_size` (about half the cost per step), the rest the full input size,
    so the shapes are learnt cheaply and the edges at the size the model runs at.
    Returns the mean loss of each tenth of the run.
    """
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(args.seed)
    network = model.network.to(memory_format=torch.channels_last).train()
    scale = (1.0 / (255.0 * torch.tensor(model.std))).view(1, 3, 1, 1)
    shift = (-torch.tensor(model.mean) / torch.tensor(model.std)).view(1, 3, 1, 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    per_epoch = len(images) // args.batch
    report_every = max(args.steps // 10, 1)
    losses, total, started = [], 0.0, time.perf_counter()
    for step in range(args.steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(images), generator=generator)
        batch = order[(step % per_epoch) * args.batch : (step % per_epoch + 1) * args.batch]
        x, y = augment(images[batch], labels[batch], generator)
        if step < args.coarse_steps:
            size = (args.coarse_size, args.coarse_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = F.interpolate(y[:, None].float(), size=size, mode="nearest-exact")[:, 0]
        x = (x * scale + shift).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = network(x).float()
        truth = y.long()
        loss = F.cross_entropy(logits, truth) + dice_loss(logits, truth)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += float(loss.detach())
        if (step + 1) % report_every == 0:
            losses.append(total / report_every)
            total = 0.0
            elapsed = time.perf_counter() - started
            print(f"step {step + 1}/{args.steps}: loss {losses[-1]:.4f} ({elapsed:.0f} s)", flush=True)
    network.to(memory_format=torch.contiguous_format).eval()
    return losses


def evaluate(model: Any, dataset: VocDataset) -> np.ndarray:
    """Confusion matrix of the deployed FP32 computation over `dataset`, each image at its own size."""
    import torch

    from segexport.onnx.fused import FusedSegmentation

    fused = FusedSegmentation(model).eval()
    counts = np.zeros((len(model.classes), len(model.classes)), dtype=np.int64)
    with torch.no_grad():
        for sample in dataset:
            labels = fused(torch.from_numpy(sample.image.copy())[None])[0].numpy()
            counts += confusion_matrix(labels, sample.labels, len(model.classes))
    return counts


def stored_weights(network: Any) -> dict[str, Any]:
    """The state dict as committed: floating-point tensors in FP16, half the file (3.9 MB, not 7.9 MB).

    The model trained under bf16 autocast, so rounding its weights to FP16 costs nothing
    measurable; `load_state_dict` copies them back into the FP32 network, and the card's val
    IoU is scored on these rounded weights, exactly what a user of the checkpoint runs.
    """
    return {
        key: (value.detach().half() if value.is_floating_point() else value.detach()).clone().contiguous()
        for key, value in network.state_dict().items()
    }


def write_outputs(model: Any, out: Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """The state dict (torch.save, loads with weights_only=True) and the card JSON, both written atomically."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = stored_weights(model.network)
    checkpoint = atomic_write(out / CHECKPOINT_NAME, lambda tmp: torch.save(state, tmp))
    card = write_bytes_atomic(out / CARD_NAME, (json.dumps(info, indent=2) + "\n").encode())
    return checkpoint, card


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segbench.data.train_reference",
        description="Train the reference U-Net on the generated shapes set (CPU) and write its checkpoint and card.",
    )
    parser.add_argument("--data", type=Path, default=Path("build/shapes"), help="dataset folder (generated if absent)")
    parser.add_argument("--out", type=Path, default=Path("build/unet_shapes_train"), help="where the .pt/.json go")
    parser.add_argument("--train", type=int, default=3200, help="generated training samples (default 3200)")
    parser.add_argument("--val", type=int, default=200, help="generated validation samples (default 200)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated data (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialization, order and augmentation")
    parser.add_argument("--steps", type=int, default=6000, help="optimizer steps (default 6000)")
    parser.add_argument("--coarse-steps", type=int, default=3000, help="first steps at --coarse-size (default 3000)")
    parser.add_argument("--coarse-size", type=int, default=96, help="input side of the first steps (default 96)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--input-size", type=int, default=128, help="square network input side (default 128)")
    parser.add_argument("--base", type=int, default=16, help="U-Net channels at full resolution (default 16)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net down-sampling steps (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in FP32 instead of bf16 autocast")
    args = parser.parse_args(argv)
    try:
        return run(args, argv)
    except SegError as exc:
        print(f"segbench.data.train_reference: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    data = ensure_data(args.data, train=args.train, val=args.val, seed=args.data_seed)
    images, labels = load_resized(VocDataset(data, "train"), args.input_size)
    data_wall, data_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"data ready: {len(images)} train images at {args.input_size}x{args.input_size} ({data_wall:.0f} s)")

    model = build_model(base=args.base, depth=args.depth, size=args.input_size)
    losses = train(model, images, labels, args)
    train_wall, train_cpu = time.perf_counter() - wall - data_wall, time.process_time() - cpu - data_cpu

    model.network.load_state_dict(stored_weights(model.network))  # score the weights as they are shipped
    val = VocDataset(data, "val")
    ious = iou_per_class(evaluate(model, val))
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    command = " ".join(["python -m segbench.data.train_reference", *(argv if argv is not None else sys.argv[1:])])
    info = {
        "model": "unet_shapes",
        "classes": list(model.classes),
        "palette": [list(c) for c in model.palette],
        "mean": list(model.mean),
        "std": list(model.std),
        "input_size": [args.input_size, args.input_size],
        "unet": {"depth": args.depth, "base": args.base, "bilinear": True},
        "training": {
            "command": command,
            "data": f"python -m segbench.data.shapes DIR --train {args.train} --val {args.val} --seed {args.data_seed}",
            "seed": args.seed,
            "steps": args.steps,
            "coarse_steps": args.coarse_steps,
            "coarse_size": args.coarse_size,
            "batch": args.batch,
            "lr": args.lr,
            "bf16_autocast": args.bf16,
            "stored_as": "float16 state dict (loaded into the FP32 network)",
            "final_loss": round(losses[-1], 5),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "seconds": {
                "data_wall": round(data_wall, 1),
                "data_cpu": round(data_cpu, 1),
                "train_wall": round(train_wall, 1),
                "train_cpu": round(train_cpu, 1),
                "total_wall": round(total_wall, 1),
                "total_cpu": round(total_cpu, 1),
            },
        },
        "val": {
            "images": len(val),
            "miou": round(float(np.nanmean(ious)), 4),
            "iou": {name: round(float(v), 4) for name, v in zip(model.classes, ious, strict=True)},
            "how": "FP32 segexport.onnx.fused.FusedSegmentation on each val image at its own size",
        },
    }
    checkpoint, card = write_outputs(model, args.out, info)
    print(f"val mIoU {info['val']['miou']:.4f} on {len(val)} images; per class: {info['val']['iou']}")
    print(f"time: {total_wall:.0f} s wall, {total_cpu:.0f} s CPU (training {train_wall:.0f} s wall)")
    print(f"wrote {checkpoint} ({checkpoint.stat().st_size / 1e6:.1f} MB) and {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
