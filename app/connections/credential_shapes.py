"""The credential shapes each CRM's adapter accepts, checked when credentials are given.

``credentials`` on ``POST /api/v1/connections`` and ``PUT .../credentials``:

- HubSpot: a private app's token ``{"access_token": "pat-..."}``, or OAuth
  tokens ``{"auth": "oauth", "access_token", "refresh_token", ...}`` (what
  the OAuth connect flow stores).
- Salesforce: OAuth tokens as above (``instance_url``, ``issued_at`` optional),
  tokens obtained elsewhere ``{"access_token", "refresh_token"?}`` (no
  ``auth``), JWT bearer ``{"auth": "jwt", "username", "consumer_key",
  "private_key"}`` or client credentials ``{"auth": "client_credentials",
  "consumer_key", "consumer_secret"}``.
- ``fake``: anything (the fake CRM's own ``{"access_token", "refresh_token"}``).

Only the required keys are checked (other keys are kept, for the adapters);
an empty object is accepted (connect with OAuth afterwards). Messages name
keys, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from app.connections.models import Provider

#: provider -> ``auth`` value (None: the key is absent) -> required keys.
REQUIRED_KEYS: Final[Mapping[Provider, Mapping[str | None, tuple[str, ...]]]] = {
    Provider.HUBSPOT: {
        None: ("access_token",),
        "private_app": ("access_token",),
        "oauth": ("access_token", "refresh_token"),
    },
    Provider.SALESFORCE: {
        None: ("access_token",),
        "oauth": ("access_token", "refresh_token"),
        "jwt": ("username", "consumer_key", "private_key"),
        "client_credentials": ("consumer_key", "consumer_secret"),
    },
}


class CredentialsShapeError(ValueError):
    """The credentials do not have a shape the provider's adapter accepts."""


def check_credentials(provider: Provider | str, credentials: Mapping[str, object]) -> None:
    """Raise :class:`CredentialsShapeError` naming what is missing or unknown."""
    shapes = REQUIRED_KEYS.get(Provider(provider))
    if shapes is None or not credentials:
        return
    auth = credentials.get("auth")
    if auth is not None and (not isinstance(auth, str) or auth not in shapes):
        known = ", ".join(repr(name) for name in shapes if name is not None)
        raise CredentialsShapeError(
            f"credentials.auth: {Provider(provider).value} accepts {known} (or no 'auth' "
            "with an access_token)"
        )
    missing = [
        key
        for key in shapes[auth]
        if not isinstance(credentials.get(key), str) or not str(credentials.get(key)).strip()
    ]
    if missing:
        kind = f"'{auth}' " if auth else ""
        raise CredentialsShapeError(
            f"credentials: {Provider(provider).value} {kind}credentials need " + ", ".join(missing)
        )
