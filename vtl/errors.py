"""Errors a user can cause and fix: the CLIs print them as one line and exit non-zero."""


class UserError(Exception):
    """Bad input or environment; the message says what, where, and how to fix it."""


class ManifestError(UserError):
    """A manifest CSV that breaks the contract in docs/DESIGN.md."""


class FeatureFileError(UserError):
    """An HDF5 file that is not a valid vtl feature file, or files that disagree."""
