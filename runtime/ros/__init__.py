"""ROS 2 for segrt: image messages to RGB arrays and label maps back, recorded bags (rosbag2, MCAP) segmented
offline with `rosbags`, and a live node with `rclpy`. Both libraries are optional and imported lazily."""
