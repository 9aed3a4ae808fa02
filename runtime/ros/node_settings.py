"""What the segmentation node is asked to do, from its ROS parameters (`--ros-args -p name:=value`), checked before
it loads a model or spins: a bad value or an unknown name is one line naming the parameter and the fix (exit 2).

Kept free of rclpy, so the checks are the same on every ROS 2 distribution and testable without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from segrt.backends import BACKENDS
from segrt.errors import SegError
from segrt.precisions import USER_PRECISIONS

OUTPUTS = ("labels", "color", "overlay")  # what the node can publish, each on ~/NAME
DEFAULTS: dict[str, object] = {
    "model": "",
    "backend": "",
    "precision": "",
    "alpha": 0.5,
    "ignore_classes": [],
    "outputs": ["labels", "color"],
    "compressed": False,
    "reliable": False,
    "diagnostics_period": 1.0,
}
ROS_OWN = ("use_sim_time", "start_type_description_service")  # parameters rclpy declares on every node


@dataclass(frozen=True)
class NodeSettings:
    """The node's checked parameters."""

    model: str
    backend: str | None = None
    precision: str | None = None
    alpha: float = 0.5
    ignore_classes: tuple[int, ...] = ()
    outputs: tuple[str, ...] = ("labels", "color")
    compressed: bool = False  # also subscribe to image/compressed (sensor_msgs/CompressedImage)
    reliable: bool = False  # reliable QoS instead of the sensor-data profile (best effort, keep last 1)
    diagnostics_period: float = 1.0  # seconds between /diagnostics messages


def settings_from_parameters(values: Mapping[str, object]) -> NodeSettings:
    """Check the parameters the node was given (name -> value, as ROS parsed them) over the defaults."""
    unknown = sorted(set(values) - set(DEFAULTS) - set(ROS_OWN))
    if unknown:
        raise SegError(f"unknown parameter {unknown[0]!r}; the node takes {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **{name: value for name, value in values.items() if name in DEFAULTS}}
    model = _text(merged, "model")
    if not model:
        raise SegError("no model: give it as the first argument (segros MODEL) or with -p model:=PATH")
    return NodeSettings(
        model=model,
        backend=_choice(merged, "backend", tuple(BACKENDS)),
        precision=_choice(merged, "precision", tuple(USER_PRECISIONS)),
        alpha=_alpha(merged["alpha"]),
        ignore_classes=_class_ids(merged["ignore_classes"]),
        outputs=_outputs(merged["outputs"]),
        compressed=_flag(merged, "compressed"),
        reliable=_flag(merged, "reliable"),
        diagnostics_period=_period(merged["diagnostics_period"]),
    )


def _text(values: Mapping[str, object], name: str) -> str:
    value = values[name]
    if not isinstance(value, str):
        raise SegError(f"-p {name}:={value!r}: expected a string")
    return value.strip()


def _choice(values: Mapping[str, object], name: str, choices: tuple[str, ...]) -> str | None:
    value = _text(values, name)
    if value and value not in choices:
        raise SegError(f"-p {name}:={value}: not one of {', '.join(choices)}")
    return value or None


def _alpha(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise SegError(f"-p alpha:={value!r}: expected a number from 0 (the image) to 1 (the colours)")
    return float(value)


def _class_ids(value: object) -> tuple[int, ...]:
    """[0, 3], 3, or "0,3" (a string, as a launch file may pass it)."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    ids = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if isinstance(item, bool) or not text.isdigit() or int(text) > 255:
            raise SegError(f"-p ignore_classes:={value!r}: expected class ids 0-255, as [0,3]")
        ids.append(int(text))
    return tuple(dict.fromkeys(ids))


def _outputs(value: object) -> tuple[str, ...]:
    """["labels", "color"] or "labels,color"."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else None
    if items is None:
        raise SegError(f"-p outputs:={value!r}: expected a list of {', '.join(OUTPUTS)}")
    names = [str(item).strip() for item in items if str(item).strip()]
    wrong = [name for name in names if name not in OUTPUTS]
    if wrong or not names:
        raise SegError(f"-p outputs:={value!r}: expected one or more of {', '.join(OUTPUTS)}, as [labels,color]")
    return tuple(dict.fromkeys(names))


def _flag(values: Mapping[str, object], name: str) -> bool:
    value = values[name]
    if not isinstance(value, bool):
        raise SegError(f"-p {name}:={value!r}: expected true or false")
    return value


def _period(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= float(value) <= 3600:
        raise SegError(f"-p diagnostics_period:={value!r}: expected seconds between 0.05 and 3600")
    return float(value)
