"""llem's Hydra plugins (shipped in the llenergymeasure distribution)."""
