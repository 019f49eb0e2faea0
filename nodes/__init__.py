"""graphengine's node packs. Each module exposes ``pack() -> NodePack``; nothing registers on import."""
