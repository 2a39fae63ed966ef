"""Shared configuration, instruments, clocks and enums used by every process."""
