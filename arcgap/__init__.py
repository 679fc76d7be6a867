"""arcgap: carry container images across an air gap, digest for digest."""

__version__ = "0.1.0"
