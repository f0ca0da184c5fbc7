"""`python -m app`, and the entry point of the PyInstaller build."""

import multiprocessing

from app.cli import main

if __name__ == "__main__":
    # A frozen app that starts a process (multiprocessing, or a library that does) re-runs this
    # executable as the child; freeze_support lets the child do its job instead of opening the app.
    multiprocessing.freeze_support()
    raise SystemExit(main())
