"""The broker: the part of the engine that speaks to an agent over its stdin/stdout."""

from engine.broker.acp import AcpBroker
from engine.broker.native import BrokerHooks, NativeBroker, ProtocolError

__all__ = ["AcpBroker", "BrokerHooks", "NativeBroker", "ProtocolError"]
