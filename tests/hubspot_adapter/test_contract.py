"""The provider contract on the HubSpot adapter, against the emulator, through the real
hubspot-api-client."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.base import CrmProvider
from tests.contract.suite import CrmHandle, ProviderContract
from tests.hubspot_adapter.conftest import EmulatorHandle, ProviderFactory, RetryAfterEmulator


class TestHubSpotProvider(ProviderContract):
    @pytest.fixture
    def crm(self, emulator: RetryAfterEmulator) -> CrmHandle:
        return EmulatorHandle(emulator)

    @pytest.fixture
    def provider(
        self, crm: CrmHandle, provider_settings: dict[str, Any], make_provider: ProviderFactory
    ) -> CrmProvider:
        return make_provider(settings=provider_settings)
