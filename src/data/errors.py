"""The data pipeline's error type."""


class DataError(ValueError):
    """A data set that is missing, empty, unreadable or inconsistent with the configuration."""
