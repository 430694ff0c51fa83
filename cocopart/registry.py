"""Plug-in loading through stevedore.

Backends register in the entry-point group ``cocopart.backends`` (names ``sev-snp``, ``tdx``,
or a third party's); evidence verifiers in ``cocopart.evidence``; platform plug-ins (evidence
recognition, configfs-tsm provider, guest probes: :mod:`cocopart.attest.plugin`) in
``cocopart.platforms``. A plug-in that is installed but fails to import is reported with its
error (:class:`BackendLoadError`), never silently dropped; an unknown name lists the
installed ones (:class:`BackendNotFound`).

:func:`load_group` loads a whole group with :mod:`importlib.metadata` instead of stevedore:
the platform group is loaded by every ``cocopart verify`` and ``detect``, and importing
stevedore alone costs about 20 ms.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from cocopart.errors import BackendLoadError, BackendNotFound

if TYPE_CHECKING:
    from cocopart.backend import Backend

BACKEND_GROUP = "cocopart.backends"


def installed(group: str = BACKEND_GROUP) -> list[str]:
    """Names registered in ``group``, sorted, without importing them."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load_plugin(group: str, name: str) -> Any:
    """Import the plug-in ``name`` of ``group`` and return the object its entry point names."""
    from stevedore import driver
    from stevedore.exception import NoMatches

    names = installed(group)
    if name not in names:
        raise BackendNotFound(name, names)
    failure: list[BaseException] = []

    def on_failure(_mgr: Any, _ep: Any, err: BaseException) -> None:
        failure.append(err)

    # stevedore keeps a per-process entry-point cache per group; drop it so a distribution
    # installed (or put on sys.path) after the first load is seen, as installed() sees it
    from stevedore.extension import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.pop(group, None)
    try:
        mgr = driver.DriverManager(
            namespace=group,
            name=name,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
        )
    except NoMatches as err:  # the import failed: stevedore drops it after the callback
        cause: BaseException = failure[0] if failure else err
        raise BackendLoadError(name, cause) from cause
    except Exception as err:
        raise BackendLoadError(name, err) from err
    return mgr.driver


def load_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``."""
    from cocopart.backend import Backend

    factory = load_plugin(BACKEND_GROUP, name)
    try:
        backend = factory() if callable(factory) else factory
    except Exception as err:
        raise BackendLoadError(name, err) from err
    if not isinstance(backend, Backend):
        raise BackendLoadError(name, TypeError(f"{factory!r} does not produce a Backend"))
    return backend


class PluginStatus:
    """Load status of one plug-in: its object, or the error that stopped it."""

    def __init__(self, name: str, plugin: Any = None, error: BaseException | None = None):
        self.name = name
        self.plugin = plugin
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None


def load_group(group: str) -> list[PluginStatus]:
    """Every plug-in of ``group`` (sorted by name): its object, or why it failed to import."""
    out: list[PluginStatus] = []
    seen: set[str] = set()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(ep.name)
        try:
            out.append(PluginStatus(ep.name, ep.load()))
        except Exception as err:  # noqa: BLE001 - a broken plug-in is reported, not fatal
            out.append(PluginStatus(ep.name, error=err))
    return out


def load_all_backends() -> list[PluginStatus]:
    """Every installed backend, loaded or with its load error."""
    out = []
    for name in installed(BACKEND_GROUP):
        try:
            out.append(PluginStatus(name, load_backend(name)))
        except BackendLoadError as err:
            out.append(PluginStatus(name, error=err))
    return out
