"""gRPC transport: servicers (proto <-> domain), interceptors and server start-up."""
