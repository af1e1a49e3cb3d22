"""The composition root: wires store, runtime, gateway and controllers; serves the API."""
