"""The cardgate gateway: gRPC services, the group-commit writer, the store, the CLI."""
