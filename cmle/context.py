"""What a stage function receives: settings, the platform (opened on first use), helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

from cmle.config import Settings
from cmle.platform import Platform, get_platform


@dataclass
class Context:
    settings: Settings
    _platform: Platform | None = field(default=None, repr=False)

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            self._platform = get_platform(self.settings)
        return self._platform

    @property
    def owner(self) -> str:
        return self.settings.platform.owner

    @property
    def tenant(self) -> str:
        """The tenant field root, ``_{tenant_id}``."""
        return f"_{self.platform.tenant_id}"

    def close(self) -> None:
        if self._platform is not None:
            self._platform.close()
            self._platform = None
