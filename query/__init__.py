"""The query side: the PROV projection of the log and the queries over it (docs/query.md).

``query.projector`` keeps the ``prov`` tables caught up with the ledger;
``query._mapping`` is its pure entry-to-rows mapping.
"""
