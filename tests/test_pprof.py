"""The pprof extension: a sampling profile of every thread, served on a free port."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import aiohttp
import pytest

from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.extensions import pprof

THIS_FILE = "tests/test_pprof.py"
LINE = re.compile(r"^(?P<stack>.+) (?P<count>[0-9]+)$")


def busy_in_thread(stop: threading.Event, deadline: float) -> int:
    total = 0
    while not stop.is_set() and time.monotonic() < deadline:
        for i in range(2000):
            total += i * i
    return total


def busy_in_loop(seconds: float) -> int:
    total, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for i in range(500):
            total += i * i
    return total


def park_here(release: threading.Event) -> None:
    release.wait(30)


async def keep_the_loop_busy(stop: asyncio.Event, deadline: float) -> None:
    # Mostly busy, yet yielding often enough for the server and the client to run.
    while not stop.is_set() and time.monotonic() < deadline:
        busy_in_loop(0.01)
        await asyncio.sleep(0.002)


async def started() -> pprof.Pprof:
    ext = pprof.create(Settings(ComponentID("pprof"), None), pprof.Config("127.0.0.1:0"))
    await ext.start()
    return ext


async def get(session: aiohttp.ClientSession, ext: pprof.Pprof, path: str) -> tuple[int, dict, str]:
    async with session.get(f"http://127.0.0.1:{ext.port}{path}") as answer:
        return answer.status, dict(answer.headers), await answer.text()


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_config_defaults_and_endpoint_validation():
    assert pprof.Config().endpoint == "localhost:1777"
    _, problems = decode(pprof.Config, {"endpoint": "1777"}, ("extensions", "pprof"))
    assert [str(p) for p in problems] == ['extensions::pprof::endpoint: "1777" is not a host:port endpoint']


def test_profile_sees_busy_code_in_another_thread_and_in_the_event_loop():
    stop = threading.Event()
    worker = threading.Thread(target=busy_in_thread, args=(stop, time.monotonic() + 30), name="busy-worker")
    # Idle all along: left out of a cpu profile, counted in a wall one.
    idle = threading.Thread(target=park_here, args=(stop,), name="idle-worker")

    async def run():
        ext = await started()
        loop_stop = asyncio.Event()
        loop_work = asyncio.create_task(keep_the_loop_busy(loop_stop, time.monotonic() + 30))
        worker.start()
        idle.start()
        try:
            async with aiohttp.ClientSession() as session:
                collapsed = await get(session, ext, "/debug/pprof/profile?seconds=1")
                table = await get(session, ext, "/debug/pprof/profile?seconds=1&format=pstats&hz=100&mode=wall")
        finally:
            stop.set()
            loop_stop.set()
            await loop_work
            await ext.shutdown()
        return collapsed, table

    try:
        (status, headers, text), (tstatus, theaders, table) = asyncio.run(run())
    finally:
        stop.set()
        worker.join(10)
        idle.join(10)

    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert headers["X-Profile-Mode"] in ("cpu", "wall") and int(headers["X-Profile-Ticks"]) > 0
    lines = text.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert sum(int(m["count"]) for m in parsed) == int(headers["X-Profile-Samples"])
    stacks = [m["stack"].split(";") for m in parsed]
    # The innermost frame of some stacks is each busy function, named with its file (shortened) and line.
    in_thread = f"busy_in_thread ({THIS_FILE}:{busy_in_thread.__code__.co_firstlineno})"
    in_loop = f"busy_in_loop ({THIS_FILE}:{busy_in_loop.__code__.co_firstlineno})"
    assert any(stack[-1] == in_thread for stack in stacks)
    assert any(stack[-1] == in_loop for stack in stacks)
    # Outermost first: the thread's bootstrap, then down to the busy function.
    thread_stack = next(stack for stack in stacks if stack[-1] == in_thread)
    assert thread_stack[0].startswith("Thread._bootstrap (threading.py:")
    assert any(frame.startswith("keep_the_loop_busy (") for stack in stacks if stack[-1] == in_loop
               for frame in stack)
    parked = f"park_here ({THIS_FILE}:{park_here.__code__.co_firstlineno})"
    if headers["X-Profile-Mode"] == "cpu":
        assert not any(parked in stack for stack in stacks)

    assert tstatus == 200 and theaders["X-Profile-Mode"] == "wall"
    assert table.startswith(f"Sample-based profile (wall mode): {theaders['X-Profile-Samples']} samples")
    rows = [re.match(r"^ *(\d+) +([\d.]+%) +(\d+) +([\d.]+%)  (.+)$", line) for line in table.splitlines()]
    rows = [row for row in rows if row]
    by_function = {row[5]: (int(row[1]), int(row[3])) for row in rows}
    assert by_function[in_thread][0] > 0 and by_function[in_loop][0] > 0
    assert by_function["keep_the_loop_busy (tests/test_pprof.py:"
                       f"{keep_the_loop_busy.__code__.co_firstlineno})"][1] >= by_function[in_loop][1]
    assert by_function[parked][1] > 0
    cumulative = [int(row[3]) for row in rows]
    assert cumulative == sorted(cumulative, reverse=True)


@pytest.mark.parametrize("query, message", [
    ("seconds=0", "seconds must be a whole number from 1 to 300"),
    ("seconds=301", "seconds must be a whole number from 1 to 300"),
    ("seconds=1.5", "seconds must be a whole number from 1 to 300"),
    ("seconds=-1", "seconds must be a whole number from 1 to 300"),
    ("seconds=", "seconds must be a whole number from 1 to 300"),
    ("seconds=ten", "seconds must be a whole number from 1 to 300"),
    ("hz=0", "hz must be a whole number from 1 to 1000"),
    ("hz=5000", "hz must be a whole number from 1 to 1000"),
    ("format=svg", "format must be one of collapsed, pstats"),
    ("mode=idle", "mode must be one of cpu, wall"),
])
def test_bad_parameters_are_400_and_start_nothing(query, message):
    async def run():
        ext = await started()
        try:
            async with aiohttp.ClientSession() as session:
                answer = await get(session, ext, f"/debug/pprof/profile?{query}")
            return answer, ext.running
        finally:
            await ext.shutdown()

    (status, _, text), running = asyncio.run(run())
    assert status == 400 and message in text
    assert not running


def test_a_second_profile_while_one_runs_is_refused_with_409(component_log):
    async def run():
        ext = await started()
        try:
            async with aiohttp.ClientSession() as session:
                first = asyncio.create_task(get(session, ext, "/debug/pprof/profile?seconds=1"))
                await wait_for(lambda: ext.running)
                second = await get(session, ext, "/debug/pprof/profile?seconds=1&format=pstats")
                first = await first
                # Once the first has ended, the next one may run.
                third = await get(session, ext, "/debug/pprof/profile?seconds=1")
            return first, second, third
        finally:
            await ext.shutdown()

    first, second, third = asyncio.run(run())
    assert second[0] == 409 and "a profile is already running" in second[2]
    assert first[0] == 200 and third[0] == 200
    messages = [r.getMessage() for r in component_log.records if r.component == "pprof"]
    assert messages.count("profile started") == 2 and messages.count("profile finished") == 2
    finished = next(r for r in component_log.records if r.getMessage() == "profile finished")
    assert finished.fields["seconds"] == 1 and finished.fields["samples"] >= 0


def sampler_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "pprof-sampler"]


def test_shutdown_ends_a_running_profile_promptly_and_answers_it():
    async def run():
        ext = await started()
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(get(session, ext, "/debug/pprof/profile?seconds=300"))
            await wait_for(lambda: ext.running)
            await asyncio.wait_for(ext.shutdown(), 10)  # against a 300 s window
            answer = await asyncio.wait_for(request, 10)
        return answer, ext.running

    (status, headers, _), running = asyncio.run(run())
    assert status == 200 and float(headers["X-Profile-Seconds"]) < 10
    assert not running
    deadline = time.monotonic() + 10
    while sampler_threads():
        assert time.monotonic() < deadline, "the sampler thread outlived shutdown"
        time.sleep(0.02)


def test_a_profile_ends_when_its_client_goes_away():
    async def run():
        ext = await started()
        try:
            async with aiohttp.ClientSession() as session:
                request = asyncio.create_task(get(session, ext, "/debug/pprof/profile?seconds=300"))
                await wait_for(lambda: ext.running)
                request.cancel()  # closes the connection
                with pytest.raises(asyncio.CancelledError):
                    await request
            await wait_for(lambda: not ext.running, timeout=15)
            # And the next client is served.
            async with aiohttp.ClientSession() as session:
                return await get(session, ext, "/debug/pprof/profile?seconds=1")
        finally:
            await ext.shutdown()

    status, _, _ = asyncio.run(run())
    assert status == 200


def test_thread_dump_lists_every_thread_with_its_stack_and_the_index_lists_the_endpoints():
    release = threading.Event()
    parked = threading.Thread(target=park_here, args=(release,), name="parked-worker", daemon=True)
    parked.start()

    async def run():
        ext = await started()
        try:
            async with aiohttp.ClientSession() as session:
                return [await get(session, ext, path) for path in
                        ("/debug/pprof/threads", "/debug/pprof/goroutine", "/debug/pprof/", "/debug/pprof/heap")]
        finally:
            await ext.shutdown()

    try:
        (status, _, dump), (gstatus, _, gdump), (istatus, _, index), (hstatus, _, _) = asyncio.run(run())
    finally:
        release.set()
        parked.join(10)
    assert status == 200 and gstatus == 200
    assert re.match(r"^\d+ threads in process \d+ at \S+Z\n", dump)
    assert 'Thread "MainThread"' in dump
    block = dump.split('Thread "parked-worker"', 1)[1].split("\n\n", 1)[0]
    assert f"park_here ({THIS_FILE}:" in block and "release.wait(30)" in block
    assert 'Thread "parked-worker"' in gdump
    assert istatus == 200
    for link in ("/debug/pprof/profile?seconds=30", "/debug/pprof/threads"):
        assert f'href="{link}' in index
    assert hstatus == 404
