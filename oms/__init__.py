"""Order management: state machine, client order ids, per-venue gateways and reconciliation. Never decides what to trade."""
