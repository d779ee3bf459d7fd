"""The provider-neutral deal snapshot: what the coaching engine reads.

Both CRMs map into these types (``integrations/*/mapping.py``). They are plain
frozen dataclasses, cheap to build and to read, because the engine reviews tens
of thousands of them a second. All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stage:
    """A stage in the deal's pipeline.

    ``order`` is the stage's position in the pipeline (lower is earlier);
    ``None`` only for a stage seen in history that the catalogue no longer has
    (renamed or deleted), which the engine then cannot place.
    ``probability`` is the stage's default win probability, 0.0 to 1.0.
    """

    key: str
    label: str
    order: int | None
    probability: float
    is_closed: bool = False
    is_won: bool = False


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """One recorded change of a field: when, from what, to what."""

    at: datetime
    old: T | None
    new: T | None


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact on the deal with the roles it plays (as the CRM names them)."""

    id: str
    roles: tuple[str, ...] = ()
    is_primary: bool = False
    name: str | None = None


#: The summary fields the service writes on a deal (``app.reviews.pipeline.summary_fields``),
#: by their neutral key. A CRM may name them in its own case and with ``__c``
#: (Salesforce ``Dealcoach_Health__c``). Other ``dealcoach_*`` fields are not the
#: service's: HubSpot evidence properties such as ``dealcoach_metrics`` are the rep's.
SUMMARY_KEYS = frozenset(
    {
        "dealcoach_health",
        "dealcoach_band",
        "dealcoach_summary",
        "dealcoach_prompts",
        "dealcoach_marker",
    }
)


def is_own_field(name: str) -> bool:
    """Whether a CRM field is one of the summary fields the service writes itself."""
    return name.lower().removesuffix("__c") in SUMMARY_KEYS


@dataclass(frozen=True, slots=True)
class DealSnapshot:
    """One deal as the engine sees it.

    History tuples are ordered oldest first and hold only real changes
    (``old != new``). ``stage_history`` holds stage changes only: a CRM row
    that changed just the amount or the close date is not a stage change.
    ``stage_entered_at`` is set when the CRM states it directly (Salesforce
    ``LastStageChangeDate``, HubSpot ``hs_v2_date_entered_current_stage`` or
    ``hs_v2_date_entered_<stage>``), named by ``stage_entered_field``; otherwise
    the engine derives it from ``stage_history``. ``stage_history_from`` is the
    time of the oldest stage record the history holds (its first row, which is
    not a change): when no change into the current stage is recorded, it tells
    whether the deal was created in that stage (history starting at creation)
    or was already in it when the history starts ("at least N days"). Without
    it the engine does not know when the stage began and says so.
    ``recorded_fields`` names the fields and properties the organisation records
    (its describe / properties API, or the keys an export carries); ``None``
    means unknown, and every field then counts as recorded. A methodology field
    outside it is ``not_recorded``, not ``absent``.
    ``deal_type`` is the CRM's deal type (Salesforce ``Type``, HubSpot
    ``dealtype``), which tells renewals apart.
    ``has_future_activity`` is the CRM's own flag (Salesforce ``HasOpenActivity``);
    ``next_activity_at`` the next scheduled activity when the CRM gives a date
    (HubSpot ``notes_next_activity_date``): the engine compares it with ``as_of``.
    ``contacts_known`` is False when the export or fetch carried no contact
    data at all (no contact-role subquery, no associations, no count): the
    engine then raises no contact-based signal rather than guess "none".
    ``fields`` holds the CRM's custom fields and properties that a playbook
    may map to methodology elements, keyed by their CRM name.
    ``modified_at`` is the CRM's last-modification stamp of the record
    (Salesforce ``SystemModstamp``): it orders two reads of the same deal, so an
    older read never replaces a newer one; it is not evidence and not part of
    the snapshot's fingerprint.
    """

    id: str
    name: str
    stage: Stage
    created_at: datetime
    amount: float | None = None
    currency: str | None = None
    close_date: date | None = None
    owner_id: str | None = None
    owner_name: str | None = None
    next_step: str | None = None
    description: str | None = None
    last_activity_at: datetime | None = None
    has_future_activity: bool = False
    next_activity_at: datetime | None = None
    forecast_category: str | None = None
    contacts: tuple[Contact, ...] = ()
    contact_count: int | None = None
    contacts_known: bool = True
    stage_entered_at: datetime | None = None
    stage_history: tuple[Change[Stage], ...] = ()
    close_date_history: tuple[Change[date], ...] = ()
    amount_history: tuple[Change[float], ...] = ()
    owner_history: tuple[Change[str], ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    pipeline: str | None = None
    modified_at: datetime | None = None
    stage_entered_field: str | None = None
    stage_history_from: datetime | None = None
    recorded_fields: frozenset[str] | None = None
    deal_type: str | None = None

    @property
    def is_open(self) -> bool:
        return not self.stage.is_closed

    @property
    def number_of_contacts(self) -> int:
        """Contacts on the deal: the listed ones, or the CRM's count when larger."""
        listed = len(self.contacts)
        if self.contact_count is not None and self.contact_count > listed:
            return self.contact_count
        return listed

    def records(self, name: str) -> bool:
        """Whether the organisation records this field (unknown counts as recorded)."""
        return self.recorded_fields is None or name in self.recorded_fields

    @property
    def roles_recorded(self) -> bool:
        """Whether the deal's contacts carry roles at all: contacts on the deal and
        none with a role or label means the organisation does not record roles."""
        if any(contact.roles for contact in self.contacts):
            return True
        return self.number_of_contacts == 0


@dataclass(frozen=True, slots=True)
class StageCatalogue:
    """The stages of one pipeline, by key, in pipeline order."""

    stages: tuple[Stage, ...]
    pipeline: str | None = None
    _by_key: dict[str, Stage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {stage.key: stage for stage in self.stages})

    def get(self, key: str) -> Stage | None:
        return self._by_key.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key
