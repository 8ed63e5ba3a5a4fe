"""N-Triples and Turtle written as the triples arrive, and byte chunking."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._names import NAMESPACES, NT_ESCAPES, RDF_TYPE, TTL_LOCAL, TTL_PREFIXES, Lit, Term, Triple

# --- N-Triples and Turtle, streamed ----------------------------------------------------------------


def nt_term(term: Term) -> str:
    if not isinstance(term, Lit):
        return f"<{term}>"
    text = '"' + term.lexical.translate(NT_ESCAPES) + '"'
    if term.lang:
        return f"{text}@{term.lang}"
    return f"{text}^^<{term.datatype}>" if term.datatype else text


def nt_line(t: Triple) -> str:
    return f"<{t[0]}> <{t[1]}> {nt_term(t[2])} .\n"


def ntriples_text(source: Iterable[Triple]) -> Iterator[str]:
    """N-Triples, one line per triple (duplicates are kept: readers merge them)."""
    return map(nt_line, source)


def _ttl_name(iri: str) -> str:
    for prefix, ns in TTL_PREFIXES:
        if iri.startswith(ns):
            local = iri[len(ns) :]
            return f"{prefix}:{local}" if TTL_LOCAL.fullmatch(local) else f"<{iri}>"
    return f"<{iri}>"


def _ttl_term(term: Term) -> str:
    if not isinstance(term, Lit):
        return _ttl_name(term)
    text = '"' + term.lexical.translate(NT_ESCAPES) + '"'
    if term.lang:
        return f"{text}@{term.lang}"
    return f"{text}^^{_ttl_name(term.datatype)}" if term.datatype else text


def turtle_text(source: Iterable[Triple]) -> Iterator[str]:
    """Turtle written as the triples come: the prefixes, then consecutive triples of a subject grouped with ``;``.

    Prefixed names are used where the local part is plain (letters, digits,
    ``_ . -``); anything else is written as ``<iri>``, so no escaping rule of
    the Turtle grammar is ever needed.
    """
    for prefix, ns in NAMESPACES.items():
        yield f"@prefix {prefix}: <{ns}> .\n"
    subject: str | None = None
    for s, p, o in source:
        predicate = "a" if p == RDF_TYPE else _ttl_name(p)
        if s == subject:
            yield f" ;\n    {predicate} {_ttl_term(o)}"
        else:
            yield f"{' .' if subject is not None else ''}\n\n{_ttl_name(s)} {predicate} {_ttl_term(o)}"
            subject = s
    if subject is not None:
        yield " .\n"


def encoded(text: Iterable[str], batch: int = 512) -> Iterator[bytes]:
    pieces: list[str] = []
    for piece in text:
        pieces.append(piece)
        if len(pieces) >= batch:
            yield "".join(pieces).encode()
            pieces.clear()
    if pieces:
        yield "".join(pieces).encode()


def rechunk(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """Pieces of any size as chunks of exactly ``chunk_bytes`` (the last one shorter)."""
    buf = bytearray()
    for piece in pieces:
        buf += piece
        if len(buf) >= chunk_bytes:
            view = memoryview(buf)
            cut = len(buf) - len(buf) % chunk_bytes
            for i in range(0, cut, chunk_bytes):
                yield bytes(view[i : i + chunk_bytes])
            view.release()
            del buf[:cut]
    if buf:
        yield bytes(buf)
