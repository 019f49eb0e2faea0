"""Downstream image servers (another graphengine, A1111 or SD.Next) that ``/v1/images`` requests are
routed to, as sd-proxy-server does: registration with an address guard, least-loaded choice among
healthy servers, periodic health checks, and one retry elsewhere when a call fails.
"""
