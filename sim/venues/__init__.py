"""One module per simulated venue: binance, okx, gate."""
