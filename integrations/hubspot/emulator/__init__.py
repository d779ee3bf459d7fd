"""A HubSpot portal emulator that the unchanged hubspot-api-client talks to.

    with HubSpotEmulator() as emulator:               # http://127.0.0.1:<port>
        emulator.seed(18)
        client = HubSpot(access_token=emulator.issue_token(), host=emulator.base_url)
        client.crm.deals.search_api.do_search(...)

    python -m integrations.hubspot.emulator --port 8090 --seed-count 18 \
        [--webhook-url URL --client-secret S]

The SDK takes ``host=`` as is, so plain http on 127.0.0.1 works (no TLS needed).

Endpoints (wire format of HubSpot's v3/v4 CRM APIs; shapes are those of the SDK's
generated models):

* ``POST /oauth/v1/token`` (authorization_code, refresh_token; ``expires_in``
  1800; see :mod:`.auth`), ``GET /oauth/v1/access-tokens/{token}``; a private
  app's static token (:attr:`HubSpotEmulator.PRIVATE_APP_TOKEN`) also works.
  ``GET /account-info/v3/details``, ``GET /crm/v3/owners``.
* ``GET /crm/v3/pipelines/deals[/{id}]`` (two pipelines: ``default`` and the
  numeric ``Renewals``), ``GET /crm/v3/properties/{deals|notes|contacts}[/{name}]``
  (with ``hs_date_entered_<stageId>``, ``hs_v2_date_entered_<stageId>``,
  ``hs_v2_date_entered_current_stage`` and the custom ``dealcoach_*`` ones),
  ``POST /crm/v3/properties/deals`` (409 when it exists).
* ``POST /crm/v3/objects/{type}/search`` (:mod:`.search`; limit <= 200, ``after``
  paging, 400 past 10,000 results), ``POST .../batch/read`` (<= 100 ids,
  ``propertiesWithHistory``, 207 with ``OBJECT_NOT_FOUND`` for missing ids),
  ``POST .../batch/create`` (201, or 207 with per-item errors whose
  ``context.objectWriteTraceId`` names the input), ``POST .../batch/update``,
  ``GET|PATCH|DELETE .../{id}`` (``properties``, ``propertiesWithHistory``,
  ``associations``; DELETE archives), ``GET|POST .../{type}`` (``archived=true``
  lists archived objects with ``archivedAt``).
* ``GET /crm/v4/objects/{from}/{id}/associations/{to}``, ``POST
  /crm/v4/associations/{from}/{to}/batch/read`` (207 ``NO_ASSOCIATIONS_FOUND``
  for ids without any), ``GET /crm/v4/associations/{from}/{to}/labels`` (notes to
  deals: typeId 214; deal to contact: 3 and user-defined labels such as
  "Decision Maker", "Champion").
* Limits: a rolling ``ten_second_limit`` (default 100 per 10 s) with
  ``X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds`` on every answer but
  searches (daily headers for private-app tokens only); searches 5 a second
  (``SECONDLY``). A 429 body is ``{"status": "error", "message", "errorType":
  "RATE_LIMIT", "correlationId", "policyName"}``. Other errors: ``{"status":
  "error", "message", "correlationId", "category": "VALIDATION_ERROR" |
  "OBJECT_NOT_FOUND" | "INVALID_AUTHENTICATION" | "EXPIRED_AUTHENTICATION" |
  "OBJECT_ALREADY_EXISTS" | "INTERNAL_ERROR", "errors"?, "context"?}``.
* Webhooks (:mod:`.webhooks`): every ``dealstage`` change (a PATCH, a batch
  update, or a user's change through the control API) becomes an
  ``object.propertyChange`` event (optionally the legacy ``deal.propertyChange``),
  batched up to 100 a request, v3-signed, retried with backoff.
* ``/__emulator/...`` (no auth, for tests, demos and benchmarks): ``GET state``,
  ``GET calls``, ``GET notes?deal=ID``, ``GET deliveries``, ``GET deals[?properties=a,b]``,
  ``GET deals/{id}``;
  ``POST faults`` ``{"rate_limit", "errors", "error_status", "delay",
  "delay_count", "fail_deals", "expire_tokens", "ten_second_limit",
  "search_per_second", "clear"}``; ``POST seed {"count", "as_of"}``; ``POST token
  {"kind": "oauth"|"private"}``; ``POST authorization_code {"redirect_uri"}``;
  ``POST deals/{id}/stage {"stage"}``; ``POST deals/{id} {"properties"}`` (a
  user's edit); ``POST webhooks {"url", "client_secret", "style",
  "max_attempts", "backoff", "timeout"}``; ``POST reset_calls``; ``POST save``.

State and history: :mod:`.portal`. Seed data: :mod:`.seed`.
"""

from .portal import Change, HubSpotError, Portal, Record, format_datetime, parse_datetime
from .schema import (
    ASSOCIATION_TYPES,
    CONTACT_LABELS,
    DEFAULT_CUSTOM_PROPERTIES,
    DEFAULT_PIPELINES,
    METHODOLOGY_PROPERTIES,
    SUMMARY_PROPERTIES,
    PipelineDef,
    PropertyDef,
    StageDef,
)
from .search import MAX_LIMIT, MAX_RESULTS
from .seed import ARCHETYPES, OWNERS
from .server import DEFAULT_APP_ID, DEFAULT_PORTAL_ID, HubSpotEmulator
from .webhooks import MAX_EVENTS, WebhookDelivery, sign_v1, sign_v3

__all__ = [
    "ARCHETYPES",
    "ASSOCIATION_TYPES",
    "CONTACT_LABELS",
    "DEFAULT_APP_ID",
    "DEFAULT_CUSTOM_PROPERTIES",
    "DEFAULT_PIPELINES",
    "DEFAULT_PORTAL_ID",
    "MAX_EVENTS",
    "MAX_LIMIT",
    "MAX_RESULTS",
    "METHODOLOGY_PROPERTIES",
    "OWNERS",
    "SUMMARY_PROPERTIES",
    "Change",
    "HubSpotEmulator",
    "HubSpotError",
    "PipelineDef",
    "Portal",
    "PropertyDef",
    "Record",
    "StageDef",
    "WebhookDelivery",
    "format_datetime",
    "parse_datetime",
    "sign_v1",
    "sign_v3",
]
