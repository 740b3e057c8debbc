"""The platform seam and its factory."""

from __future__ import annotations

from cmle.config import Settings
from cmle.errors import ConfigError, EnvironmentFault
from cmle.platform.base import Platform


def get_platform(settings: Settings) -> Platform:
    """The platform the settings name: the embedded one (default) or an AEP sandbox."""
    backend = settings.platform.backend
    if backend == "local":
        import sqlite3

        from cmle.platform.local import LocalPlatform

        try:
            return LocalPlatform(settings.local_root, tenant_id=settings.platform.tenant_id,
                                 storage_url=settings.storage_url, owner=settings.platform.owner)
        except (OSError, sqlite3.OperationalError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise EnvironmentFault(f"the embedded platform cannot use its folder {settings.local_root} ({reason}); "
                                   "make it writable or set [Platform] local_root to a writable folder") from None
    if backend == "aep":
        try:
            from cmle.platform.aep import AEPPlatform
        except ImportError as exc:  # pragma: no cover - the AEP adapter ships with the package
            raise ConfigError(f"backend = aep is not available: {exc}") from None
        return AEPPlatform.from_settings(settings)
    raise ConfigError(f"[Platform] backend = {backend!r} is not one of: local, aep")


__all__ = ["Platform", "get_platform"]
