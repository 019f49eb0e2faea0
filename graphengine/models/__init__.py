"""Model folders, checkpoint loading and the cache of loaded models.

``library`` (folders, names; no torch) is the entry point; ``manager`` loads checkpoints into socket
values; ``checkpoint_maker`` writes random-weight checkpoints for tests and benchmarks.
"""
