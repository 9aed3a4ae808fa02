"""Frames from where they come from (files, cameras, streams, bags, ROS topics) through a model, and out.

`frame` is what every source yields; `slots` hands frames between threads: in order for a file, newest wins
for a live source.
"""
