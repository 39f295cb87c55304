"""The console's widgets, each with one job."""
