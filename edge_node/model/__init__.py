"""The edge GPT-2 on ONNX Runtime: export, quantisation and its gate, the engine, artifacts, deploy, training."""
