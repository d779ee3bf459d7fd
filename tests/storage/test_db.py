"""Storage behaviour that must hold on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, SettingsError, load_settings
from app.connections.models import Connection, ConnectionStatus, Provider
from app.db import UTCDateTime, create_engine_for, session_scope
from app.deals.models import DealSnapshotRow
from app.reviews.models import Review, ReviewTrigger
from app.webhooks.models import DeliveryStatus, WebhookDelivery
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget

AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


# --- plain factories -----------------------------------------------------------------------


def make_connection(session: Session, external_account_id: str = "00D000000000001") -> Connection:
    connection = Connection(
        provider=Provider.SALESFORCE,
        name="Acme org",
        external_account_id=external_account_id,
    )
    session.add(connection)
    session.flush()
    return connection


def make_review(session: Session, connection: Connection, deal: str = "006A") -> Review:
    review = Review(
        connection_id=connection.id,
        deal_external_id=deal,
        as_of=AS_OF,
        trigger=ReviewTrigger.SYNC,
        playbook_name="meddpicc",
        playbook_version=1,
        input_fingerprint="in",
        content_fingerprint="content",
        marker="dc:marker",
        health_score=72,
        health_band="at_risk",
    )
    session.add(review)
    session.flush()
    return review


def make_write_back(session: Session, review: Review, dedupe_key: str) -> WriteBack:
    assert review.connection_id is not None
    write_back = WriteBack(
        review_id=review.id,
        connection_id=review.connection_id,
        deal_external_id=review.deal_external_id,
        target=WriteBackTarget.NOTE,
        dedupe_key=dedupe_key,
        marker=review.marker,
    )
    session.add(write_back)
    session.flush()
    return write_back


def make_delivery(session: Session, identity: str, provider: Provider) -> WebhookDelivery:
    delivery = WebhookDelivery(provider=provider, identity=identity, body="{}")
    session.add(delivery)
    session.flush()
    return delivery


# --- UTCDateTime -----------------------------------------------------------------------------


def test_given_aware_datetime_in_any_zone_when_stored_then_read_back_as_same_instant_in_utc(
    session_factory: sessionmaker[Session],
) -> None:
    paris = timezone(timedelta(hours=2))
    written = datetime(2026, 11, 27, 14, 30, 15, 123456, tzinfo=paris)
    with session_scope(session_factory) as session:
        connection = make_connection(session)
        connection.last_synced_at = written
        connection_id = connection.id

    with session_scope(session_factory) as session:
        loaded = session.get_one(Connection, connection_id)
        assert loaded.last_synced_at == written
        assert loaded.last_synced_at is not None
        assert loaded.last_synced_at.tzinfo is UTC
        assert loaded.last_synced_at.hour == 12
        assert loaded.created_at.tzinfo is UTC
        # Comparisons in queries convert the parameter the same way.
        found = session.scalars(
            select(Connection.id).where(Connection.last_synced_at == written.astimezone(UTC))
        ).all()
        assert found == [connection_id]
        later = session.scalars(
            select(Connection.id).where(Connection.last_synced_at > written - timedelta(seconds=1))
        ).all()
        assert later == [connection_id]


def test_given_naive_datetime_when_flushed_then_rejected(session: Session) -> None:
    connection = make_connection(session)
    connection.last_synced_at = datetime(2026, 11, 27, 12, 0)

    with pytest.raises(StatementError) as raised:
        session.flush()

    assert isinstance(raised.value.orig, ValueError)
    assert "naive datetime" in str(raised.value)


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql"])
def test_utc_datetime_rejects_naive_values_for_every_dialect(dialect_name: str) -> None:
    url = "sqlite://" if dialect_name == "sqlite" else "postgresql+psycopg://"
    dialect = create_engine(url).dialect  # builds the dialect only; nothing connects
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 1), dialect)


# --- constraints ------------------------------------------------------------------------------


def test_given_existing_dedupe_key_when_second_write_back_inserted_then_integrity_error(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        review = make_review(session, make_connection(session))
        make_write_back(session, review, "review-1:note")
        review_id = review.id

    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        make_write_back(session, session.get_one(Review, review_id), "review-1:note")

    with session_scope(session_factory) as session:
        rows = session.scalars(select(WriteBack)).all()
        assert [row.state for row in rows] == [WriteBackState.PENDING]


def test_given_same_delivery_identity_when_received_twice_then_integrity_error(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        make_delivery(session, "sha256:abc", Provider.HUBSPOT)
        # The same identity from another provider is a different delivery.
        make_delivery(session, "sha256:abc", Provider.SALESFORCE)

    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        make_delivery(session, "sha256:abc", Provider.HUBSPOT)

    with session_scope(session_factory) as session:
        statuses = session.scalars(select(WebhookDelivery.status)).all()
        assert statuses == [DeliveryStatus.RECEIVED, DeliveryStatus.RECEIVED]


def test_given_connection_for_same_account_twice_then_integrity_error(session: Session) -> None:
    make_connection(session, "00D1")
    with pytest.raises(IntegrityError):
        make_connection(session, "00D1")


def test_check_constraints_reject_unknown_enum_values_written_around_the_orm(
    engine: Engine,
) -> None:
    statement = text(
        "INSERT INTO connections (id, provider, name, external_account_id, settings, status,"
        " created_at, updated_at) VALUES ('c1', 'salesforce', 'x', 'a', '{}', 'sleeping',"
        " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
    )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(statement)


def test_enum_columns_reject_unknown_values_and_read_back_members(session: Session) -> None:
    connection = make_connection(session)
    session.refresh(connection)
    assert connection.status is ConnectionStatus.ACTIVE
    assert connection.provider is Provider.SALESFORCE

    connection.status = "sleeping"  # type: ignore[assignment]
    with pytest.raises(StatementError):
        session.flush()


def test_given_connection_deleted_then_its_snapshots_go_too(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        connection = make_connection(session)
        session.add(
            DealSnapshotRow(
                connection_id=connection.id,
                external_id="006A",
                name="Big deal",
                stage_key="Negotiation",
                amount=125000.5,
                close_date=date(2026, 12, 31),
                data={"id": "006A"},
                fingerprint="f",
                fetched_at=AS_OF,
            )
        )
        connection_id = connection.id

    with session_scope(session_factory) as session:
        snapshot = session.scalars(select(DealSnapshotRow)).one()
        assert snapshot.amount == 125000.5
        assert snapshot.close_date == date(2026, 12, 31)
        session.delete(session.get_one(Connection, connection_id))

    with session_scope(session_factory) as session:
        assert session.scalars(select(DealSnapshotRow)).all() == []


def test_foreign_keys_are_enforced(session: Session) -> None:
    session.add(
        WriteBack(
            review_id="missing",
            connection_id="missing",
            deal_external_id="006A",
            target=WriteBackTarget.NOTE,
            dedupe_key="k",
            marker="m",
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()


# --- JSON --------------------------------------------------------------------------------------


def test_json_round_trips_and_none_is_sql_null(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        connection = make_connection(session)
        connection.settings = {"write_back": {"enabled": True, "targets": ["note"]}}
        connection_id = connection.id

    with session_scope(session_factory) as session:
        loaded = session.get_one(Connection, connection_id)
        assert loaded.settings == {"write_back": {"enabled": True, "targets": ["note"]}}
        assert loaded.sync_watermark is None
        null_watermarks = session.scalars(
            select(Connection.id).where(Connection.sync_watermark.is_(None))
        ).all()
        assert null_watermarks == [connection_id]


# --- sessions and engines ----------------------------------------------------------------------


def test_session_scope_commits_on_success_and_rolls_back_on_error(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        make_connection(session, "kept")

    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        make_connection(session, "discarded")
        raise RuntimeError("boom")

    with session_scope(session_factory) as session:
        accounts = session.scalars(select(Connection.external_account_id)).all()
        assert accounts == ["kept"]


def test_sqlite_engine_creates_the_data_dir_and_sets_its_pragmas(tmp_path: Path) -> None:
    data_dir = tmp_path / "does" / "not" / "exist"
    engine = create_engine_for(Settings(data_dir=data_dir, sqlite_busy_timeout_ms=777))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 777
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert (data_dir / "dealcoach.db").exists()
    finally:
        engine.dispose()


def test_postgresql_engine_pings_pooled_connections(postgres_url: str) -> None:
    engine = create_engine_for(Settings(database_url=postgres_url))
    try:
        assert engine.pool._pre_ping
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEALCOACH_DATABASE_URL", "mysql://root@localhost/dealcoach"),
        ("DEALCOACH_LOG_LEVEL", "LOUD"),
    ],
)
def test_given_invalid_variable_when_settings_load_then_error_names_it(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError, match=variable):
        load_settings()
