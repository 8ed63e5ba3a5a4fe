"""OpenLineage into provault: the HTTP endpoint, the file import, the checks and the PROV mapping (docs/openlineage.md)."""
