"""vLLM offline-engine backend: typed config (:mod:`.config`) and engine (:mod:`.backend`)."""
