"""The ISO 8583 host interface: terminals' messages onto the same core operations as gRPC."""
