"""A segmented copy of a bag: `NAME.segmented.mcap` holds every message of the input bag, and for each segmented
topic its label map (`TOPIC/labels`, mono8 class ids) and colour mask (`TOPIC/color`, rgb8) as new topics,
logged at the input message's time with its header (stamp and frame_id) unchanged.

The copy is written with `rosbags` as an MCAP rosbag2 under a hidden temporary name beside the target and moved
into place by `finish`, also after Ctrl-C or a bag that breaks off (the writer is closed first, so the file has
its index and footer: what was written is readable). Only an unexpected failure discards it (`discard`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import SegError, first_line, require
from segrt.files import write_problem
from segrt.image import colorize
from segrt.ros.bag_source import INSTALL_ROSBAGS, OUTPUT_TOPICS, BagBroken, BagMessage, humble_typestore, output_topic
from segrt.ros.image_msg import ImageFields, labels_fields, rgb_fields
from segrt.stream.frame import Frame

IMAGE_TYPE = "sensor_msgs/msg/Image"


def segmented_name(bag_path: str | Path) -> str:
    """`drive.mcap` and a bag folder `drive/` both give `drive.segmented.mcap`."""
    path = Path(bag_path)
    stem = path.stem if path.is_file() else path.name
    return f"{stem}.segmented.mcap"


class BagSink:
    """Writes the segmented copy of the bag at `bag_path` to `out_path`; frames come in log-time order.

    The input's messages are copied from a reader of its own, each up to the time of the frame that follows it,
    so the output stays in log-time order and a run that stops early has copied exactly what came before.
    """

    def __init__(
        self,
        bag_path: str | Path,
        out_path: str | Path,
        topics: Sequence[str],
        *,
        palette: object | None = None,
        ignore: Collection[int] = (),
    ) -> None:
        highlevel = require("rosbags.highlevel", INSTALL_ROSBAGS)
        rosbag2 = require("rosbags.rosbag2", INSTALL_ROSBAGS)
        self.out_path = Path(out_path)
        self.palette = palette
        self.ignore = tuple(ignore)
        self.typestore = humble_typestore()
        self.copied = 0  # input messages written
        self.masks = 0  # label maps written (each with its colour mask)
        self._reader = highlevel.AnyReader([Path(bag_path)], default_typestore=self.typestore)  # type: ignore[attr-defined]
        self._reader.open()
        self._tmp_dir = self.out_path.with_name(f".{self.out_path.name}.{secrets.token_hex(4)}.tmp")
        writer = rosbag2.Writer(self._tmp_dir, version=9, storage_plugin=rosbag2.StoragePlugin.MCAP)  # type: ignore[attr-defined]
        try:
            writer.open()
        except OSError as exc:
            self._reader.close()
            raise SegError(write_problem(exc, self.out_path, "another output folder (-o)")) from None
        self._writer: Any = writer
        try:
            self._copies = self._add_input_connections(topics)
            self._outputs = {
                (topic, kind): writer.add_connection(output_topic(topic, kind), IMAGE_TYPE, typestore=self.typestore)
                for topic in dict.fromkeys(topics)
                for kind in OUTPUT_TOPICS
            }
        except BaseException:
            self.discard()
            raise
        self._messages = self._reader.messages()
        self._pending: tuple[Any, int, bytes] | None = None

    def _add_input_connections(self, topics: Sequence[str]) -> dict[int, Any]:
        """One output connection per input connection (same topic, type, definition and QoS); refuses a bag that
        already has a topic the masks would go to."""
        existing = {c.topic for c in self._reader.connections}
        for topic in topics:
            for kind in OUTPUT_TOPICS:
                if output_topic(topic, kind) in existing:
                    raise SegError(
                        f"{self._reader.paths[0]}: already has a topic {output_topic(topic, kind)} (a segmented bag?); "
                        f"segment the original bag"
                    )
        copies: dict[int, Any] = {}
        added: dict[tuple[str, str, str], Any] = {}
        for connection in self._reader.connections:
            key = (connection.topic, connection.msgtype, repr(connection.ext))  # its QoS list is unhashable
            if key not in added:
                definition: dict[str, Any] = {"typestore": self._reader.typestore}
                if connection.msgdef.data and connection.digest:
                    definition = {"msgdef": connection.msgdef.data, "rihs01": connection.digest}
                added[key] = self._writer.add_connection(
                    connection.topic,
                    connection.msgtype,
                    serialization_format=connection.ext.serialization_format,
                    offered_qos_profiles=connection.ext.offered_qos_profiles,
                    **definition,
                )
            copies[connection.id] = added[key]
        return copies

    def write(self, frame: Frame, labels: np.ndarray) -> None:
        """Copy the input up to `frame`'s log time, then its label map and colour mask, with its header."""
        meta: BagMessage = frame.meta
        self._copy_until(meta.log_ns)
        colours = colorize(labels, self.palette, ignore=self.ignore)
        for kind, fields in (("labels", labels_fields(labels)), ("color", rgb_fields(colours))):
            raw = self.typestore.serialize_cdr(self._image(meta.header, fields), IMAGE_TYPE)
            self._writer.write(self._outputs[(meta.topic, kind)], meta.log_ns, raw)
        self.masks += 1

    def _image(self, header: Any, fields: ImageFields) -> Any:
        types = self.typestore.types
        stamp = types["builtin_interfaces/msg/Time"](sec=header.stamp.sec, nanosec=header.stamp.nanosec)
        return types[IMAGE_TYPE](
            header=types["std_msgs/msg/Header"](stamp=stamp, frame_id=header.frame_id),
            height=fields.height,
            width=fields.width,
            encoding=fields.encoding,
            is_bigendian=fields.is_bigendian,
            step=fields.step,
            data=fields.data,
        )

    def _copy_until(self, log_ns: int | None) -> None:
        """Copy input messages logged at or before `log_ns` (all of them for None)."""
        while True:
            if self._pending is None:
                self._pending = next(self._messages, None)
                if self._pending is None:
                    return
            connection, timestamp, raw = self._pending
            if log_ns is not None and timestamp > log_ns:
                return
            self._writer.write(self._copies[connection.id], timestamp, raw)
            self.copied += 1
            self._pending = None

    def finish(self, *, complete: bool) -> Path:
        """Close the bag and move it into place. `complete`: copy the rest of the input first (the run got to the
        end of its frames); otherwise the copy ends where the frames did. Returns the bag's path."""
        try:
            if complete:
                self._copy_until(None)
        except Exception as exc:  # the copy reader meets the same broken chunk the frames' reader did
            complete_error = first_line(exc, with_type=True)
        else:
            complete_error = ""
        try:
            self._close_writer()
            os.replace(self._tmp_dir / f"{self._tmp_dir.name}.mcap", self.out_path)
        except OSError as exc:
            self.discard()
            raise SegError(write_problem(exc, self.out_path, "another output folder (-o)")) from None
        finally:
            self._close_reader()
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        if complete_error:
            raise BagBroken(
                f"{self.out_path}: the input's last messages could not be copied ({complete_error}); "
                f"what came before is written"
            )
        return self.out_path

    def discard(self) -> None:
        """Close everything and remove the temporary bag (an unexpected failure: no half output)."""
        with contextlib.suppress(Exception):
            self._close_writer()
        self._close_reader()
        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _close_reader(self) -> None:
        if self._reader.stack is not None:
            self._reader.close()
