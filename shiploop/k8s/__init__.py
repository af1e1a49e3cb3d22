"""Kubernetes: the project rendered to manifests (and Gateway API routes), and the in-pod gateway agent."""
