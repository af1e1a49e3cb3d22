"""The tunnel of a remote intercept: many TCP streams over one TLS connection (mux.py)."""
