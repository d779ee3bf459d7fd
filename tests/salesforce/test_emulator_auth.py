"""Logins and sessions with the real client: SOAP, OAuth password, JWT, client credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from integrations.salesforce.emulator import SalesforceEmulator

from .conftest import VERSION, client, emulator_session

E = SalesforceEmulator


def test_username_password_security_token_logs_in_over_soap(emulator: SalesforceEmulator) -> None:
    sf = Salesforce(
        username=E.USERNAME,
        password=E.PASSWORD,
        security_token=E.SECURITY_TOKEN,
        version=VERSION,
        session=emulator_session(emulator),
    )
    assert sf.sf_instance == f"127.0.0.1:{emulator.port}"
    assert sf.query("SELECT Id FROM Organization")["records"][0]["Id"] == emulator.org.org_id
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        Salesforce(
            username=E.USERNAME,
            password="wrong",
            security_token=E.SECURITY_TOKEN,
            version=VERSION,
            session=emulator_session(emulator),
        )
    assert excinfo.value.code == "INVALID_LOGIN"


def test_oauth_password_grant_and_automatic_relogin_after_expiry(
    emulator: SalesforceEmulator,
) -> None:
    sf = Salesforce(
        username=E.USERNAME,
        password=E.PASSWORD,
        consumer_key=E.CLIENT_ID,
        consumer_secret=E.CLIENT_SECRET,
        version=VERSION,
        session=emulator_session(emulator),
    )
    sf.query("SELECT Id FROM Opportunity")
    assert emulator.expire_sessions() >= 1
    # simple-salesforce re-logs in on 401 INVALID_SESSION_ID when it has credentials.
    assert sf.query("SELECT Id FROM Opportunity")["totalSize"] == 0
    assert emulator.call_counts()["token"] == 2
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        Salesforce(
            username=E.USERNAME,
            password="nope",
            consumer_key=E.CLIENT_ID,
            consumer_secret=E.CLIENT_SECRET,
            version=VERSION,
            session=emulator_session(emulator),
        )
    assert excinfo.value.code == "invalid_grant"


def test_a_bare_session_id_expires_with_invalid_session_id(emulator: SalesforceEmulator) -> None:
    sf = client(emulator)
    sf.query("SELECT Id FROM Opportunity")
    emulator.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as excinfo:
        sf.query("SELECT Id FROM Opportunity")
    assert excinfo.value.status == 401
    assert excinfo.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    with pytest.raises(SalesforceExpiredSession):
        client(emulator, token="00Dbogus!token").query("SELECT Id FROM Opportunity")


def test_jwt_bearer_with_a_registered_key(emulator: SalesforceEmulator) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        Salesforce(
            username=E.USERNAME,
            consumer_key=E.CLIENT_ID,
            privatekey=private_pem,
            version=VERSION,
            session=emulator_session(emulator),
        )
    assert excinfo.value.code == "invalid_grant"  # the key is not registered yet
    emulator.register_jwt_key(public_pem)
    sf = Salesforce(
        username=E.USERNAME,
        consumer_key=E.CLIENT_ID,
        privatekey=private_pem,
        version=VERSION,
        session=emulator_session(emulator),
    )
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 0


def test_client_credentials_run_as_the_integration_user(emulator: SalesforceEmulator) -> None:
    sf = Salesforce(
        consumer_key=E.CLIENT_ID,
        consumer_secret=E.CLIENT_SECRET,
        domain="emulator.my",
        version=VERSION,
        session=emulator_session(emulator),
    )
    opp = sf.Opportunity.create(
        {"Name": "x", "StageName": "Prospecting", "CloseDate": "2027-01-01"}
    )
    assert (emulator.record(opp["id"]) or {})["CreatedById"] == emulator.user_id


def test_refresh_token_grant_answers_salesforce_token_shape(emulator: SalesforceEmulator) -> None:
    session = emulator_session(emulator)
    refresh = emulator.issue_refresh_token()
    reply = session.post(
        "https://login.salesforce.com/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": E.CLIENT_ID,
            "client_secret": E.CLIENT_SECRET,
        },
    )
    assert reply.status_code == 200
    tokens = reply.json()
    assert set(tokens) >= {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    }
    assert tokens["instance_url"] == emulator.base_url
    assert tokens["id"].endswith(f"/id/{emulator.org.org_id}/{emulator.user_id}")
    expected = base64.b64encode(
        hmac.new(
            E.CLIENT_SECRET.encode(), (tokens["id"] + tokens["issued_at"]).encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert tokens["signature"] == expected
    sf = client(emulator, token=tokens["access_token"])
    assert sf.query("SELECT COUNT() FROM Opportunity")["done"] is True
    identity = session.get(
        tokens["id"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert identity.json()["organization_id"] == emulator.org.org_id

    bad = session.post(
        f"{emulator.base_url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "revoked",
            "client_id": E.CLIENT_ID,
        },
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }


def test_authorization_code_grant_with_pkce(emulator: SalesforceEmulator) -> None:
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    code = emulator.authorization_code(
        redirect_uri="https://app.example/cb", code_challenge=challenge.rstrip(b"=").decode()
    )
    reply = emulator_session(emulator).post(
        f"{emulator.base_url}/services/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": E.CLIENT_ID,
            "client_secret": E.CLIENT_SECRET,
            "redirect_uri": "https://app.example/cb",
            "code_verifier": verifier,
        },
    )
    assert reply.status_code == 200 and reply.json()["refresh_token"]
