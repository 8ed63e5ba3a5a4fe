"""The ledger service: ingest from JetStream, gRPC LedgerService, checkpoints."""
