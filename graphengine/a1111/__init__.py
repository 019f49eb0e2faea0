"""The AUTOMATIC1111 / SD.Next façade: request models, sampler and scheduler names, options, and the
translation of ``/sdapi/v1`` generation bodies into API-format workflow graphs.

Everything here is pure (no torch, no HTTP): the routes in ``graphengine.http.sdapi`` parse a body
into a request model, build a graph with ``graphengine.a1111.graph`` and submit it to the same queue
as ``POST /prompt``.
"""
