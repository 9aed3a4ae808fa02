"""The `segros` command: a segexport model as a ROS 2 node.

    segros MODEL [--backend B] [--precision P] [--ros-args -p alpha:=0.4 -p outputs:=[labels,color,overlay]
                                                -r image:=/camera/image_raw]

Parameters are checked and the model loaded before the node spins (a bad one: one line, exit 2); SIGINT and SIGTERM
stop it cleanly (the worker ends, the node is destroyed, ROS shut down; exit 130 as every segexport command).
rclpy comes from a ROS 2 install (a Jetson's Humble: `source /opt/ros/humble/setup.bash`) or the pip wheels.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segrt.backends import BACKENDS
from segrt.errors import SegError, first_line, require, run_command
from segrt.precisions import USER_PRECISIONS
from segrt.signals import interrupt_once

PROG = "segros"
INSTALL_ROS2 = (
    "source your ROS 2 setup (source /opt/ros/humble/setup.bash), or pip install ros-rclpy ros-sensor-msgs "
    "ros-std-msgs ros-diagnostic-msgs ros-rmw-fastrtps-cpp"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a segexport model as a ROS 2 node: image in; ~/labels (mono8), ~/color (rgb8), ~/overlay "
        "out with the input's header; parameters by --ros-args -p NAME:=VALUE (model, backend, precision, alpha, "
        "ignore_classes, outputs, compressed, reliable, diagnostics_period).",
        epilog="Example: segros build/unet_shapes --ros-args -r image:=/camera/image_raw",
    )
    parser.add_argument("model", nargs="?", help="model.onnx, model.engine or a segexport output folder")
    parser.add_argument("--backend", choices=list(BACKENDS), help="default: the best one installed")
    parser.add_argument("--precision", choices=list(USER_PRECISIONS), help="pick the file of this precision")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`argv` as sys.argv (the program name first, ROS arguments included)."""
    argv = list(sys.argv if argv is None else argv)
    with interrupt_once():
        return run_command(PROG, lambda: _run(argv))


def _run(argv: list[str]) -> int:
    require("rclpy", INSTALL_ROS2)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    try:
        own_args = remove_ros_args(args=argv)[1:]
    except Exception as exc:  # rclpy's RCLError family: malformed --ros-args
        raise SegError(f"--ros-args: {_ros_args_problem(exc)}") from None
    args = build_parser().parse_args(own_args)
    context = rclpy.context.Context()
    # rclpy's own handlers would end spin() with ExternalShutdownException tracebacks; ours raise
    # KeyboardInterrupt in this thread between two short spins
    rclpy.init(args=argv, context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        return _spin(args, context, SingleThreadedExecutor)
    finally:
        rclpy.try_shutdown(context=context)


def _spin(args: argparse.Namespace, context: object, executor_type: type) -> int:
    from segrt.ros.node import SegmentationNode

    require_messages()
    cli_values = {"model": args.model, "backend": args.backend, "precision": args.precision}
    node = SegmentationNode(cli_values, context=context)
    executor = executor_type(context=context)
    executor.add_node(node)
    try:
        outputs = ", ".join(node.settings.outputs)
        node.get_logger().info(f"segmenting with {node.settings.model} ({node.seg.backend.name}); publishing {outputs}")
        while context.ok():  # type: ignore[attr-defined]
            executor.spin_once(timeout_sec=0.1)
    finally:
        node.stop()
        print(
            f"{PROG}: {node.segmented} segmented, {node.dropped} dropped, {sum(node.skipped.values())} skipped",
            file=sys.stderr,
        )
        executor.shutdown()
        node.destroy_node()
    return 0


def _ros_args_problem(exc: BaseException) -> str:
    """rcl's message without its C source locations: "Couldn't parse parameter override rule: '-p alpha'"."""
    text = first_line(exc).replace("Failed to parse ROS arguments: ", "")
    return text.split(". Error:")[0].split(", at /")[0]


def require_messages() -> None:
    """The message packages the node publishes, each named if missing (the pip install is package by package)."""
    for module, package in (
        ("sensor_msgs.msg", "ros-sensor-msgs"),
        ("std_msgs.msg", "ros-std-msgs"),
        ("diagnostic_msgs.msg", "ros-diagnostic-msgs"),
    ):
        require(module, f"pip install {package}, or source your ROS 2 setup")


if __name__ == "__main__":
    sys.exit(main())
