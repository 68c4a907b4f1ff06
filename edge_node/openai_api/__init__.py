"""The edge's OpenAI-compatible HTTP API (``openai_listen``): ``app`` (routes, streaming), ``protocol``
(OpenAI request bodies → an ``Ask``), ``convert`` (domain events → OpenAI objects), ``models`` (model ids
→ routes), ``sessions`` (the session a call generates in), ``access`` (the gRPC access rules over HTTP),
``errors`` (the OpenAI error shape). An adapter over ``serving.generate_call``, as the gRPC servicer is."""
