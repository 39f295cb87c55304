"""The names of the ACP permission events (contract §5.2), apart from the broker so that
code which only needs them does not import the ACP SDK (a second of start-up per CLI call)."""

REQUESTED = "permission.requested"  # the agent asks: the tool call and its options
DECISION = "permission.decision"  # any client answers: {request_sequence, option_id|cancelled}
CONTROL_EVENT_TYPES = frozenset({DECISION})  # answers reach the broker, never a prompt
