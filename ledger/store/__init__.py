"""PostgreSQL adapter for the ledger: migrations, the log store, proofs."""
