"""Host tuning, applied: `python tune/apply.py [--cpus 2,3,4] [--dry-run | --apply] [--stop-irqbalance]`.

Plans the runtime fixes that tune/check.py reports (tune/sysctl.conf, the performance governor on the
trading cores, IRQ affinity onto the other cores, optionally stopping irqbalance). The default is a dry
run that prints every command; --apply needs root, writes an undo script first and says what changed.
Kernel parameters (isolcpus, nohz_full, rcu_nocbs) need a reboot and are only listed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

if __package__ in (None, ""):  # `python tune/apply.py`: make the `tune` package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tune import check  # noqa: E402

BOOT_PARAMS = ("isolcpus", "nohz_full", "rcu_nocbs")


@dataclass
class Write:
    """Write `new` into a /proc or /sys file whose value was `old`."""

    what: str
    path: str
    old: str
    new: str
    # False: the kernel may refuse it (per-CPU and managed IRQs) and that is not an error.
    required: bool = True

    def command(self) -> str:
        return f"echo {shlex.quote(self.new)} > {shlex.quote(self.path)}"

    def undo(self) -> str:
        return f"echo {shlex.quote(self.old)} > {shlex.quote(self.path)}"


@dataclass
class Service:
    """A service command (irqbalance); run only against the live root."""

    what: str
    argv: list[str]
    undo_argv: list[str]

    def command(self) -> str:
        return shlex.join(self.argv)

    def undo(self) -> str:
        return shlex.join(self.undo_argv)


def plan_sysctls(host: check.Host, conf: str) -> tuple[list[Write], list[str]]:
    ops, notes = [], []
    for key, wanted, _why in check.read_sysctl_conf(conf):
        path = check.sysctl_path(key)
        current = host.read(path)
        if current is None:
            notes.append(f"skip {key}: /{path} is not there (container?)")
            continue
        current = " ".join(current.split())
        rule = check.SYSCTL_RULES.get(key, "eq")
        try:
            already = check.sysctl_ok(rule, current, wanted)
        except (ValueError, IndexError):
            already = False
        if already:
            notes.append(f"ok {key} = {current}")  # never lower a value that is already better
            continue
        ops.append(Write(key, host.path(path), current, wanted))
    return ops, notes


def plan_governor(host: check.Host, cpus: list[int]) -> tuple[list[Write], list[str]]:
    ops, notes = [], []
    for c in cpus:
        rel = f"{check.CPU_SYS}/cpu{c}/cpufreq/scaling_governor"
        current = host.read(rel)
        if current is None:
            notes.append(f"skip governor cpu{c}: no cpufreq (VM or fixed clock)")
            continue
        if current == "performance":
            notes.append(f"ok governor cpu{c} = performance")
            continue
        available = host.read(f"{check.CPU_SYS}/cpu{c}/cpufreq/scaling_available_governors")
        if available is not None and "performance" not in available.split():
            notes.append(f"skip governor cpu{c}: 'performance' not offered (available: {available})")
            continue
        ops.append(Write(f"governor cpu{c}", host.path(rel), current, "performance"))
    return ops, notes


def plan_irqs(host: check.Host, cpus: list[int]) -> tuple[list[Write], list[str]]:
    trading = set(cpus)
    hk = check.housekeeping_cpus(host, cpus)
    if not hk:
        why = "no core is left for them" if hk == set() else "the online cores are unknown"
        return [], [f"skip IRQ affinity: {why}"]
    ops, notes = [], []
    affinities = check.irq_affinities(host) or {}
    for irq, cs in affinities.items():
        if not cs & trading:
            continue
        # Keep an IRQ where it was among the OS cores; one only on trading cores goes to all OS cores.
        new = (cs - trading) or hk
        rel = f"proc/irq/{irq}/smp_affinity_list"
        ops.append(
            Write(
                f"irq {irq}",
                host.path(rel),
                check.format_cpulist(cs),
                check.format_cpulist(new),
                required=False,
            )
        )
    if affinities and not ops:
        notes.append(f"ok no IRQ on cores {check.format_cpulist(trading)}")
    default = host.read("proc/irq/default_smp_affinity")
    if default is not None:
        try:
            mask = check.parse_hexmask(default)
        except ValueError:
            mask = trading
        if mask & trading:
            ops.append(
                Write(
                    "irq default affinity",
                    host.path("proc/irq/default_smp_affinity"),
                    default,
                    check.format_hexmask(hk),
                )
            )
    return ops, notes


def plan_irqbalance(host: check.Host, stop: bool) -> tuple[list[Service], list[str]]:
    running = check.irqbalance_running(host)
    if not running:
        return [], []
    if not stop:
        return [], [
            "irqbalance is running and will move IRQs back: add --stop-irqbalance, or set "
            "IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance"
        ]
    return [
        Service("irqbalance", ["systemctl", "stop", "irqbalance"], ["systemctl", "start", "irqbalance"])
    ], []


def plan(
    host: check.Host, cpus: list[int], stop_irqbalance: bool = False, conf: str = check.SYSCTL_CONF
) -> tuple[list[Write | Service], list[str]]:
    """Every change, in the order to make it (irqbalance first, so it cannot undo the IRQ moves)."""
    ops: list[Write | Service] = []
    notes: list[str] = []
    for part_ops, part_notes in (
        plan_irqbalance(host, stop_irqbalance),
        plan_sysctls(host, conf),
        plan_governor(host, cpus),
        plan_irqs(host, cpus),
    ):
        ops.extend(part_ops)
        notes.extend(part_notes)
    return ops, notes


def boot_params_missing(host: check.Host, cpus: list[int]) -> list[str]:
    """Kernel parameters check.py wants that only a reboot can set, e.g. ["isolcpus=2-4"]."""
    out = []
    for param in BOOT_PARAMS:
        item = check.check_isolation(host, cpus, param)
        if item.status != check.OK and item.current != "n/a":
            out.append(f"{param}={item.recommended}")
    return out


def write_undo(ops: list[Write | Service], undo_dir: str, live: bool) -> str:
    """An sh script restoring every previous value, in reverse order; written before anything changes."""
    os.makedirs(undo_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(undo_dir, f"undo-{stamp}.sh")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(undo_dir, f"undo-{stamp}-{n}.sh")
    lines = [
        "#!/bin/sh",
        f"# Undo of tune/apply.py --apply at {time.strftime('%Y-%m-%d %H:%M:%S')}.",
        "# Restores the values found before the change; run as root.",
    ]
    for op in reversed(ops):
        if isinstance(op, Service) and not live:
            continue
        lines.append(f"{op.undo()} || echo 'undo: could not restore {op.what}' >&2")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o755)
    return path


def execute(op: Write | Service, live: bool) -> tuple[str, str]:
    """Make one change: ("changed" | "skipped" | "refused" | "failed", what to print)."""
    if isinstance(op, Service):
        if not live:
            return "skipped", f"{op.command()}: not run, --root is not /"
        try:
            done = subprocess.run(op.argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            return "failed", f"{op.command()}: {e}"
        if done.returncode != 0:
            return "failed", f"{op.command()}: {done.stderr.strip() or f'exit {done.returncode}'}"
        return "changed", op.command()
    try:
        with open(op.path, "w", encoding="utf-8") as f:
            f.write(op.new + "\n")
    except OSError as e:
        # Per-CPU and kernel-managed IRQs refuse a new affinity: expected, not an error.
        return ("failed" if op.required else "refused"), f"{op.path}: {e.strerror or e}"
    return "changed", f"{op.old} -> {op.new}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python tune/apply.py",
        description="Apply runtime host tuning for the trading cores (dry run by default).",
    )
    ap.add_argument(
        "--cpus",
        default=None,
        help="trading cores, e.g. 2,3,4 or 2-4 (default: what `python run.py` would use)",
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print every command, change nothing (default)")
    mode.add_argument("--apply", action="store_true", help="make the changes (root only)")
    ap.add_argument("--stop-irqbalance", action="store_true", help="also stop irqbalance (systemctl)")
    ap.add_argument("--root", default="/", help="act on /proc and /sys under this directory (tests)")
    ap.add_argument("--undo-dir", default=check.TUNE_DIR, help="where the undo script goes (default: tune/)")
    args = ap.parse_args(argv)
    host = check.Host(args.root)
    try:
        cpus = check.resolve_cpus(host, args.cpus)
    except ValueError as e:
        print(f"apply: {e}", file=sys.stderr)
        return 2
    if args.apply and os.geteuid() != 0:
        print("apply: --apply needs root (sudo); without it this prints the commands only", file=sys.stderr)
        return 2
    ops, notes = plan(host, cpus, args.stop_irqbalance)
    cpus_text = check.format_cpulist(cpus)
    boot = boot_params_missing(host, cpus)
    print(f"# trading cores {cpus_text}; root {host.root}")
    for note in notes:
        print(f"# {note}")

    if not args.apply:
        for op in ops:
            was = f"was {op.old}" if isinstance(op, Write) else "then IRQ affinity sticks"
            print(f"{op.command()}    # {op.what}: {was}")
        print(
            f"# dry run: nothing changed ({len(ops)} command{'s' if len(ops) != 1 else ''}). "
            f"To apply: sudo python tune/apply.py --apply --cpus {cpus_text}"
        )
        if boot:
            print(f"# needs a reboot, not done here: kernel parameters {' '.join(boot)} (see tune/README.md)")
        return 0

    if not ops:
        print("nothing to change; no undo script written")
        return 0
    undo_path = write_undo(ops, args.undo_dir, host.is_live)
    counts = {"changed": 0, "skipped": 0, "refused": 0, "failed": 0}
    for op in ops:
        outcome, text = execute(op, host.is_live)
        counts[outcome] += 1
        print(f"{outcome} {op.what}: {text}")
    print(
        f"# {counts['changed']} changed, {counts['refused']} refused by the kernel, "
        f"{counts['skipped']} skipped, {counts['failed']} failed"
    )
    print(f"undo: sh {undo_path}")
    print(
        f"# runtime only: lost at reboot. To keep the sysctls: cp {check.SYSCTL_CONF} /etc/sysctl.d/90-hft.conf"
    )
    if boot:
        print(f"# needs a reboot, not done here: kernel parameters {' '.join(boot)} (see tune/README.md)")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
