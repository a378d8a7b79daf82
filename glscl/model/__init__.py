"""The model: the open_clip backbone and the similarity heads (GLSCL, mean pooling, VTC) with their factory."""
