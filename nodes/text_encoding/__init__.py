"""CLIPTextEncode's implementation: prompt syntax, tokens in 77-token windows, and CLIP encoding.

``parser`` and ``chunking`` are pure Python (no torch); ``embeddings`` and ``encoder`` use torch and
are imported only when a prompt is actually encoded.
"""
