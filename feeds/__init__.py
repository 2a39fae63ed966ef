"""Market-data feed handlers: per-venue subscribe messages, pure parsers, book sync; writes market-data rings. Never places orders."""
