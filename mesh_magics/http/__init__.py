"""Talking to MeshAPI: the async client, its SSE reader, stream frames, error envelopes and
the retry policy (docs/protocol.md). Nothing here knows of notebooks."""
