"""Shared contracts of the video transferability lab: the manifest and the HDF5 feature format.

Both stages (`extract` and `probe`) import these modules; nothing here imports torch.
"""

__version__ = "0.1.0"
