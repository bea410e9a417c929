"""Self-hostable Emporix Customer Segment service: customer assignments over gRPC."""
