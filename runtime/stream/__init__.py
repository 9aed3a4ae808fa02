"""Frames from where they come from (files, cameras, streams, bags, ROS topics) through a model, and out.

`frame` is what every source yields; `slots` hands frames between threads: in order for a file, newest wins
for a live source. `sources.open_source` opens what a user names (`names` says what it is), reading through
`ffmpeg_source` (PyAV) or `camera_source` (OpenCV); `sinks` and `video_sink` are where results go; `pipeline`
runs reading, the model and writing at once. docs/streams.md has the tables.
"""
