"""The HTTP API's routes, one module per area; `engine.api.server` assembles them into an app.
Each module exposes `router`; what they share (the context, the caller) is in `deps`."""
