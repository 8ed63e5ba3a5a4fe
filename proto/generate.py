#!/usr/bin/env python3
"""Regenerate the Python wire code and the API reference from the .proto files.

    python proto/generate.py                    # code into proto/, docs into docs/api.md
    python proto/generate.py --out DIR          # code into DIR/provault/v1/
    python proto/generate.py --docs FILE        # API reference into FILE
    python proto/generate.py --no-docs          # code only

The code (``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``) is committed beside
the .proto files and compiled with ``-I proto``, so imports read
``from provault.v1 import ledger_pb2``.  The API reference is rendered from the
comments in the .proto files (protoc ``--include_source_info``); an element
without a comment is an error, not a blank cell.

Output depends only on the .proto files and the grpcio-tools version: the same
inputs give byte-identical files (tests/test_proto.py checks the committed
ones).  Needs only the standard library, protobuf and grpcio-tools.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
DEFAULT_DOCS = REPO_ROOT / "docs" / "api.md"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# Paths into FileDescriptorProto & co. used by SourceCodeInfo.Location.path.
_FILE_SYNTAX, _FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 12, 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in _FDP.Type.items()
    if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


class GenerateError(Exception):
    """protoc failed, or the .proto files break a documentation rule."""


# --- running protoc ---------------------------------------------------------


def proto_files() -> list[Path]:
    """Every .proto file under proto/provault, in a stable order."""
    return sorted((PROTO_ROOT / "provault").rglob("*.proto"))


def _protoc(*args: str) -> None:
    from grpc_tools import protoc  # noqa: PLC0415 - only needed to generate, not at install time

    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    files = [str(p) for p in proto_files()]
    if not files:
        raise GenerateError(f"no .proto files under {PROTO_ROOT / 'provault'}")
    argv = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", *args, *files]
    if protoc.main(argv) != 0:
        raise GenerateError("protoc failed (its errors are printed above): " + " ".join(args))


def generate_code(out_dir: Path) -> list[Path]:
    """Compile every .proto file into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _protoc(f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}")
    return generated_files(out_dir)


def generated_files(root: Path) -> list[Path]:
    """The generated Python files under ``root/provault``, in a stable order."""
    return sorted(p for p in (root / "provault").rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES))


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The project's .proto files as descriptors, with their comments."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptors.binpb"
        _protoc("--include_source_info", f"--descriptor_set_out={out}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


# --- reading comments -------------------------------------------------------


class _Comments:
    """Comments of one file, looked up by source-info path; records gaps."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto, missing: list[str]) -> None:
        self.file = file.name
        self._missing = missing
        self._by_path: dict[tuple[int, ...], str] = {}
        for loc in file.source_code_info.location:
            text = textwrap.dedent(loc.leading_comments or loc.trailing_comments).strip()
            if text:
                self._by_path[tuple(loc.path)] = text

    def get(self, path: Iterable[int], what: str) -> str:
        text = self._by_path.get(tuple(path), "")
        if not text:
            self._missing.append(f"{self.file}: {what} has no comment")
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class _Type:
    """A message or enum of the package, and where its comments live."""

    full_name: str  # ".provault.v1.Entry"
    name: str  # "Entry"; nested types read "Outer.Inner"
    proto: descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto
    comments: _Comments
    path: tuple[int, ...]

    @property
    def is_map_entry(self) -> bool:
        return isinstance(self.proto, descriptor_pb2.DescriptorProto) and self.proto.options.map_entry


# --- rendering markdown -----------------------------------------------------


def _cell(text: str) -> str:
    """One table cell: a single line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _slug(heading: str) -> str:
    """The anchor GitHub (and mkdocs) derive from a heading without spaces."""
    return re.sub(r"[^a-z0-9_-]", "", heading.lower())


def _shape(type_name: str, streaming: bool) -> str:
    return ("stream " if streaming else "") + type_name.rsplit(".", 1)[1]


class _Renderer:
    """Turns a FileDescriptorSet with source info into the API reference."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet, package: str) -> None:
        self.package = package
        self.files = [f for f in fds.file if f.package == package]
        self.missing: list[str] = []
        self.comments = {f.name: _Comments(f, self.missing) for f in self.files}
        self.types: dict[str, _Type] = {}
        self.headings: list[str] = []
        for file in self.files:
            for i, msg in enumerate(file.message_type):
                self._index(msg, f".{package}", (_FILE_MESSAGE, i), self.comments[file.name])
            for i, enum in enumerate(file.enum_type):
                self._index(enum, f".{package}", (_FILE_ENUM, i), self.comments[file.name])

    def _index(self, proto, prefix: str, path: tuple[int, ...], comments: _Comments) -> None:
        full = f"{prefix}.{proto.name}"
        self.types[full] = _Type(
            full_name=full, name=full.removeprefix(f".{self.package}."), proto=proto, comments=comments, path=path
        )
        if isinstance(proto, descriptor_pb2.DescriptorProto) and not proto.options.map_entry:
            for i, nested in enumerate(proto.nested_type):
                self._index(nested, full, (*path, _MSG_NESTED, i), comments)
            for i, enum in enumerate(proto.enum_type):
                self._index(enum, full, (*path, _MSG_ENUM, i), comments)

    # pieces -----------------------------------------------------------------

    def _heading(self, level: int, title: str) -> str:
        self.headings.append(title)
        return f"{'#' * level} {title}"

    def _type_ref(self, type_name: str) -> str:
        known = self.types.get(type_name)
        if known:
            return f"[{known.name}](#{_slug(known.name)})"
        return f"`{type_name.lstrip('.')}`"

    def _field_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        known = self.types.get(field.type_name)
        if known and known.is_map_entry:
            key, value = known.proto.field
            return f"map<{self._field_type(key)}, {self._field_type(value)}>"
        base = f"`{_SCALARS[field.type]}`" if field.type in _SCALARS else self._type_ref(field.type_name)
        if field.label == _FDP.LABEL_REPEATED:
            return f"repeated {base}"
        return f"optional {base}" if field.proto3_optional else base

    def _fields_table(self, t: _Type) -> list[str]:
        msg = t.proto
        if not msg.field:
            return ["No fields.", ""]
        lines = ["| Field | # | Type | Description |", "| --- | --- | --- | --- |"]
        for i, field in enumerate(msg.field):
            text = t.comments.get((*t.path, _MSG_FIELD, i), f"field {t.name}.{field.name}")
            if field.HasField("oneof_index") and not field.proto3_optional:
                text = f"One of `{msg.oneof_decl[field.oneof_index].name}`. {text}"
            lines.append(f"| `{field.name}` | {field.number} | {self._field_type(field)} | {_cell(text)} |")
        return [*lines, ""]

    def _message_body(self, t: _Type) -> list[str]:
        msg = t.proto
        lines = [t.comments.get(t.path, f"message {t.name}"), "", *self._fields_table(t)]
        oneofs = sorted({f.oneof_index for f in msg.field if f.HasField("oneof_index") and not f.proto3_optional})
        for index in oneofs:
            name = msg.oneof_decl[index].name
            text = t.comments.get((*t.path, _MSG_ONEOF, index), f"oneof {t.name}.{name}")
            lines += [f"Oneof `{name}`: {_cell(text)}", ""]
        reserved = [str(r.start) if r.end - r.start == 1 else f"{r.start}–{r.end - 1}" for r in msg.reserved_range]
        reserved += [f"`{n}`" for n in msg.reserved_name]
        if reserved:
            lines += [f"Reserved: {', '.join(reserved)}.", ""]
        return lines

    def _enum_body(self, t: _Type) -> list[str]:
        lines = [t.comments.get(t.path, f"enum {t.name}"), "", "| Value | # | Description |", "| --- | --- | --- |"]
        for i, value in enumerate(t.proto.value):
            text = t.comments.get((*t.path, _ENUM_VALUE, i), f"enum value {value.name}")
            lines.append(f"| `{value.name}` | {value.number} | {_cell(text)} |")
        return [*lines, ""]

    # sections ---------------------------------------------------------------

    def _services(self) -> list[tuple[descriptor_pb2.FileDescriptorProto, int, descriptor_pb2.ServiceDescriptorProto]]:
        return [(file, i, service) for file in self.files for i, service in enumerate(file.service)]

    def _overview_section(self) -> list[str]:
        lines = [self._heading(2, "Overview"), ""]
        for file in self.files:
            overview = self.comments[file.name].get((_FILE_SYNTAX,), "the `syntax` line (file overview)")
            lines += [f"**`{file.name}`**", "", overview, ""]
        return lines

    def _service_section(self, file, index: int, service, used: set[str]) -> list[str]:
        comments, path = self.comments[file.name], (_FILE_SERVICE, index)
        lines = [
            self._heading(2, service.name),
            "",
            f"`{file.package}.{service.name}` in `{file.name}`.",
            "",
            comments.get(path, f"service {service.name}"),
            "",
            "| RPC | Request | Response |",
            "| --- | --- | --- |",
        ]
        for m in service.method:
            req = ("stream " if m.client_streaming else "") + self._type_ref(m.input_type)
            res = ("stream " if m.server_streaming else "") + self._type_ref(m.output_type)
            lines.append(f"| [{m.name}](#{_slug(m.name)}) | {req} | {res} |")
        lines.append("")
        for i, m in enumerate(service.method):
            comment = comments.get((*path, _SERVICE_METHOD, i), f"rpc {service.name}.{m.name}")
            signature = (
                f"rpc {m.name}({_shape(m.input_type, m.client_streaming)})"
                f" returns ({_shape(m.output_type, m.server_streaming)})"
            )
            lines += [self._heading(3, m.name), "", f"`{signature}`", "", comment, ""]
            for type_name in (m.input_type, m.output_type):
                used.add(type_name)
                t = self.types[type_name]
                lines += [self._heading(4, t.name), "", *self._message_body(t)]
        return lines

    def _types_section(self, used: set[str]) -> list[str]:
        lines = [self._heading(2, "Types"), "", "The package's other messages and its enums, by file.", ""]
        for file in self.files:
            here = [
                t
                for t in self.types.values()
                if t.comments.file == file.name and t.full_name not in used and not t.is_map_entry
            ]
            for kind, cls, body in (
                ("message", descriptor_pb2.DescriptorProto, self._message_body),
                ("enum", descriptor_pb2.EnumDescriptorProto, self._enum_body),
            ):
                for t in (t for t in here if isinstance(t.proto, cls)):
                    lines += [self._heading(3, t.name), "", f"*{kind} in `{file.name}`*", "", *body(t)]
        return lines

    def render(self) -> str:
        used: set[str] = set()
        services = self._services()
        body = self._overview_section()
        for file, index, service in services:
            body += self._service_section(file, index, service, used)
        body += self._types_section(used)
        if self.missing:
            raise GenerateError("every element needs a comment; missing:\n  " + "\n  ".join(self.missing))
        slugs = [_slug(h) for h in self.headings]
        clashes = sorted({s for s in slugs if slugs.count(s) > 1})
        if clashes:
            raise GenerateError(f"two headings would share an anchor: {', '.join(clashes)}")
        contents = ["## Contents", "", "- [Overview](#overview)"]
        for _, _, service in services:
            rpcs = ", ".join(f"[{m.name}](#{_slug(m.name)})" for m in service.method)
            contents.append(f"- [{service.name}](#{_slug(service.name)}): {rpcs}")
        contents += ["- [Types](#types)", ""]
        head = [
            f"# provault gRPC API (`{self.package}`)",
            "",
            "<!-- Generated by `python proto/generate.py` from proto/provault/v1/*.proto; do not edit by hand. -->",
            "",
            "This reference is generated from the comments in `proto/provault/v1/*.proto`."
            " To change it, edit those comments and run `python proto/generate.py`.",
            "",
        ]
        return "\n".join([*head, *contents, *body]).rstrip("\n") + "\n"


def render_docs(fds: descriptor_pb2.FileDescriptorSet, package: str = "provault.v1") -> str:
    """The API reference (Markdown) for ``package``; raises on undocumented elements."""
    return _Renderer(fds, package).render()


# --- command line -----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=PROTO_ROOT,
        help="directory to write provault/v1/*_pb2*.py* into (default: %(default)s)",
    )
    parser.add_argument(
        "--docs", type=Path, default=DEFAULT_DOCS, help="file to write the API reference to (default: %(default)s)"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write the API reference")
    args = parser.parse_args(argv)
    try:
        written = generate_code(args.out.resolve())
        if not args.no_docs:
            args.docs.parent.mkdir(parents=True, exist_ok=True)
            args.docs.write_text(render_docs(descriptor_set()), encoding="utf-8", newline="\n")
            written.append(args.docs)
    except GenerateError as e:
        print(f"generate.py: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
