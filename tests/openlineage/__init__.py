"""Tests of the OpenLineage endpoint, its checks, its mapping and its import (docs/openlineage.md)."""
