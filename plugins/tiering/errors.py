"""Errors a user can act on. The DAG fails such a task at once (no retry) and the CLI
prints the message as its one-line reason."""


class TieringError(RuntimeError):
    """Base class: the message says what was wrong, where, and what to do."""


class QualityGateError(TieringError):
    """A batch-level data quality expectation failed; the run stops before publishing."""


class DbtError(TieringError):
    """dbt build failed (a model error or a failing dbt test)."""
