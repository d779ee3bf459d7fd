"""What every CRM integration shares.

For now this holds :class:`MappingError`, raised by the pure mapping functions
(``integrations/*/mapping.py``) when a CRM export cannot become a
:class:`~app.coaching.snapshot.DealSnapshot`. It will also hold the
``CrmProvider`` protocol that each CRM adapter implements and the error
taxonomy of the adapters (authentication, rate limits, transient failures...).
"""

from __future__ import annotations


class MappingError(ValueError):
    """A CRM record (or a whole export) that cannot be mapped.

    ``record_id`` is the CRM id of the offending record, or ``None`` when the
    error is about the shape of a whole payload or the record has no id.
    ``message`` says what is wrong and names the field, e.g.
    ``"unknown StageName 'Verbal Commit'"``.
    """

    record_id: str | None
    message: str

    def __init__(self, record_id: str | None, message: str) -> None:
        self.record_id = record_id
        self.message = message
        super().__init__(f"record {record_id}: {message}" if record_id else message)

    def __reduce__(self) -> tuple[type[MappingError], tuple[str | None, str]]:
        # Keep the two-argument constructor working through pickling (e.g. in a
        # process pool), which a plain ValueError would not.
        return (type(self), (self.record_id, self.message))
