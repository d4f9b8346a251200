"""Provider metadata read by every Airflow component. Keep this module import-light."""

from __future__ import annotations

from typing import Any

from airflow_provider_sfint import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-sfint",
        "name": "Salesforce (sfint)",
        "description": "Salesforce integration: Bulk API 2.0 query and ingest, Composite upsert, deferrable job "
        "sensors, and a bundled Salesforce emulator for tests.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Salesforce (sfint)",
                "external-doc-url": "https://developer.salesforce.com/docs/apis",
                "tags": ["service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "sfint",
                "hook-class-name": "airflow_provider_sfint.hooks.salesforce.SalesforceHook",
                "hook-name": "Salesforce (sfint)",
                "conn-fields": {
                    "auth_type": {
                        "label": "Auth type",
                        "description": "jwt_bearer (recommended), client_credentials, refresh_token, password or "
                        "access_token",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["jwt_bearer", "client_credentials", "refresh_token", "password", "access_token"],
                            "default": "jwt_bearer",
                        },
                    },
                    "client_id": {
                        "label": "Client id (consumer key)",
                        "description": "The connected app's consumer key (starts with 3MVG)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "client_secret": {
                        "label": "Client secret",
                        "description": "The connected app's consumer secret (client credentials, refresh token, "
                        "password flows)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "private_key": {
                        "label": "Private key (PEM)",
                        "description": "RSA private key that signs JWT bearer assertions",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "private_key_file": {
                        "label": "Private key file",
                        "description": "Path to the PEM private key on the workers (instead of Private key)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "refresh_token": {
                        "label": "Refresh token",
                        "description": "For the refresh token flow",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "instance_url": {
                        "label": "Instance URL",
                        "description": "Required for the access_token auth type; otherwise taken from the token "
                        "response",
                        "schema": {"type": ["string", "null"]},
                    },
                    "api_version": {
                        "label": "API version",
                        "description": "Salesforce API version, for example 62.0",
                        "schema": {"type": ["string", "null"], "default": "62.0"},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "description": "Seconds to wait for a TCP/TLS connection",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "read_timeout": {
                        "label": "Read timeout (s)",
                        "description": "Seconds to wait for response data",
                        "schema": {"type": ["number", "null"], "default": 120},
                    },
                    "verify_tls": {
                        "label": "Verify TLS",
                        "description": "true (default), or a CA bundle path. Turning it off is only allowed for "
                        "loopback hosts unless allow_insecure is also set",
                        "schema": {"type": ["string", "null"], "default": "true"},
                    },
                    "pubsub_endpoint": {
                        "label": "Pub/Sub endpoint",
                        "description": "host:port of the Pub/Sub API (gRPC), for change events and platform events",
                        "schema": {"type": ["string", "null"], "default": "api.pubsub.salesforce.com:7443"},
                    },
                    "org_id": {
                        "label": "Org id",
                        "description": "The org id (00D...) for the Pub/Sub API; needed only with a pre-issued "
                        "access token (token responses carry it)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "access_token": {
                        "label": "Access token",
                        "description": "A pre-issued access token (access_token auth type); it cannot be refreshed",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "allowed_hosts": {
                        "label": "Allowed hosts",
                        "description": "Extra hosts (comma-separated) trusted as login or instance hosts, https only",
                        "schema": {"type": ["string", "null"]},
                    },
                    "allow_insecure": {
                        "label": "Allow insecure TLS",
                        "description": "Explicit permission to turn TLS verification off for non-loopback hosts "
                        "(logged as a warning)",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "jwt_audience": {
                        "label": "JWT audience",
                        "description": "Overrides the JWT aud claim (default: login or test, by the login URL)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "max_attempts": {
                        "label": "Max attempts",
                        "description": "Attempts per request, retries included",
                        "schema": {"type": ["integer", "null"], "default": 6},
                    },
                    "max_retry_seconds": {
                        "label": "Max retry time (s)",
                        "description": "Total time one request may spend retrying",
                        "schema": {"type": ["number", "null"], "default": 300},
                    },
                    "min_remaining_api_percent": {
                        "label": "Minimum remaining API share (%)",
                        "description": "Refuse to start work when less than this share of the daily API "
                        "allowance remains",
                        "schema": {"type": ["number", "null"], "default": 0},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "host": "Login URL",
                        "login": "Username",
                        "password": "Password or access token",
                    },
                    # Airflow 3 renders placeholders for the standard fields only; the extra fields carry their
                    # hints in their descriptions.
                    "placeholders": {
                        "host": "login | test | https://acme.my.salesforce.com (empty: login)",
                        "login": "integration@acme.com (jwt_bearer and password flows)",
                        "password": "password + security token (password flow), or the access token",
                    },
                },
            }
        ],
        "hooks": [
            {
                "integration-name": "Salesforce (sfint)",
                "python-modules": ["airflow_provider_sfint.hooks.salesforce"],
            }
        ],
        "operators": [
            {
                "integration-name": "Salesforce (sfint)",
                "python-modules": [
                    "airflow_provider_sfint.operators.bulk_query",
                    "airflow_provider_sfint.operators.bulk_ingest",
                    "airflow_provider_sfint.operators.composite",
                    "airflow_provider_sfint.operators.events",
                    "airflow_provider_sfint.operators.change_events",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Salesforce (sfint)",
                "python-modules": ["airflow_provider_sfint.sensors.bulk"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Salesforce (sfint)",
                "python-modules": ["airflow_provider_sfint.triggers.bulk", "airflow_provider_sfint.triggers.channel"],
            }
        ],
        # MessageQueueTrigger(scheme="salesforce") where apache-airflow-providers-common-messaging is installed
        "queues": ["airflow_provider_sfint.queues.SalesforceMessageQueueProvider"],
        "extra-links": ["airflow_provider_sfint.links.SalesforceJobLink"],
        "config": {
            "sfint": {
                "description": "Salesforce (sfint) provider settings.",
                "options": {
                    "state_path": {
                        "description": "Where each task instance keeps its progress between tries (job ids, "
                        "committed parts, the summary of finished work): one JSON document per task instance "
                        "under this ObjectStoragePath, reachable from every worker. Makes a retried task resume "
                        "its Bulk jobs on every Airflow version; empty uses Airflow 3.3's task_state_store "
                        "(and, on 3.1 and 3.2, no resume).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/airflow/sfint-state",
                        "default": "",
                    }
                },
            }
        },
    }
