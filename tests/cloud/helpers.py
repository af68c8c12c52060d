"""Credentials and settings of one connection per cloud billing provider, pointed at the loopback fakes.

Every secret here is a dummy with a ``LeakCanary`` marker, so the leak test can look for it; the
service-account key is a fresh RSA key made for the test run (google-auth signs a real JWT with it).
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers import get_provider
from tests.fakes.cloud_bills import AWS_MARKETPLACE, AZURE_BILLING_ACCOUNT, AZURE_SUBSCRIPTION

CLOUD = ("openrouter", "xai", "aws_bedrock", "azure_openai", "google")
OPENROUTER_KEY = "sk-or-v1-mgmt-LeakCanaryOpenRouter7Qx9"
XAI_KEY = "xai-mgmt-LeakCanaryXaiKey5Rt8Wq2"
AWS_SECRET = "LeakCanaryAwsSecret0123456789abcdefGHIJ"
AZURE_SECRET = "LeakCanary~AzureSecret.0123456789"
GCP_TABLE = "billing-proj.billing_export.gcp_billing_export_v1_0123AB_4567CD_89EF01"
#: The secret strings each connection holds (the leak test looks for each).
SECRETS = {
    "openrouter": (OPENROUTER_KEY[len("sk-or-v1-") :],),
    "xai": (XAI_KEY[4:],),
    "aws_bedrock": (AWS_SECRET,),
    "azure_openai": (AZURE_SECRET,),
}


@lru_cache(maxsize=1)
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account(token_uri: str) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "billing-proj",
            "private_key_id": "LeakCanaryKeyId0123456789abcdef",
            "private_key": private_key_pem(),
            "client_email": "usage-reader@billing-proj.iam.gserviceaccount.com",
            "client_id": "100000000000000000001",
            "token_uri": token_uri,
        }
    )


def connection(provider: str, url: str, authority: str = "") -> dict:
    """``key``, ``options`` and ``base_url`` for :func:`collector.sync.connections.add_connection`."""
    cls = get_provider(provider)
    if provider == "openrouter":
        return {"key": OPENROUTER_KEY, "options": {}, "base_url": f"{url}/openrouter/api/v1"}
    if provider == "xai":
        return {"key": XAI_KEY, "options": {}, "base_url": f"{url}/xai"}
    if provider == "aws_bedrock":
        key = cls.pack_credential({"access_key_id": "AKIAFAKE00000000TEST", "secret_access_key": AWS_SECRET})
        options = {"sts_url": url, "services": f"Amazon Bedrock,{AWS_MARKETPLACE}"}
        return {"key": key, "options": options, "base_url": url}
    if provider == "azure_openai":
        key = cls.pack_credential(
            {
                "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "client_id": "0b1f7c2e-5d4a-4e3b-9c8d-7a6b5c4d3e2f",
                "client_secret": AZURE_SECRET,
            }
        )
        options = {
            "scope": f"subscriptions/{AZURE_SUBSCRIPTION}",
            "authority": authority,
            "account": AZURE_BILLING_ACCOUNT,
        }
        return {"key": key, "options": options, "base_url": f"{url}/azure"}
    if provider == "google":
        key = cls.pack_credential({"service_account_json": service_account(f"{url}/google/token")})
        return {"key": key, "options": {"table": GCP_TABLE}, "base_url": url}
    raise KeyError(provider)


def secrets_of(provider: str) -> tuple[str, ...]:
    if provider == "google":
        return (private_key_pem().splitlines()[5],)  # a line from the middle of the private key
    return SECRETS[provider]
