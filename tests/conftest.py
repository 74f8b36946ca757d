import pytest

from tests.support import Sink, component_logging


def pytest_configure(config):
    # The session-end check that fails the run if a test left a process running (tests/leaks.py).
    config.pluginmanager.import_plugin("tests.leaks")


@pytest.fixture
def sink():
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def component_log(caplog):
    """caplog for ``relay.component``, the logger every component writes to."""
    with component_logging(caplog):
        yield caplog
