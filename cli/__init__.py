"""The ``netgpt`` command line: argument parsing and printing over the apps in ``appkit``."""
