"""The provider accounts a client uses: each adapter with its key and base URL, and its budget.

Keys come from `api_keys={...}` or the provider's environment variable, base URLs from
`base_urls={...}` or `GENWIDGETS_<PROVIDER>_URL` (both read through `_config`), once, when a
provider is first used. A keyless "catalogue" adapter validates parameters and lists models
without any key, so checks and menus work before a key is set.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import _config
from ._budget import Budget, BudgetSetting, budget_for, resolve_limits
from ._exceptions import MissingKey
from .providers import BrokenPlugin, Provider, get_provider_class, provider_names

__all__ = ["Accounts"]


class Accounts:
    """Adapters by provider name, built on first use, and their budgets (per event loop)."""

    def __init__(
        self,
        api_keys: Mapping[str, str] | None,
        base_urls: Mapping[str, str] | None,
        budgets: BudgetSetting,
    ) -> None:
        self._api_keys = dict(api_keys or {})
        self._base_urls = dict(base_urls or {})
        self._budget_setting = budgets
        self._adapters: dict[str, Provider] = {}
        self._catalogues: dict[str, Provider] = {}
        self._budgets: dict[str, Budget | None] = {}

    def names(self) -> list[str]:
        """Providers an adapter was built for so far."""
        return sorted(self._adapters)

    def _key(self, name: str, cls: type[Provider]) -> str | None:
        key = self._api_keys.get(name)
        return cls.key_from_env(_config.api_key) if key is None else key

    def adapter(self, name: str) -> Provider:
        """The adapter for `name`, with its key and base URL resolved (once)."""
        adapter = self._adapters.get(name)
        if adapter is None:
            cls = get_provider_class(name)
            key = self._key(name, cls)
            if cls.env_var and not key:
                raise MissingKey(name, " or ".join((cls.env_var, *cls.env_vars)))
            base = self._base_urls.get(name) or _config.base_url(name, cls.default_base_url)
            adapter = self._adapters[name] = cls(api_key=key, base_url=base)
        return adapter

    def catalogue(self, name: str) -> Provider:
        """A keyless adapter: enough to validate and to read the catalogue, never to send."""
        adapter = self._catalogues.get(name)
        if adapter is None:
            adapter = self._catalogues[name] = get_provider_class(name)(api_key=None)
        return adapter

    def configured(self) -> list[str]:
        """Providers usable right now: `local` plus every provider with a key configured (a
        plugin that cannot be loaded is left out here: using it says why)."""
        usable = []
        for name in provider_names():
            try:
                cls = get_provider_class(name)
            except BrokenPlugin:
                continue
            if not cls.env_var or self._key(name, cls):
                usable.append(name)
        return usable

    def budget(self, name: str) -> Budget | None:
        """The budget of `name`'s account on the running loop (None: unlimited or local)."""
        if name not in self._budgets:
            if name == "local":
                self._budgets[name] = None
            else:
                adapter = self.adapter(name)
                limits = resolve_limits(name, self._budget_setting)
                self._budgets[name] = budget_for(name, adapter.account, limits)
        return self._budgets[name]

    async def aclose(self) -> None:
        """Send what the team budgets still have to write (and close their connections)."""
        for budget in self._budgets.values():
            close = getattr(budget, "aclose", None)  # a SharedBudget's; Budget has none
            if close is not None:
                await close()

    def known_budget(self, name: str) -> Budget | None:
        """The budget of `name` if one was resolved already (never builds an adapter)."""
        return self._budgets.get(name)
