"""The core controller daemon: the control and compute planes wired into one server."""
