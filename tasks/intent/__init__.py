"""Intent inference (intent-based networking): operator requests → structured network intents.

``generator`` makes seeded requests (training and held-out phrasings), ``baseline`` is the rule/regex
extractor, ``dataset`` writes the trainer's JSONL, ``recipe`` trains the edge's intent GPT-2 and
``evaluate`` scores both on held-out phrasings. See ``tasks/intent/README.md``.
"""
