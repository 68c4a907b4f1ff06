"""The ``netgpt`` command line and the apps on top of the planes: client, topology view, demo."""
