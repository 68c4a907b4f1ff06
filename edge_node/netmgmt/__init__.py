"""The edge's network-management task models (intent inference, popularity prediction) and their service."""
