"""shiploop: ship a web service version, prove it against real traffic, promote or roll back."""

__version__ = "0.1.0"
