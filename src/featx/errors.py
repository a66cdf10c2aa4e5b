"""The exceptions featx raises on bad input, rooted at :class:`FeatxError`.

Every message is one line that says what is wrong and how to fix it; the CLI prints it as
``Error: <message>`` and exits with status 1.
"""


class FeatxError(Exception):
    """Base of every error featx reports to a user."""


class InputError(FeatxError, ValueError):
    """The inputs cannot be used: empty, missing, unreadable, or of the wrong kind.

    Also a ``ValueError``, so the estimators in :mod:`featx.fit` raise what scikit-learn
    expects of bad input."""


class ImageDecodeError(InputError):
    """An image file could not be decoded."""


class LayerError(FeatxError):
    """A layer alias is not known to the backbone."""


class WeightsError(FeatxError):
    """Model weights cannot be obtained or do not fit the architecture."""


class OutputExistsError(FeatxError):
    """The output already holds results that this run would replace."""


class ProvenanceError(FeatxError):
    """An input was produced under settings that do not fit this stage."""


class NonFiniteError(FeatxError):
    """NaN or Inf values appeared where finite numbers are required."""


class OutputError(FeatxError):
    """The output cannot be written: an unwritable path, a full disk, another run holds it."""


class OutputLockedError(OutputError):
    """Another featx run is writing the same output."""


class DiskFullError(OutputError):
    """Not enough free disk space for what the run writes next."""


class DistributedError(FeatxError):
    """The processes of a multi-process run (torchrun) disagree or lost one another."""
