"""Edge node: what a node next to the base stations runs.

- ``serving``: the user plane — admission, personalisation (knowledge base, profiles), routing,
  cloud calls, de-sensitisation and post-processing, and the profile service;
- ``model``: the edge GPT-2 on ONNX Runtime — export, quantisation behind its quality gate, the
  engine and its batched decode, artifacts, deployment and training;
- ``netmgmt``: the network-management task models (intent inference, popularity prediction) and
  their service;
- ``daemon``: the wiring of all three into one server.

Imports point one way: ``daemon`` → ``netmgmt`` → ``model`` → ``serving`` (the quality gate builds
its held-out prompts as serving does).
"""
