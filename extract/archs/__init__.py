"""Architectures that no library we build on ships, written here module for module as their
authors published them, so that the authors' checkpoints load strictly (same module and
parameter names, same shapes):

- `shufflenet3d`: the 3D ShuffleNet and 3D ShuffleNetV2 of Efficient-3DCNNs (Köpüklü et al.,
  2019), the reference work's 3D ShuffleNet, with the Kinetics-600 class names of their
  checkpoints (`kinetics600`).
"""
