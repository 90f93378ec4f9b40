"""``backend=openai``: an engine behind an OpenAI-compatible HTTP server, driven by a load."""
