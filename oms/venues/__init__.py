"""Per-venue order gateways: signing, encoding, decoding of acks and execution reports."""
