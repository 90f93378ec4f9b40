"""Serving mode: stream requests to an OpenAI-compatible server under a load and measure each token.

- :mod:`llem.serving.stream`: the async stream client and the per-request record.
- :mod:`llem.serving.driver`: open-loop and closed-loop drivers; the steady window's live marks.
- :mod:`llem.serving.window`: steady-state and whole-run figures (pure functions).
- :mod:`llem.serving.phases`: meter windows (ramp, steady, drain) that follow a run, in a thread.
- :mod:`llem.serving.prometheus`: the server's Prometheus metrics as time-series rows.
"""
