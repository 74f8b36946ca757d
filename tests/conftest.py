import pytest

from tests.support import Sink, component_logging


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
