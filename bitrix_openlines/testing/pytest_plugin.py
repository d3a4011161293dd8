"""Provide the ``fake_portal`` pytest fixture (registered as a ``pytest11`` entry point).

The plugin is loaded into every pytest run of a project that installs the package, so it
does nothing at import time beyond registering its marker: the fake portal is imported
and started only when a test asks for the fixture. It does not need pytest-asyncio: the
portal runs in its own thread, so sync tests and async tests on any loop can use it::

    @pytest.mark.fake_portal(dialogs=5, forbidden=[2])
    def test_forbidden(fake_portal):
        ...  # fake_portal is a started ThreadedFakePortal
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._threaded import ThreadedFakePortal

__all__ = ["fake_portal", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fake_portal`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "fake_portal(**kwargs): keyword arguments of FakePortal for the fake_portal fixture",
    )


@pytest.fixture
def fake_portal(request: pytest.FixtureRequest) -> Iterator[ThreadedFakePortal]:
    """Yield a started :class:`~bitrix_openlines.testing.ThreadedFakePortal`.

    Configure it with ``@pytest.mark.fake_portal(**kwargs)`` (on the test, its class or
    module; the closest marker wins), passing :class:`FakePortal` keyword arguments.
    """
    from ._threaded import ThreadedFakePortal

    marker = request.node.get_closest_marker("fake_portal")
    kwargs = {}
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                "@pytest.mark.fake_portal takes keyword arguments only, "
                f"got positional {marker.args!r}"
            )
        kwargs = dict(marker.kwargs)
    with ThreadedFakePortal(**kwargs) as portal:
        yield portal
