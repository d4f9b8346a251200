"""The Salesforce Pub/Sub API (``eventbus.v1``) messages and service, for the emulator's server and the client.

``pubsub_api.proto`` is written from the field table of the Pub/Sub spec; ``pubsub_api.desc`` is its
compiled form (``protoc --descriptor_set_out``, run by ``make proto`` through grpcio-tools). The message
classes are built from that descriptor set at import time in a private descriptor pool, so:

- no generated ``_pb2`` module pins a protobuf or grpcio version (generated code refuses to load under a
  runtime of another major version, and users' environments carry whatever their other libraries need);
- another Pub/Sub client loaded in the same process (Salesforce's example code registers the same
  ``eventbus.v1`` names in protobuf's default pool) cannot clash with ours.

The tests check that the committed ``.desc`` is what grpcio-tools compiles from the ``.proto`` today, and
that its descriptors match the spec's table field by field.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "eventbus.v1"
SERVICE = f"{PACKAGE}.PubSub"
PROTO_FILE = "pubsub_api.proto"


def descriptor_set_bytes() -> bytes:
    return resources.files(__name__).joinpath("pubsub_api.desc").read_bytes()


POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_bytes()).file:
    POOL.Add(_file)
FILE = POOL.FindFileByName(PROTO_FILE)


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


TopicRequest: Any = _message("TopicRequest")
TopicInfo: Any = _message("TopicInfo")
EventHeader: Any = _message("EventHeader")
ProducerEvent: Any = _message("ProducerEvent")
ConsumerEvent: Any = _message("ConsumerEvent")
PublishResult: Any = _message("PublishResult")
Error: Any = _message("Error")
FetchRequest: Any = _message("FetchRequest")
FetchResponse: Any = _message("FetchResponse")
SchemaRequest: Any = _message("SchemaRequest")
SchemaInfo: Any = _message("SchemaInfo")
PublishRequest: Any = _message("PublishRequest")
PublishResponse: Any = _message("PublishResponse")
ManagedFetchRequest: Any = _message("ManagedFetchRequest")
ManagedFetchResponse: Any = _message("ManagedFetchResponse")
CommitReplayRequest: Any = _message("CommitReplayRequest")
CommitReplayResponse: Any = _message("CommitReplayResponse")

# enum values (proto3 enums are plain ints on the wire and in the message classes)
LATEST, EARLIEST, CUSTOM = 0, 1, 2
ERROR_UNKNOWN, ERROR_PUBLISH, ERROR_COMMIT = 0, 1, 2

#: method name -> (request streams, response streams, request class, response class)
METHODS: dict[str, tuple[bool, bool, Any, Any]] = {
    "Subscribe": (True, True, FetchRequest, FetchResponse),
    "GetSchema": (False, False, SchemaRequest, SchemaInfo),
    "GetTopic": (False, False, TopicRequest, TopicInfo),
    "Publish": (False, False, PublishRequest, PublishResponse),
    "PublishStream": (True, True, PublishRequest, PublishResponse),
    "ManagedSubscribe": (True, True, ManagedFetchRequest, ManagedFetchResponse),
}


def method_path(name: str) -> str:
    """The HTTP/2 path of an RPC: ``/eventbus.v1.PubSub/Subscribe``."""
    return f"/{SERVICE}/{name}"
