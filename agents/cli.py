"""``provault run``, ``provault dataset register``, ``provault model register|deploy``.

``provault run [options] -- CMD ...`` records any command as a run without
changing it: command line, code commit, environment, author and host, then
``run.started``; it runs the command with the terminal's stdin, stdout and
stderr, forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to it, digests the
declared outputs once it exits 0, emits ``run.completed`` (or ``run.failed``
with the exit code) and exits with the command's exit code (128 + N when a
signal N ended it; 127 when it does not exist, 126 when it cannot be
executed).  Its own messages go to stderr, so the command's stdout stays
clean.

A signal typed at the terminal already reaches the whole foreground process
group, the command included; on Linux the wrapper sees that it came from the
kernel and does not send it a second time (unless the command left the
wrapper's process group).  Elsewhere it forwards every signal it receives.

``provault model register PATH --signature FILE --public-key PEM`` (or
``--certificate-chain PEM``) verifies an OpenSSF model-signing signature over
PATH first (:mod:`agents.signatures`); when it does not hold, nothing is emitted.

Events are durable once spooled: when the ledger cannot be reached in
``agent.publish_timeout_s``, the commands say the events are spooled and
exit 0; they are sent by the next agent with the same producer id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.config import settings_from
from ledger.core.errors import ProvaultError, expected_found

from . import assets
from ._prov import json_text
from .runs import Run

if TYPE_CHECKING:
    from ledger.config import Settings

    from .runtime import Agent

COMMAND_NOT_FOUND = 127
CANNOT_EXECUTE = 126
FORWARDED = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))
_SI_KERNEL = 0x80
"""Linux ``si_code`` of a signal the kernel sent (terminal keys go to the whole foreground process group)."""
_RESET_IN_CHILD = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))
"""Signals Python ignores that a child must get back at their defaults (as ``subprocess`` does)."""


class ManifestError(ProvaultError):
    reason = "manifest_invalid"


# --- the manifest -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Declared:
    """One declared input (``role``) or output (``kind``)."""

    path: str
    role: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    name: str | None = None
    inputs: tuple[Declared, ...] = ()
    outputs: tuple[Declared, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


def _entries(raw: Any, key: str, role_key: str, default_role: str, base: Path, problems: list[str]) -> list[Declared]:
    if not isinstance(raw, list):
        problems.append(expected_found(key, "a list of paths or tables", type(raw).__name__))
        return []
    out = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            problems.append(expected_found(where, "a path or a table with 'path'", repr(item)[:80]))
            continue
        unknown = set(item) - {"path", role_key, "name"}
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: path, {role_key}, name)")
        role, name = item.get(role_key, default_role), item.get("name")
        if not isinstance(role, str) or (name is not None and not isinstance(name, str)):
            problems.append(f"{where}: {role_key} and name must be strings")
            continue
        out.append(Declared(path=str(base / item["path"]), role=role, name=name))
    return out


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a run manifest (JSON when the name ends in ``.json``, TOML otherwise); paths are relative to it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        doc = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise ManifestError(f"manifest {file} does not exist") from None
    except (OSError, ValueError) as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ManifestError(f"manifest {file} cannot be read: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestError(expected_found(f"manifest {file}", "a table / object", type(doc).__name__))
    problems = [
        f"unknown key {k!r} (known: name, inputs, outputs, params)"
        for k in doc
        if k not in ("name", "inputs", "outputs", "params")
    ]
    base = file.resolve().parent
    inputs = _entries(doc.get("inputs", []), "inputs", "role", "data", base, problems)
    outputs = _entries(doc.get("outputs", []), "outputs", "kind", "artifact", base, problems)
    params, name = doc.get("params", {}), doc.get("name")
    if not isinstance(params, dict):
        problems.append(expected_found("params", "a table of name = value", type(params).__name__))
    if name is not None and not isinstance(name, str):
        problems.append(expected_found("name", "a string", type(name).__name__))
    if problems:
        raise ManifestError(
            f"manifest {file} is invalid:\n" + "\n".join(f"  - {p}" for p in problems),
            hint="see docs/agents.md, 'The manifest'",
        )
    return Manifest(name=name, inputs=tuple(inputs), outputs=tuple(outputs), params=params)


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v``: ``v`` as JSON when it parses (``1.0``, ``true``, ``"007"``), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ProvaultError(expected_found("--param", "NAME=VALUE", repr(text)))
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


# --- running a child with signals forwarded -------------------------------------------------


@contextlib.contextmanager
def signals_held() -> Iterator[bool]:
    """Block the forwarded signals and SIGCHLD in this thread (threads started inside inherit the mask).

    Yields whether the precise, ``sigtimedwait`` based forwarding is in use;
    on exit, signals that arrived and were not handled are discarded.
    """
    if not hasattr(signal, "sigtimedwait") or threading.current_thread() is not threading.main_thread():
        yield False
        return
    held = {*FORWARDED, signal.SIGCHLD}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield True
    finally:
        fresh = held - set(before)
        while fresh and signal.sigtimedwait(fresh, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def pending_signal() -> int | None:
    """A forwarded signal that arrived while held (consumed), or None."""
    pending = signal.sigpending() & set(FORWARDED) if hasattr(signal, "sigpending") else set()
    for signo in pending:
        signal.sigtimedwait({signo}, 0)
        return int(signo)
    return None


def wait_forwarding(cmd: Sequence[str]) -> int:
    """Run ``cmd`` (signals held by :func:`signals_held`), forward signals, return its wait status code."""
    pid = os.posix_spawnp(cmd[0], list(cmd), os.environ, setsigmask=(), setsigdef=_RESET_IN_CHILD)
    held = {*FORWARDED, signal.SIGCHLD}
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        info = signal.sigtimedwait(held, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        with contextlib.suppress(ProcessLookupError):
            if info.si_code == _SI_KERNEL and os.getpgid(pid) == os.getpgrp():
                continue  # the kernel signalled our process group (a key at the terminal): the command got it too
            os.kill(pid, info.si_signo)


def wait_with_handlers(cmd: Sequence[str]) -> int:
    """Portable fallback: Python signal handlers that forward every signal received."""
    child = subprocess.Popen(list(cmd))
    previous = {s: signal.signal(s, lambda signo, _frame: child.send_signal(signo)) for s in FORWARDED}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_code(status: int) -> tuple[int, str | None]:
    """(shell exit code, description of the failure or None) from a returncode-style status."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return 128 - status, f"command terminated by {name}"
    return status, None if status == 0 else f"command exited with code {status}"


# --- provault run ----------------------------------------------------------------------------


def _command_name(cmd: Sequence[str]) -> str:
    first = Path(cmd[0]).name
    if first.startswith("python") and len(cmd) > 1 and not cmd[1].startswith("-"):
        return Path(cmd[1]).name
    return first


def _plan(args: argparse.Namespace) -> tuple[list[str], Manifest]:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ProvaultError("no command to run", hint="put the command after --, e.g. provault run -- python train.py")
    m = load_manifest(args.manifest) if args.manifest else Manifest()
    params = {**m.params, **dict(parse_param(p) for p in args.param)}
    inputs = [*m.inputs, *(Declared(path=p, role="data") for p in args.input)]
    outputs = [
        *m.outputs,
        *(Declared(path=p, role="artifact") for p in args.output),
        *(Declared(path=p, role="model") for p in args.model),
    ]
    name = args.name or m.name or _command_name(cmd)
    return cmd, Manifest(name=name, inputs=tuple(inputs), outputs=tuple(outputs), params=params)


def _record_outputs(r: Run, outputs: Sequence[Declared]) -> list[str]:
    missing = []
    for out in outputs:
        if os.path.lexists(out.path):
            r.produce(out.path, kind=out.role, name=out.name)
        else:
            missing.append(out.path)
            print(f"provault: warning: declared output {out.path} was not produced", file=sys.stderr)
    return missing


def run_command(args: argparse.Namespace) -> int:
    cmd, plan = _plan(args)
    if shutil.which(cmd[0]) is None:
        print(f"provault: {cmd[0]}: command not found", file=sys.stderr)
        return COMMAND_NOT_FOUND
    from .runtime import agent_from_settings  # noqa: PLC0415 - keeps `provault --help` fast

    settings = settings_from(args)
    with signals_held() as precise, quiet_retries():
        agent = agent_from_settings(settings)
        try:
            return _run_wrapped(agent, settings, cmd, plan, args, precise)
        finally:
            agent.close(timeout=0)


def _run_wrapped(
    agent: Agent, settings: Settings, cmd: list[str], plan: Manifest, args: argparse.Namespace, precise: bool
) -> int:
    assert plan.name is not None
    r = Run(
        plan.name,
        params=plan.params,
        agent=agent,
        parent=args.parent,
        repo=args.repo,
        author=args.author,
        command=shlex.join(cmd),
    )
    for item in plan.inputs:
        r.use(item.path, role=item.role, name=item.name)
    r.start()
    try:
        code, failure = _execute(cmd, precise)
        if failure is None:
            missing = _record_outputs(r, plan.outputs)
            r.complete(exit_code=code, extra={"provault:missingOutputs": json_text(missing) if missing else None})
        else:
            r.fail(failure, exit_code=code)
    except BaseException as e:
        if r.status == "running":
            r.fail(e)
        raise
    delivered = agent.flush(timeout=settings.agent.publish_timeout_s)
    print(
        f"provault: run {r.id} ({r.name}) {r.status}; events {' '.join(r.event_ids)} "
        f"{'delivered' if delivered else 'spooled'}",
        file=sys.stderr,
    )
    if not delivered:
        _spooled_note(agent, settings)
    return code


def _execute(cmd: list[str], precise: bool) -> tuple[int, str | None]:
    """Run the command; (exit code, failure text or None).  126 when it cannot be executed, as in a shell."""
    if precise and (signo := pending_signal()) is not None:
        return exit_code(-signo)  # interrupted before the command could start
    try:
        return exit_code(wait_forwarding(cmd) if precise else wait_with_handlers(cmd))
    except OSError as e:
        print(f"provault: {cmd[0]}: cannot execute: {e.strerror or e}", file=sys.stderr)
        return CANNOT_EXECUTE, f"cannot execute {cmd[0]}: {e.strerror or e}"


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """The agent's own retry warnings stay quiet: a one-shot command says once what was delivered and why not."""
    agent_log = logging.getLogger("provault.agent")
    level = agent_log.level
    agent_log.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        agent_log.setLevel(level)


def _spooled_note(agent: Agent, settings: Settings) -> None:
    with agent.stats.lock:
        why = agent.stats.last_error
    print(
        f"provault: not delivered within {settings.agent.publish_timeout_s:g} s"
        + (f": {why}" if why else "")
        + f"\nprovault: the events are kept in the spool {agent.spool.dir} and sent the next time producer "
        f"{agent.producer_id} runs while the ledger is reachable",
        file=sys.stderr,
    )


def emit_once(settings: Settings, kind: str, prov: Mapping[str, Any], data: Mapping[str, Any] | None = None):
    """One event signed with the configured producer key, spooled, and waited for up to
    ``agent.publish_timeout_s``: (event id, delivered).  Not delivered in time, it stays in the spool (said on
    stderr); a spool too full to take it is an error."""
    from .runtime import agent_from_settings  # noqa: PLC0415 - keeps `provault --help` fast

    with quiet_retries():
        agent = agent_from_settings(settings)
        try:
            event_id = agent.emit(kind, prov, data=data)
            delivered = bool(event_id) and agent.flush(timeout=settings.agent.publish_timeout_s)
        finally:
            agent.close(timeout=0)
    if not event_id:
        raise ProvaultError(
            f"{kind} was not recorded: the spool {agent.spool.dir} is full",
            hint="bring the ledger back so the spool drains, or raise agent.spool_max_bytes",
        )
    if not delivered:
        _spooled_note(agent, settings)
    return event_id, delivered


# --- provault dataset / model -------------------------------------------------------------


def _emit_prepared(args: argparse.Namespace, prepared: assets.Prepared) -> int:
    event_id, delivered = emit_once(settings_from(args), prepared.kind, prepared.prov)
    if args.json:
        print(json.dumps({"kind": prepared.kind, "id": prepared.id, "event": event_id, "delivered": delivered}))
    else:
        print(f"{prepared.kind} {prepared.id} event {event_id} {'delivered' if delivered else 'spooled'}")
    return 0


def run_dataset_register(args: argparse.Namespace) -> int:
    prepared = assets.dataset_event(
        args.path,
        name=args.name,
        derived_from=args.derived_from,
        uri=args.uri,
        author=args.author,
        openlineage=tuple(args.openlineage) if args.openlineage else None,
    )
    return _emit_prepared(args, prepared)


def run_model_register(args: argparse.Namespace) -> int:
    _check_signature_options(args.parser, args)
    check = None
    if args.signature is not None:  # verified before anything is recorded: a refusal emits nothing
        from .signatures import verify_model_signature  # noqa: PLC0415 - keeps `provault --help` fast

        check = verify_model_signature(
            args.path, args.signature, public_key=args.public_key, certificate_chain=args.certificate_chain
        )
    prepared = assets.model_event(
        args.path,
        name=args.name,
        version=args.version,
        run=args.run_id,
        uri=args.uri,
        author=args.author,
        signature=check,
    )
    return _emit_prepared(args, prepared)


def _check_signature_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Command-line errors (exit 2) for a --signature without its verifier, or a verifier without --signature."""
    verifier = args.public_key is not None or bool(args.certificate_chain)
    if args.signature is not None and not verifier:
        parser.error(
            "--signature needs --public-key PEM (key mode) or --certificate-chain PEM (certificate mode); "
            "Sigstore keyless signatures are not verified (docs/supply-chain.md)"
        )
    if args.signature is None and verifier:
        parser.error("--public-key and --certificate-chain verify a --signature FILE, which is missing")


def run_model_deploy(args: argparse.Namespace) -> int:
    prepared = assets.deploy_event(
        args.model, name=args.name, target=args.target, approved_by=args.approved_by, deployer=args.deployer
    )
    return _emit_prepared(args, prepared)


# --- the parser -----------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a command and record it as a run (no code change needed)",
        description="Record CMD as a run: inputs, outputs, params, code, environment, author.",
    )
    p.add_argument("--name", help="the run's name (default: the manifest's, else the script's file name)")
    p.add_argument("--input", action="append", default=[], metavar="PATH", help="a data input (repeatable)")
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="an output, digested after CMD succeeds (repeatable)",
    )
    p.add_argument("--model", action="append", default=[], metavar="PATH", help="an output of kind model (repeatable)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter; VALUE is read as JSON if it parses",
    )
    p.add_argument(
        "--manifest", metavar="FILE", help="TOML or JSON file listing inputs, outputs, params (docs/agents.md)"
    )
    p.add_argument("--parent", metavar="RUN", help="the run this one is a step of (provault:run/<uuid>)")
    p.add_argument("--repo", metavar="DIR", help="where to read the code commit (default: the current directory)")
    p.add_argument("--author", metavar="WHO", help="who runs it (default: git user.email, else user@host)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")
    p.set_defaults(run=run_command)

    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument("--json", action="store_true", help="print one JSON object (kind, id, event, delivered)")
    json_opt.add_argument("--author", metavar="WHO", help="who registers it (default: git user.email, else user@host)")

    ds = sub.add_parser("dataset", help="register datasets").add_subparsers(
        dest="dataset_command", metavar="ACTION", required=True
    )
    p = ds.add_parser("register", parents=[common, json_opt], help="emit dataset.registered for a file or directory")
    p.add_argument("path", metavar="PATH", help="the data (file or directory), or its sha256:<hex> id")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--derived-from",
        action="append",
        default=[],
        metavar="DIGEST",
        help="a dataset it was made from (id or path; repeatable)",
    )
    p.add_argument("--uri", help="where the data lives, when not at PATH")
    p.add_argument(
        "--openlineage",
        nargs=2,
        metavar=("NAMESPACE", "NAME"),
        help="the OpenLineage dataset this data is a version of (docs/openlineage.md)",
    )
    p.set_defaults(run=run_dataset_register)

    md = sub.add_parser("model", help="register and deploy models").add_subparsers(
        dest="model_command", metavar="ACTION", required=True
    )
    p = md.add_parser(
        "register", parents=[common, json_opt], help="emit model.registered for a model file or directory"
    )
    p.add_argument("path", metavar="PATH", help="the model artifact, or its sha256:<hex> id")
    p.add_argument("--name", required=True)
    p.add_argument("--version")
    p.add_argument("--run", dest="run_id", metavar="RUN", help="the run that trained it (provault:run/<uuid>)")
    p.add_argument("--uri", help="where the model lives, when not at PATH")
    p.add_argument(
        "--signature",
        metavar="FILE",
        help="an OpenSSF model-signing signature over PATH, verified before anything is recorded (docs/supply-chain.md)",
    )
    verifier = p.add_mutually_exclusive_group()
    verifier.add_argument("--public-key", metavar="PEM", help="key mode: the signer's elliptic-curve public key (PEM)")
    verifier.add_argument(
        "--certificate-chain",
        action="append",
        default=[],
        metavar="PEM",
        help="certificate mode: certificates the signing certificate chains to, its root among them (repeatable)",
    )
    p.set_defaults(run=run_model_register, parser=p)

    p = md.add_parser("deploy", parents=[common, json_opt], help="emit model.deployed; prints the deployment id")
    p.add_argument("model", metavar="MODEL", help="the model's sha256:<hex> id or its file")
    p.add_argument("--name", required=True, help="the deployment's name, e.g. fraud-prod")
    p.add_argument("--target", required=True, help="where it is deployed, e.g. k8s://prod/fraud")
    p.add_argument("--approved-by", metavar="WHO", help="the approver (e-mail or provault agent id)")
    p.add_argument("--deployer", metavar="WHO", help="who deploys (default: git user.email, else user@host)")
    p.set_defaults(run=run_model_deploy)
