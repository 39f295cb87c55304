"""The broker: the part of the engine that speaks to an agent over its stdin/stdout.
`engine.broker.acp` (the ACP broker) is imported only where an ACP agent runs: the SDK is
slow to import."""

from engine.broker.native import BrokerHooks, NativeBroker, ProtocolError

__all__ = ["BrokerHooks", "NativeBroker", "ProtocolError"]
