"""User-facing errors.

Every error that a user can cause (a bad file, an unknown name, a malformed field) is raised as an
``OpscopeError`` whose message names the problem: the file, the line, the field.  The CLI prints
that message on one line and exits with status 2; it never shows a traceback from deep inside TVM.
"""

from __future__ import annotations


class OpscopeError(Exception):
    """A problem with the user's input or environment, with a message fit to print as is."""


class SpecError(OpscopeError):
    """A target spec file is malformed; the message names the file and the field."""


class WorkloadError(OpscopeError):
    """A model could not be turned into operators; the message names the file/line/operator."""


class StoreError(OpscopeError):
    """The measurement store cannot be opened, migrated or written."""


class PredictorError(OpscopeError):
    """A saved predictor cannot be loaded or does not fit the data given to it."""


def unknown_name(what: str, name: str, known: list[str] | tuple[str, ...]) -> OpscopeError:
    """The error for an unknown model/target/option value: lists what exists."""
    return OpscopeError(f"unknown {what} {name!r}; known: {', '.join(sorted(known))}")
