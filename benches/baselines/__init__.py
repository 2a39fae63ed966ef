"""Honest baselines the harnesses compare against (faster_fifo pipeline, naive asyncio bot)."""
