"""The front doors: gRPC servicers and server, request parsing that never fails a call, and the
hand-off from the writer to the event loop."""
