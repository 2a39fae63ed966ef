"""Replays recorded or generated market data through the same strategy and risk code with the simulator's matching engine."""
