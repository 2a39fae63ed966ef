"""Host tuning: check (report) and apply (dry-run by default) for cores, IRQs, governor and sysctl. Never required to run."""
