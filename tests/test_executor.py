"""Dask cluster checks of :mod:`metaniche.executor` (version agreement between client and
workers), with a stand-in client so no cluster is started."""

from __future__ import annotations

import pytest

from metaniche import __version__
from metaniche.errors import MetanicheError
from metaniche.executor import _check_worker_versions, _installed_version


class Client:
    """Answers ``run`` like distributed.Client.run: worker address → the function's result."""

    def __init__(self, versions: dict[str, str] | Exception) -> None:
        self.versions = versions

    def run(self, function):
        if isinstance(self.versions, Exception):
            raise self.versions
        assert function() == __version__  # the function is the one the workers would run
        return self.versions


def test_workers_with_this_version_pass():
    _check_worker_versions(Client({"tcp://a:1": __version__, "tcp://b:2": __version__}), "x")
    assert _installed_version() == __version__


def test_a_worker_with_another_version_stops_the_run_naming_it():
    client = Client({"tcp://a:1": __version__, "tcp://b:2": "0.0.1"})
    with pytest.raises(MetanicheError) as err:
        _check_worker_versions(client, "tcp://sched:8786")
    message = str(err.value)
    assert "tcp://b:2 has 0.0.1" in message and "tcp://a:1" not in message
    assert __version__ in message and "tcp://sched:8786" in message


def test_workers_without_metaniche_are_named():
    client = Client(ModuleNotFoundError("No module named 'metaniche'"))
    with pytest.raises(MetanicheError, match=r"cannot import metaniche.*No module named"):
        _check_worker_versions(client, "tcp://sched:8786")
