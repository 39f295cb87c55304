"""The scripted model server (see script.py for the script, apis.py for the wire formats)."""
