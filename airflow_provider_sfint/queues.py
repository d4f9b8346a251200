"""``MessageQueueTrigger(scheme="salesforce", channel=..., ...)`` of apache-airflow-providers-common-messaging.

Importable only where that provider is installed (the ``messaging`` extra); Airflow's providers manager
skips a queue class it cannot import, so without it nothing breaks and the scheme is simply unknown.
The keyword arguments are :class:`~airflow_provider_sfint.triggers.channel.SalesforceChannelTrigger`'s.
"""

from __future__ import annotations

from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider

from .triggers.channel import SalesforceChannelTrigger

SCHEME = "salesforce"


class SalesforceMessageQueueProvider(BaseMessageQueueProvider):
    """Scheme ``salesforce``: a Pub/Sub channel of a Salesforce org as a message queue for asset watchers."""

    scheme = SCHEME

    def trigger_class(self) -> type[SalesforceChannelTrigger]:
        return SalesforceChannelTrigger
