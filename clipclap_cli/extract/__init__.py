"""Feature extraction from videos: decoding (PyAV) and the resumable, shardable extraction job."""
