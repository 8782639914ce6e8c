"""Brokers: the embedded one, choosing one for `--mqtt`, our clients on real brokers (no mocks)."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_bridge.telemetry import BrokerSettings, BrokerURLError, StatePayload, Topics
from firmware_bridge.telemetry.broker import (
    BrokerChoice,
    EmbeddedBroker,
    EmbeddedBrokerError,
    broker_listening,
    choose_broker,
)
from firmware_bridge.telemetry.mqtt import MqttError, make_client
from tests import brokers
from tests.brokers import Mosquitto, MosquittoFactory, RunningBroker, free_port, next_message

REPO = Path(__file__).resolve().parents[2]
LOCAL_1883 = BrokerSettings(host="127.0.0.1", port=1883)


# --- round trips through make_client() on both brokers ---------------------------------------


async def test_retained_state_reaches_late_subscriber_and_events_arrive_qos1(
    any_broker: RunningBroker,
) -> None:
    topics = Topics("round-trip")
    state = StatePayload(state="idle").model_dump_json().encode()
    async with make_client(any_broker.settings, identifier="rt-publisher") as publisher:
        await publisher.publish(topics.state, state, qos=1, retain=True)

    async with make_client(any_broker.settings, identifier="rt-subscriber") as subscriber:
        await subscriber.subscribe(f"{topics.base}/#", qos=1)
        retained = await next_message(subscriber)
        assert (retained.topic, retained.payload, retained.qos) == (topics.state, state, 1)
        assert retained.retain  # delivered because it was retained, after the publisher left

        async with make_client(any_broker.settings, identifier="rt-publisher") as publisher:
            await publisher.publish(topics.events, b'{"type":"stop"}', qos=1)
        live = await next_message(subscriber)
        assert (live.topic, live.payload, live.qos, live.retain) == (
            topics.events,
            b'{"type":"stop"}',
            1,
            False,
        )


WILL_CLIENT = """
import asyncio, sys
from firmware_bridge.telemetry.mqtt import BrokerSettings, Will, make_client

async def main() -> None:
    topic = sys.argv[2]
    will = Will(topic, b"offline", qos=1, retain=True)
    settings = BrokerSettings(host="127.0.0.1", port=int(sys.argv[1]))
    async with make_client(settings, identifier="doomed", will=will) as client:
        await client.publish(topic, b"online", qos=1, retain=True)
        print("online", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_last_will_is_published_when_a_client_process_dies(
    any_broker: RunningBroker,
) -> None:
    availability = Topics("doomed").availability
    async with make_client(any_broker.settings, identifier="watcher") as watcher:
        await watcher.subscribe(availability, qos=1)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WILL_CLIENT,
            str(any_broker.settings.port),
            availability,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(5):
                assert await process.stdout.readline() == b"online\n"
            assert (await next_message(watcher)).payload == b"online"
        finally:
            # SIGKILL: no DISCONNECT is sent; the kernel closes the socket, so the broker
            # notices at once instead of after 1.5 × keepalive.
            process.kill()
            await process.communicate()
        assert (await next_message(watcher)).payload == b"offline"

    async with make_client(any_broker.settings, identifier="late-watcher") as late:
        await late.subscribe(availability, qos=1)
        retained = await next_message(late)
        assert (retained.payload, retained.retain) == (b"offline", True)


# --- the embedded broker ---------------------------------------------------------------------


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _non_loopback_ipv4() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1; a UDP connect sends no packet
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


async def test_embedded_broker_listens_on_loopback_only(embedded_broker: EmbeddedBroker) -> None:
    port = embedded_broker.port
    checked = []
    try:
        psutil = importlib.import_module("psutil")  # optional; not a project dependency
    except ImportError:
        pass
    else:
        listening = {
            conn.laddr.ip
            for conn in psutil.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
        }
        assert listening == {"127.0.0.1"}
        checked.append("psutil")
    address = _non_loopback_ipv4()
    if address is not None:
        with socket.create_server(("0.0.0.0", 0)) as control:  # noqa: S104 - the control case
            assert _accepts(address, control.getsockname()[1]), "the check itself is broken"
        assert not _accepts(address, port), f"embedded broker reachable on {address}:{port}"
        checked.append(address)
    if not checked:
        pytest.skip("neither psutil nor a non-loopback address to check with")
    assert embedded_broker.settings == BrokerSettings(host="127.0.0.1", port=port)


async def test_embedded_broker_on_a_given_port_and_port_in_use() -> None:
    port = free_port()
    async with EmbeddedBroker(port=port) as broker:
        assert broker.port == port
        assert broker_listening("127.0.0.1", port)
        with pytest.raises(EmbeddedBrokerError, match=f"127.0.0.1:{port}.*--mqtt mqtt://"):
            async with EmbeddedBroker(port=port):
                pass
    assert not broker_listening("127.0.0.1", port)


async def test_embedded_broker_port_is_known_only_while_it_runs() -> None:
    broker = EmbeddedBroker(port=0)
    with pytest.raises(RuntimeError, match="only while it runs"):
        _ = broker.port
    async with broker:
        first = broker.port
        assert first != 0
        assert broker.running
    assert not broker.running
    async with broker:  # reusable
        assert broker_listening("127.0.0.1", broker.port)
    with pytest.raises(ValueError, match="65535"):
        EmbeddedBroker(port=70000)


def _broker_tasks() -> list[asyncio.Task[object]]:
    """Pending tasks running amqtt's code or ours (the task repr names the coroutine's file)."""
    return [
        task
        for task in asyncio.all_tasks()
        if "amqtt" in repr(task) or "telemetry/broker.py" in repr(task)
    ]


async def test_embedded_broker_shuts_down_cleanly_with_clients_connected() -> None:
    async with EmbeddedBroker(port=0) as broker:
        settings = broker.settings
        async with make_client(settings, identifier="persistent", clean_session=False) as gone:
            await gone.subscribe("x/#", qos=1)  # leaves an offline session behind
        client = make_client(settings, identifier="connected")
        await client.__aenter__()
        await client.subscribe("x/#", qos=1)
        # a TCP connection that never sends CONNECT (like a port probe still in progress)
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", broker.port)
        await asyncio.to_thread(broker_listening, "127.0.0.1", broker.port)  # a finished probe
        assert _broker_tasks()
    try:
        assert _broker_tasks() == []
        with pytest.raises(MqttError):
            await next_message(client)  # the client saw the broker go away
        assert await silent_reader.read() == b""  # the broker closed the silent connection too
    finally:
        await client.__aexit__(None, None, None)
        silent.close()
        await silent.wait_closed()


@pytest.fixture
def amqtt_loggers_unset() -> Iterator[Callable[[], dict[str, int]]]:
    """amqtt's loggers at NOTSET for the test, restored afterwards."""
    loggers = [logging.getLogger(name) for name in ("amqtt", "transitions")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
    yield lambda: {logger.name: logger.level for logger in loggers}
    for logger, level in zip(loggers, saved, strict=True):
        logger.setLevel(level)


async def test_embedded_broker_keeps_amqtt_quiet(
    amqtt_loggers_unset: Callable[[], dict[str, int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: everything that is not filtered arrives
    async with EmbeddedBroker(port=0) as broker:
        assert amqtt_loggers_unset() == {"amqtt": logging.WARNING, "transitions": logging.WARNING}
        assert broker_listening("127.0.0.1", broker.port)  # a probe: amqtt logs it as an error
        async with make_client(broker.settings, identifier="quiet") as client:
            await client.publish("a/b", b"x", qos=1)
    noise = [r for r in caplog.records if r.name.split(".")[0] in {"amqtt", "transitions"}]
    assert noise == []


async def test_embedded_broker_respects_configured_amqtt_logging(
    amqtt_loggers_unset: Callable[[], dict[str, int]],
) -> None:
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    async with EmbeddedBroker(port=0):
        assert amqtt_loggers_unset()["amqtt"] == logging.ERROR


# --- broker_listening and choose_broker ------------------------------------------------------


async def test_broker_listening(any_broker: RunningBroker) -> None:
    port = any_broker.settings.port
    assert await asyncio.to_thread(broker_listening, "127.0.0.1", port)
    assert await asyncio.to_thread(broker_listening, "localhost", port)
    assert not broker_listening("127.0.0.1", free_port())


def test_broker_listening_refuses_to_probe_other_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        broker_listening("192.0.2.1", 1883)
    with pytest.raises(ValueError, match="loopback"):
        broker_listening("broker.example", 1883)


def _probe(answer: bool) -> Callable[[str, int], bool]:
    def probe(host: str, port: int) -> bool:
        assert (host, port) == ("127.0.0.1", 1883)
        return answer

    return probe


def _no_probe(host: str, port: int) -> bool:
    raise AssertionError(f"{host}:{port} must not be probed")


NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize(
    ("spec", "sim", "probe", "expected"),
    [
        pytest.param("off", True, _no_probe, BrokerChoice("off"), id="off"),
        pytest.param("OFF ", False, _no_probe, BrokerChoice("off"), id="off-spelling"),
        pytest.param("embedded", False, _no_probe, BrokerChoice("embedded"), id="embedded"),
        pytest.param(
            "mqtt://broker.lan:1884",
            True,
            _no_probe,
            BrokerChoice("url", BrokerSettings(host="broker.lan", port=1884)),
            id="mqtt-url",
        ),
        pytest.param(
            "mqtts://u:p@broker.lan",
            False,
            _no_probe,
            BrokerChoice(
                "url",
                BrokerSettings(
                    host="broker.lan",
                    port=8883,
                    tls=True,
                    username="u",
                    password="p",  # noqa: S106 - a test credential
                ),
            ),
            id="mqtts-url",
        ),
        pytest.param(
            "broker.lan",
            False,
            _no_probe,
            BrokerChoice("url", BrokerSettings(host="broker.lan")),
            id="bare-host",
        ),
        pytest.param(
            "10.0.0.5:1999",
            False,
            _no_probe,
            BrokerChoice("url", BrokerSettings(host="10.0.0.5", port=1999)),
            id="host-port",
        ),
        pytest.param(None, False, _no_probe, BrokerChoice("off"), id="no-flag-real-device"),
        pytest.param(None, True, _probe(True), BrokerChoice("url", LOCAL_1883), id="sim-local"),
        pytest.param(None, True, _probe(False), BrokerChoice("embedded"), id="sim-nothing"),
    ],
)
def test_choose_broker(
    spec: str | None, sim: bool, probe: Callable[[str, int], bool], expected: BrokerChoice
) -> None:
    assert choose_broker(spec, sim=sim, probe=probe, env=NO_ENV) == expected


def test_choose_broker_takes_credentials_from_the_environment_for_a_local_broker() -> None:
    env = {"MASSAGER_MQTT_USERNAME": "ha", "MASSAGER_MQTT_PASSWORD": "pw"}
    choice = choose_broker(None, sim=True, probe=_probe(True), env=env)
    expected = replace(LOCAL_1883, username="ha", password="pw")  # noqa: S106 - a test credential
    assert choice == BrokerChoice("url", expected)


@pytest.mark.parametrize("spec", ["http://broker.lan", "mqtt://broker.lan:http", "mqtt://", ""])
def test_choose_broker_rejects_bad_urls(spec: str) -> None:
    with pytest.raises(BrokerURLError):
        choose_broker(spec, sim=True, probe=_no_probe, env=NO_ENV)


# --- mosquitto: restart and authentication ---------------------------------------------------


async def test_client_reconnects_after_mosquitto_restarts_on_the_same_port(
    mosquitto: Mosquitto,
) -> None:
    port = mosquitto.port
    client = make_client(mosquitto.settings, identifier="survivor")
    async with client:
        await client.subscribe("t/#", qos=1)
        mosquitto.stop()
        with pytest.raises(MqttError):
            await next_message(client)  # the broker went away
    assert not broker_listening("127.0.0.1", port)
    with pytest.raises(MqttError):
        async with client:  # nothing listens: refused at once
            pass

    mosquitto.start()
    assert mosquitto.port == port
    async with asyncio.timeout(3):
        while True:  # aiomqtt's documented reconnect loop (it does not reconnect by itself)
            try:
                async with client:
                    await client.subscribe("t/#", qos=1)
                    await client.publish("t/x", b"back", qos=1)
                    assert (await next_message(client)).payload == b"back"
                    break
            except MqttError:
                await asyncio.sleep(0.05)


async def test_mosquitto_kill_drops_clients(mosquitto: Mosquitto) -> None:
    async with make_client(mosquitto.settings, identifier="victim") as client:
        await client.subscribe("t/#", qos=1)
        mosquitto.kill()
        with pytest.raises(MqttError):
            await next_message(client)
        assert not mosquitto.running


async def test_mosquitto_authentication(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(users={"alice": "s3cret", "bob": "hunter2"})
    for user in ("alice", "bob"):
        async with make_client(broker.settings_as(user), identifier=user) as client:
            await client.publish("massager/dev/events", b"{}", qos=1)

    wrong = replace(broker.settings, username="alice", password="wrong")  # noqa: S106 - a test one
    with pytest.raises(MqttError, match="Not authorized"):
        async with make_client(wrong, identifier="mallory"):
            pass
    with pytest.raises(MqttError):
        async with make_client(broker.settings, identifier="anonymous"):
            pass


async def test_mosquitto_extra_config_and_several_brokers(
    mosquitto_factory: MosquittoFactory,
) -> None:
    first = mosquitto_factory(extra_config=["max_inflight_messages 5"])
    second = mosquitto_factory()
    assert first.port != second.port
    assert "max_inflight_messages 5" in first.config_path.read_text()
    for broker in (first, second):
        async with make_client(broker.settings, identifier="multi") as client:
            await client.publish("t", b"x", qos=1)


def test_mosquitto_without_a_workdir_cleans_up() -> None:
    brokers.require_mosquitto()
    with Mosquitto() as broker:
        workdir = broker.workdir
        assert broker.running
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert "running" in broker.log_text()
    assert not broker.running
    assert not workdir.exists()


def test_mosquitto_requires_the_binary_or_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "mosquitto_bin", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install mosquitto"):
        brokers.require_mosquitto()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run"):
        brokers.require_mosquitto()
