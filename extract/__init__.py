"""Extraction stage: decode videos once, detect shots, sample clips, embed them with frozen
backbones, write HDF5."""
