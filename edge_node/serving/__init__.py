"""The edge's user plane: a concise prompt in, a personalised prompt answered here or at the cloud out."""
