"""The supply chain on top of the ledger's proofs (docs/supply-chain.md).

* :mod:`.evidence` -- a model's lifecycle as a **verified** audit bundle, with its key history, approvals
  and quarantines: what every decision below is made from;
* :mod:`.signer` -- the attestation key, which signs attestations and gate decisions, and its registration;
* :mod:`.policy` / :mod:`.gate` -- gate policies as code, and the decision;
* :mod:`.attest` -- in-toto Statement v1 / SLSA Provenance v1 attestations, and their offline check;
* :mod:`.bom` -- CycloneDX 1.6 ML bills of materials;
* :mod:`.admission` -- the Kubernetes ``AdmissionReview`` endpoint backed by the gate;
* the commands are in ``query/cli``: ``gate.py`` (``approve``, ``quarantine``, ``gate``), ``attest.py``
  (``attest``, ``verify-attestation``), ``bom.py`` and ``admission.py`` (``admission serve``).
"""
