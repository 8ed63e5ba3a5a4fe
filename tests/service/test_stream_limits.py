"""ensure_stream on a live JetStream: limits someone changed are put back, a sealed stream is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import nats
import pytest

from ledger.config import NatsSettings
from ledger.core.errors import ConfigError
from ledger.transport import ensure_stream, stream_config

pytestmark = pytest.mark.nats


def _settings(nats_target) -> NatsSettings:
    return NatsSettings(url=nats_target.url, stream=nats_target.stream, subject_prefix=nats_target.subject_prefix)


def test_changed_limits_are_put_back_and_logged(nats_target, caplog: pytest.LogCaptureFixture) -> None:
    s = _settings(nats_target)

    async def go():
        nc = await nats.connect(nats_target.url, connect_timeout=5)
        try:
            js = nc.jetstream()
            await ensure_stream(js, s)
            # What a stolen ledger seed could do: a retention that drops unrecorded events.
            await js.update_stream(
                dataclasses.replace(
                    stream_config(s), max_age=1.0, duplicate_window=1.0, max_msgs=10, max_msgs_per_subject=2
                )
            )
            with caplog.at_level(logging.WARNING, logger="provault.transport"):
                return (await ensure_stream(js, s)).config
        finally:
            await nc.close()

    config = asyncio.run(go())
    assert (config.max_age, config.max_msgs, config.max_msgs_per_subject) == (0.0, -1, -1)
    assert (
        "bringing duplicate_window, max_age, max_msgs, max_msgs_per_subject back" in caplog.text
        and "max_age=1.0" in caplog.text
    )


def test_a_sealed_stream_is_refused_with_what_to_do(nats_target) -> None:
    s = _settings(nats_target)

    async def go() -> None:
        nc = await nats.connect(nats_target.url, connect_timeout=5)
        try:
            js = nc.jetstream()
            await ensure_stream(js, s)
            await js.update_stream(dataclasses.replace(stream_config(s), sealed=True))
            await ensure_stream(js, s)
        finally:
            await nc.close()

    with pytest.raises(ConfigError, match="sealed is True, provault needs False") as err:
        asyncio.run(go())
    assert "create it anew" in (err.value.hint or "")
