class InfraError(RuntimeError):
    """A local server could not be found, started or reached; the message says what to do."""
