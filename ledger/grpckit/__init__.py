"""The gRPC server kit both provault services are built from (public: the query side uses it too).

``server`` (assembly, read pool, health, reflection), ``service`` (a server as a stack service, request
bytes parsed after authentication), ``auth`` (the authentication seam and method-role tables), ``tokens``
(the servers' store of hashed bearer tokens), ``status`` (the one table from errors to status codes).
"""
