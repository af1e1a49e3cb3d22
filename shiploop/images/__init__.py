"""Container images of service versions: Dockerfiles, content tags, builders, registries."""
