from shiploop.versions.snapshot import Version, snapshot

__all__ = ["Version", "snapshot"]
