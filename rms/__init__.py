"""Pre-trade and account risk checks, trading state and kill switch. Allocates nothing on the check path."""
