"""TensorRT-LLM backend: typed config (:mod:`.config`) and engine (:mod:`.backend`)."""
