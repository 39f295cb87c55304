"""The Agent Gateway (engine/gateway/server.py): agents reach model providers, and the MCP
gateway's tools, through the engine with an opaque per-agent token, never a real key."""

from engine.gateway.server import Admission, GatewayServer, Grant

__all__ = ["Admission", "GatewayServer", "Grant"]
