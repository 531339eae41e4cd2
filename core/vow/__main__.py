"""``python -m vow``: the ``vow`` command line."""

from vow.cli import main

if __name__ == "__main__":
    main()
