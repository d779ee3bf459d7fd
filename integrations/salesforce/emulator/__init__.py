"""A Salesforce org emulator that the unchanged simple-salesforce client talks to.

    with SalesforceEmulator() as emulator:            # https://127.0.0.1:<port>
        emulator.seed(40)
        session = requests.Session(); session.verify = str(emulator.cert_path)
        sf = Salesforce(instance_url=emulator.base_url, session_id=emulator.issue_token(),
                        version="59.0", session=session)

    python -m integrations.salesforce.emulator --port 8443 --seed-count 40

TLS: a self-signed certificate (CN localhost; SAN localhost and 127.0.0.1; its own
CA) is generated at :meth:`~SalesforceEmulator.start` into the state directory;
clients trust it with ``session.verify = emulator.cert_path``. Login helpers of
simple-salesforce post to ``https://{domain}.salesforce.com/services/oauth2/token``
(or ``/services/Soap/u/59.0``): route those hosts to the emulator with a
``requests`` adapter (see ``tests/salesforce/conftest.py``); the token answer's
``instance_url`` is the emulator's, so later calls go there directly.

Endpoints (REST API v31.0-v62.0; pin ``version="59.0"``):

* ``POST /services/oauth2/token`` (password, refresh_token, authorization_code, JWT
  bearer, client_credentials; see :mod:`.auth`), ``POST /services/Soap/u/NN.0``
  (SOAP ``login``), ``GET /id/{org}/{user}`` (identity).
* ``GET .../query?q=`` and ``.../queryAll?q=`` (SOQL subset: :mod:`.soql`; queryAll
  adds deleted records), ``GET .../query/01g...-N`` (next page). Page sizes:
  **2000** records without child subqueries, **200** with any child subquery
  (Salesforce shrinks pages with subqueries); ``Sforce-Query-Options:
  batchSize=N`` (200-2000) lowers them. Optionally (``child_page_size``) a child
  relationship with more rows comes back ``done: false`` with its own
  ``nextRecordsUrl``. Cursors: 10 per user (the oldest is dropped), 15 minutes idle;
  an unknown one is 400 ``INVALID_QUERY_LOCATOR``. A request URI over 16,384
  characters is 414.
* ``GET .../sobjects``, ``.../sobjects/{Type}``, ``.../sobjects/{Type}/describe``,
  ``GET|PATCH|DELETE .../sobjects/{Type}/{id}``, ``POST .../sobjects/{Type}``,
  ``GET .../sobjects/ContentNote/{id}/Content`` (the note's HTML),
  ``GET .../limits``.
* ``POST|PATCH .../composite/sobjects`` (<= 200 records, mixed types, one result per
  record in order, ``allOrNone``), ``POST .../composite`` (<= 25 subrequests,
  ``referenceId`` and ``@{ref.id}`` references, ``allOrNone``). Each counts as one
  API call.
* Bulk API 2.0 query jobs: ``POST .../jobs/query``, ``GET|PATCH|DELETE
  .../jobs/query/{id}``, ``GET .../jobs/query/{id}/results`` (CSV pages with
  ``Sforce-Locator``); no nested queries, as in Salesforce. See :mod:`.bulk`.
* Every data API answer carries ``Sforce-Limit-Info: api-usage=used/max``. Errors:
  401 ``INVALID_SESSION_ID``, 403 ``REQUEST_LIMIT_EXCEEDED`` (injected, daily
  allowance spent, or more requests in flight than the concurrency limit: every
  request counts, not only those over 20 s as in Salesforce), 400
  ``INVALID_FIELD``/``MALFORMED_QUERY``/``INVALID_TYPE``/..., 404 ``NOT_FOUND``,
  injected 500 ``UNKNOWN_EXCEPTION`` / 503 ``SERVER_UNAVAILABLE``.
* ``/__emulator/...`` (no auth, for demos and benchmarks): ``GET state``; ``POST
  faults`` ``{"rate_limit", "errors", "error_status", "delay", "delay_count",
  "concurrency_limit", "daily_limit", "daily_used", "expire_sessions",
  "bulk_polls_in_progress", "bulk_fail", "clear"}``;
  ``POST seed {"count", "as_of"}``; ``POST token {"username"}``; ``POST
  records/{Type}[/{id}] {"fields", "username"}`` (a user's edit: history, outbound
  message); ``POST outbound {"url", "fields"}``; ``POST outbound/send {"url",
  "ids"}``; ``POST reset_calls``; ``POST save``.

Objects: Opportunity (optional ``LastStageChangeDate``, ``PushCount``,
``CurrencyIsoCode`` and custom fields per org), OpportunityHistory,
OpportunityFieldHistory, OpportunityContactRole, OpportunityStage, Task,
ContentNote, ContentDocumentLink, Account, Contact, User, Organization. History
and side effects: :mod:`.org`. Notes: :mod:`.notes`. Outbound Messages:
:mod:`.outbound`. Seed data: :mod:`.seed`.
"""

from .org import DEFAULT_STAGES, StageDef
from .outbound import ACK, Delivery, is_ack
from .schema import (
    DEFAULT_CUSTOM_FIELDS,
    DEFAULT_OPTIONAL_FIELDS,
    DEFAULT_TRACKED_FIELDS,
    METHODOLOGY_FIELDS,
    SUMMARY_FIELDS,
    CustomField,
)
from .seed import ARCHETYPES
from .server import API_VERSION, DEFAULT_ORG_ID, PAGE_SIZE, SUBQUERY_PAGE_SIZE, SalesforceEmulator

__all__ = [
    "ACK",
    "API_VERSION",
    "ARCHETYPES",
    "DEFAULT_CUSTOM_FIELDS",
    "DEFAULT_OPTIONAL_FIELDS",
    "DEFAULT_ORG_ID",
    "DEFAULT_STAGES",
    "DEFAULT_TRACKED_FIELDS",
    "METHODOLOGY_FIELDS",
    "PAGE_SIZE",
    "SUBQUERY_PAGE_SIZE",
    "SUMMARY_FIELDS",
    "CustomField",
    "Delivery",
    "SalesforceEmulator",
    "StageDef",
    "is_ack",
]
