"""Edge node: what a node next to the base stations runs.

- ``serving``: the user plane — admission, personalisation (knowledge base, profiles), routing,
  cloud calls, de-sensitisation and post-processing, and the profile service;
- ``model``: the edge GPT-2 on ONNX Runtime — export, quantisation behind its quality gate, the
  engine and its batched decode, artifacts, deployment and training;
- ``netmgmt``: the network-management task models (intent inference, popularity prediction) and
  their service;
- ``openai_api``: the OpenAI-compatible HTTP API, an adapter over the same generation call as the
  gRPC servicer;
- ``daemon``: the wiring of them all into one server.

Imports point one way: ``daemon`` → ``openai_api`` | ``netmgmt`` → ``model`` → ``serving`` (the quality
gate builds its held-out prompts as serving does).
"""
