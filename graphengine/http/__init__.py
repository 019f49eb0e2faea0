"""The HTTP/websocket server: ``create_app(config, engine)`` in ``graphengine.http.app``."""
