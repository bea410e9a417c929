"""REST gateway: the documented Emporix paths, translated to gRPC calls and back.

No business rules live here: the gateway parses HTTP, calls the gRPC service through the
generated stubs, and renders the answer (or the error) the way Emporix documents it.
"""
