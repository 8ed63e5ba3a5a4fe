"""The pure core of provault: no I/O library, no generated code.

Modules: ``errors`` (one hierarchy), ``keys`` (Ed25519, key ids, key files),
``envelope`` (DSSE), ``ids`` (UUIDv7, content ids), ``events`` (the event
contract), ``provjson`` (PROV-JSON validation), ``vocab`` (shared prefixes),
``merkle`` (RFC 9162), ``frontier`` (appending to a stored tree),
``checkpoint`` (C2SP signed checkpoints), ``keyring`` (who may sign what) and
``admission`` (checking and sequencing submissions).
"""
