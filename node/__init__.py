"""What every serving node (edge or cloud) runs: its handle, load reports, command dispatch."""
