import pytest

from tests.support import Sink


@pytest.fixture
def sink():
    server = Sink().start()
    yield server
    server.stop()
