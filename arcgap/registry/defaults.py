"""The defaults of the two transport settings an operator may change (--retry-budget, --stall-timeout), defined
here only: :mod:`arcgap.registry.transport`, the options and the command line read them from here. A module of
its own, without httpx, so that the command line's help costs no HTTP client import at start-up."""

DEFAULT_RETRY_BUDGET_S = 300.0
DEFAULT_STALL_S = 60.0
DEFAULT_MIN_BYTES_PER_S = 1024
MAX_RETRY_AFTER_S = 30.0  # the longest Retry-After honoured as asked
