"""``python -m arcgap``."""

from arcgap.cli import main

if __name__ == "__main__":
    main()
