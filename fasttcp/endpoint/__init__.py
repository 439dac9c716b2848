"""The sans-IO TCP endpoint: the RFC 9293 lifecycle as C over the table (endpoint_core.pxi)
with a Python face (endpoint.pyx: `Endpoint`, `Connection`, `Event`, batch calls).
"""
