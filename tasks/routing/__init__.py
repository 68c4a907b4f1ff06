"""The learned router: routing data collected as a deployment can, the router trained on it, and its frontier."""
