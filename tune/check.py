"""Host tuning report: `python tune/check.py [--cpus 2,3,4] [--root /] [--json]`.

Reads /proc/cmdline, /sys and /proc/sys and says, per item, what is set, what a pinned busy-polling
process wants and the command or kernel parameter that fixes it. Reads only: never changes the host,
and a missing file (containers, VMs) is reported as UNKNOWN, never an error. Exit 0 unless the
arguments are wrong (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
from dataclasses import asdict, dataclass, field

OK, WARN, UNKNOWN = "OK", "WARN", "UNKNOWN"

TUNE_DIR = os.path.dirname(os.path.abspath(__file__))
SYSCTL_CONF = os.path.join(TUNE_DIR, "sysctl.conf")

# How a current sysctl value is compared with tune/sysctl.conf: "min" = at least, "max" = at most,
# "min_last" = the last field (the max of a min/default/max triple) at least, "eq" = exactly.
SYSCTL_RULES = {
    "net.core.busy_poll": "min",
    "net.core.busy_read": "min",
    "net.core.rmem_max": "min",
    "net.core.wmem_max": "min",
    "net.ipv4.tcp_rmem": "min_last",
    "net.ipv4.tcp_wmem": "min_last",
    "vm.swappiness": "max",
    "kernel.sched_rt_runtime_us": "eq",
    "kernel.numa_balancing": "eq",
}

# Idle states with an exit latency above this stay off on trading cores (C1 is ~1-2 us, C1E ~10 us,
# C6 ~100 us): a core that went deep takes that long to react to the next frame.
MAX_IDLE_EXIT_LATENCY_US = 2
# A memlock limit this large lets a process mlockall() its rings and heap.
MIN_MEMLOCK_BYTES = 1 << 30

CPU_SYS = "sys/devices/system/cpu"
THP_SYS = "sys/kernel/mm/transparent_hugepage"
IRQBALANCE_CONFIGS = ("etc/default/irqbalance", "etc/sysconfig/irqbalance")


@dataclass
class Item:
    """One line of the report. `detail` carries per-core or per-IRQ values for --json."""

    item: str
    current: str
    recommended: str
    status: str
    fix: str
    why: str = ""
    detail: dict = field(default_factory=dict)


class Host:
    """Paths of a host, all relative to `root` so tests can point it at a fixture tree."""

    def __init__(self, root: str = "/") -> None:
        self.root = root

    @property
    def is_live(self) -> bool:
        return os.path.realpath(self.root) == "/"

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    def read(self, rel: str) -> str | None:
        """The file's text stripped, or None when it is missing or unreadable."""
        try:
            with open(self.path(rel), encoding="utf-8", errors="replace") as f:
                return f.read().strip()
        except OSError:
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self.path(rel))
        except OSError:
            return []


# ---------------------------------------------------------------------------------------------- cpu lists


def parse_cpulist(text: str) -> set[int]:
    """Kernel cpu-list syntax: "2-4,6", "0-7:2/4" (groups); ValueError on anything else."""
    cpus: set[int] = set()
    text = text.strip()
    if not text:
        return cpus
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?\s*", part)
        if not m:
            raise ValueError(f"bad cpu list item {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad cpu range {part!r}")
        used, group = (int(m.group(3)), int(m.group(4))) if m.group(3) else (1, 1)
        if group <= 0 or used <= 0:
            raise ValueError(f"bad cpu group {part!r}")
        cpus.update(c for c in range(lo, hi + 1) if (c - lo) % group < used)
    return cpus


def format_cpulist(cpus) -> str:
    """{2, 3, 4, 6} -> "2-4,6"."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [c]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def parse_hexmask(text: str) -> set[int]:
    """Kernel cpumask ("00000000,0000000c") -> {2, 3}."""
    value = int(text.replace(",", "").strip() or "0", 16)
    return {i for i in range(value.bit_length()) if value >> i & 1}


def format_hexmask(cpus) -> str:
    return format(sum(1 << c for c in cpus), "x")


def parse_cpus_arg(text: str) -> list[int]:
    """--cpus "2,3,4" or "2-4" -> [2, 3, 4]; ValueError with a user-facing message."""
    try:
        cpus = parse_cpulist(text)
    except ValueError:
        raise ValueError(f"--cpus {text!r}: expected core numbers like 2,3,4 or 2-4") from None
    if not cpus:
        raise ValueError("--cpus is empty: give the trading cores, e.g. --cpus 2,3,4")
    return sorted(cpus)


def online_cpus(host: Host) -> set[int] | None:
    text = host.read(f"{CPU_SYS}/online")
    if text is None:
        return None
    try:
        return parse_cpulist(text)
    except ValueError:
        return None


def available_cpus(host: Host) -> set[int]:
    """Cores a process may run on: this process's affinity on the live host, else the tree's online list."""
    if not host.is_live:
        online = online_cpus(host)
        if online:
            return online
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def default_trading_cpus(available) -> list[int]:
    """The cores `python run.py` uses with no --cpus (run.py calls this): all but the lowest, left to
    the OS and interrupts, when there are more than 2."""
    cores = sorted(available)
    return cores[1:] if len(cores) > 2 else cores


def resolve_cpus(host: Host, cpus_arg: str | None) -> list[int]:
    """--cpus checked against the host's online cores, or the run.py default; ValueError for the user."""
    if cpus_arg is None:
        return default_trading_cpus(available_cpus(host))
    cpus = parse_cpus_arg(cpus_arg)
    online = online_cpus(host)
    if online:
        missing = sorted(set(cpus) - online)
        if missing:
            raise ValueError(
                f"--cpus: core {format_cpulist(missing)} is not online (online: {format_cpulist(online)})"
            )
    return cpus


def housekeeping_cpus(host: Host, cpus) -> set[int] | None:
    """Online cores that are not trading cores (IRQs and the OS go there); None when unknown."""
    online = online_cpus(host)
    return None if online is None else online - set(cpus)


# ------------------------------------------------------------------------------------------ small parsers


def cmdline_params(text: str) -> dict[str, str]:
    """Kernel parameters as {name: value}; the last one wins, arguments after "--" belong to init."""
    params: dict[str, str] = {}
    for tok in text.split():
        if tok == "--":
            break
        name, _, value = tok.partition("=")
        params[name] = value
    return params


def isolcpus_cpus(value: str) -> set[int]:
    """isolcpus=[nohz,domain,managed_irq,]2-4 -> {2, 3, 4}."""
    parts = [p for p in value.split(",") if p and not re.fullmatch(r"\s*[a-z_]+\s*", p)]
    return parse_cpulist(",".join(parts))


def bracketed(text: str) -> str:
    """THP files show the active choice in brackets: "always [madvise] never" -> "madvise"."""
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else text.strip()


def read_sysctl_conf(path: str = SYSCTL_CONF) -> list[tuple[str, str, str]]:
    """(key, value, why) per setting; `why` is the comment block right above it."""
    out: list[tuple[str, str, str]] = []
    why: list[str] = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                why = []
            elif line[0] in "#;":
                why.append(line.lstrip("#; ").strip())
            elif "=" in line:
                key, _, value = line.partition("=")
                out.append((key.strip(), " ".join(value.split()), " ".join(why)))
                why = []
    return out


def sysctl_path(key: str) -> str:
    return "proc/sys/" + key.replace(".", "/")


def sysctl_ok(rule: str, current: str, wanted: str) -> bool:
    cur, want = current.split(), wanted.split()
    if rule == "eq":
        return cur == want
    if rule == "min":
        return int(cur[0]) >= int(want[0])
    if rule == "max":
        return int(cur[0]) <= int(want[0])
    if rule == "min_last":
        return int(cur[-1]) >= int(want[-1])
    raise ValueError(f"unknown sysctl rule {rule!r}")


def sysctl_shown(rule: str, wanted: str) -> str:
    return {"min": f">= {wanted}", "max": f"<= {wanted}", "min_last": f"{wanted} (max >=)"}.get(rule, wanted)


def group_by_value(values: dict[int, str]) -> str:
    """{2: "performance", 3: "performance", 4: "powersave"} -> "cpu2-3 performance, cpu4 powersave"."""
    groups: dict[str, list[int]] = {}
    for cpu, value in sorted(values.items()):
        groups.setdefault(value, []).append(cpu)
    if len(groups) == 1:
        return next(iter(groups))
    return ", ".join(f"cpu{format_cpulist(cs)} {v}" for v, cs in groups.items())


# ---------------------------------------------------------------------------------------------- the checks


def check_isolation(host: Host, cpus: list[int], param: str) -> Item:
    why = {
        "isolcpus": "keeps the scheduler from putting other tasks on the trading cores",
        "nohz_full": "stops the periodic scheduler tick on a core that runs one task (fewer interruptions)",
        "rcu_nocbs": "moves RCU callback work off the trading cores to kthreads on the OS cores",
    }[param]
    # cpu 0 keeps timekeeping and the boot-time housekeeping work; isolating it is not possible.
    want = set(cpus) - {0}
    hk = housekeeping_cpus(host, cpus)
    if hk == set():
        return Item(
            param,
            "n/a",
            "leave >= 1 core for the OS",
            WARN,
            "choose --cpus that leave a core (e.g. all but core 0)",
            why,
        )
    if not want:
        return Item(
            param,
            "n/a",
            "trading cores other than 0",
            WARN,
            "cpu 0 keeps timekeeping and cannot be isolated: choose other --cpus",
            why,
        )
    wanted = format_cpulist(want)
    fix = f"boot with {param}={wanted}" + (
        " (nohz_full needs CONFIG_NO_HZ_FULL)" if param == "nohz_full" else ""
    )
    text = host.read("proc/cmdline")
    value: str | None = None
    source = "/proc/cmdline"
    if text is not None:
        value = cmdline_params(text).get(param)
    # Without /proc/cmdline, sysfs still shows what the kernel isolated.
    if value is None and param in ("isolcpus", "nohz_full"):
        sys_value = host.read(f"{CPU_SYS}/{'isolated' if param == 'isolcpus' else 'nohz_full'}")
        if sys_value is not None and (text is None or sys_value.strip()):
            value, source = sys_value, f"/{CPU_SYS}"
    if value is None:
        if text is None:
            return Item(param, "unknown", wanted, UNKNOWN, fix, why)
        return Item(param, "absent", wanted, WARN, fix, why)
    try:
        have = isolcpus_cpus(value) if param == "isolcpus" else parse_cpulist(value)
    except ValueError:
        return Item(param, value, wanted, WARN, fix, why, {"source": source})
    missing = want - have
    status = OK if not missing else WARN
    current = value or "(empty)"
    return Item(param, current, wanted, status, fix, why, {"source": source, "missing": sorted(missing)})


def check_governor(host: Host, cpus: list[int]) -> Item:
    values = {c: host.read(f"{CPU_SYS}/cpu{c}/cpufreq/scaling_governor") or "unknown" for c in cpus}
    bad = [c for c, v in values.items() if v not in ("performance", "unknown")]
    unknown = [c for c, v in values.items() if v == "unknown"]
    status = WARN if bad else UNKNOWN if unknown else OK
    current = group_by_value(values) if len(values) else "unknown"
    if unknown and len(unknown) == len(values):
        current = "unknown (no cpufreq: VM or fixed clock)"
    return Item(
        "cpu governor",
        current,
        "performance",
        status,
        f"cpupower -c {format_cpulist(cpus)} frequency-set -g performance",
        "a power-saving governor lowers the clock of a core that just idled; the next tick runs slower",
        {"per_cpu": {str(c): v for c, v in values.items()}},
    )


def check_turbo(host: Host) -> Item:
    why = (
        "the turbo clock moves with load and temperature; a fixed clock gives repeatable latency "
        "(turbo may lower the median: measure both)"
    )
    no_turbo = host.read(f"{CPU_SYS}/intel_pstate/no_turbo")
    if no_turbo is not None:
        current = "off" if no_turbo == "1" else "on"
        return Item(
            "turbo",
            current,
            "off",
            OK if current == "off" else WARN,
            f"echo 1 > /{CPU_SYS}/intel_pstate/no_turbo",
            why,
            {"source": "intel_pstate/no_turbo"},
        )
    boost = host.read(f"{CPU_SYS}/cpufreq/boost")
    if boost is not None:
        current = "on" if boost == "1" else "off"
        return Item(
            "turbo",
            current,
            "off",
            OK if current == "off" else WARN,
            f"echo 0 > /{CPU_SYS}/cpufreq/boost",
            why,
            {"source": "cpufreq/boost"},
        )
    return Item(
        "turbo",
        "unknown",
        "off",
        UNKNOWN,
        f"echo 1 > /{CPU_SYS}/intel_pstate/no_turbo (or 0 > cpufreq/boost)",
        why,
    )


def idle_states(host: Host, cpu: int) -> list[dict] | None:
    """[{name, latency_us, disabled}] for the core's cpuidle states; None when there are none."""
    base = f"{CPU_SYS}/cpu{cpu}/cpuidle"
    names = sorted((n for n in host.listdir(base) if re.fullmatch(r"state\d+", n)), key=lambda n: int(n[5:]))
    states = []
    for n in names:
        latency = host.read(f"{base}/{n}/latency")
        states.append(
            {
                "state": n,
                "name": host.read(f"{base}/{n}/name") or n,
                "latency_us": int(latency) if latency and latency.isdigit() else None,
                "disabled": host.read(f"{base}/{n}/disable") == "1",
            }
        )
    return states or None


def check_cstates(host: Host, cpus: list[int]) -> Item:
    why = "a core in a deep C-state needs tens of microseconds to wake up for the next frame"
    fix = (
        f"cpupower -c {format_cpulist(cpus)} idle-set -D {MAX_IDLE_EXIT_LATENCY_US + 1}"
        " (or boot with intel_idle.max_cstate=1 processor.max_cstate=1)"
    )
    recommended = f"states > {MAX_IDLE_EXIT_LATENCY_US} us off"
    per_cpu: dict[int, str] = {}
    detail: dict = {}
    for c in cpus:
        states = idle_states(host, c)
        if states is None:
            per_cpu[c] = "unknown"
            continue
        deep = [
            s
            for s in states
            if not s["disabled"] and (s["latency_us"] is None or s["latency_us"] > MAX_IDLE_EXIT_LATENCY_US)
        ]
        per_cpu[c] = ("deep on: " + "+".join(s["name"] for s in deep)) if deep else "shallow only"
        detail[str(c)] = states
    cmdline = cmdline_params(host.read("proc/cmdline") or "")
    limited_by_cmdline = (
        cmdline.get("idle") == "poll"
        or cmdline.get("intel_idle.max_cstate") in ("0", "1")
        or cmdline.get("processor.max_cstate") == "1"
    )
    if all(v == "unknown" for v in per_cpu.values()):
        driver = host.read(f"{CPU_SYS}/cpuidle/current_driver")
        if limited_by_cmdline:
            return Item("c-states", "limited on the kernel command line", recommended, OK, fix, why)
        current = "unknown" + (f" (cpuidle driver: {driver})" if driver else "")
        return Item("c-states", current, recommended, UNKNOWN, fix, why)
    bad = any(v.startswith("deep on") for v in per_cpu.values())
    status = WARN if bad else UNKNOWN if "unknown" in per_cpu.values() else OK
    return Item("c-states", group_by_value(per_cpu), recommended, status, fix, why, {"per_cpu": detail})


def check_thp(host: Host, which: str) -> Item:
    if which == "enabled":
        accepted, recommended = ("never", "madvise"), "never (or madvise)"
        why = "khugepaged collapses pages behind the process's back: TLB shootdowns on the trading cores"
    else:
        accepted, recommended = ("never", "defer"), "never (or defer)"
        why = "with direct compaction a page fault can stall for milliseconds while the kernel defragments"
    text = host.read(f"{THP_SYS}/{which}")
    fix = f"echo {accepted[0]} > /{THP_SYS}/{which} (boot: transparent_hugepage=never)"
    if text is None:
        return Item(f"thp {which}", "unknown", recommended, UNKNOWN, fix, why)
    current = bracketed(text)
    return Item(f"thp {which}", current, recommended, OK if current in accepted else WARN, fix, why)


def process_names(host: Host) -> list[str] | None:
    """Every process's comm, or None when /proc shows no processes."""
    pids = [p for p in host.listdir("proc") if p.isdigit()]
    if not pids:
        return None
    names = []
    for pid in pids:
        comm = host.read(f"proc/{pid}/comm")
        if comm:
            names.append(comm)
    return names


def irqbalance_banned(host: Host) -> set[int] | None:
    """Cores irqbalance is told to leave alone in its config file, or None."""
    for rel in IRQBALANCE_CONFIGS:
        text = host.read(rel)
        if not text:
            continue
        for line in text.splitlines():
            name, _, value = line.strip().partition("=")
            value = value.strip().strip("\"'")
            try:
                if name == "IRQBALANCE_BANNED_CPULIST" and value:
                    return parse_cpulist(value)
                if name == "IRQBALANCE_BANNED_CPUS" and value:
                    return parse_hexmask(value)
            except ValueError:
                continue
    return None


def irqbalance_running(host: Host) -> bool | None:
    names = process_names(host)
    return None if names is None else "irqbalance" in names


def check_irqbalance(host: Host, cpus: list[int]) -> Item:
    why = "irqbalance moves IRQs every 10 s and puts them back on the trading cores"
    fix = f"systemctl disable --now irqbalance (or IRQBALANCE_BANNED_CPULIST={format_cpulist(cpus)})"
    recommended = "stopped (or trading cores banned)"
    running = irqbalance_running(host)
    if running is None:
        return Item("irqbalance", "unknown", recommended, UNKNOWN, fix, why)
    if not running:
        return Item("irqbalance", "not running", recommended, OK, fix, why)
    banned = irqbalance_banned(host)
    if banned is not None and set(cpus) <= banned:
        return Item("irqbalance", f"running, bans {format_cpulist(banned)}", recommended, OK, fix, why)
    return Item("irqbalance", "running", recommended, WARN, fix, why)


def irq_affinities(host: Host) -> dict[int, set[int]] | None:
    """{irq: cores it may be delivered to}; None when /proc/irq is not visible."""
    irqs = sorted(int(n) for n in host.listdir("proc/irq") if n.isdigit())
    out: dict[int, set[int]] = {}
    for irq in irqs:
        text = host.read(f"proc/irq/{irq}/smp_affinity_list")
        if text is None:
            continue
        try:
            out[irq] = parse_cpulist(text)
        except ValueError:
            continue
    return out or None


def check_irq_affinity(host: Host, cpus: list[int]) -> Item:
    why = "an interrupt on a trading core preempts the hot loop (handler + softirq, often tens of us)"
    hk = housekeeping_cpus(host, cpus)
    target = format_cpulist(hk) if hk else "?"
    fix = (
        f"python tune/apply.py --cpus {format_cpulist(cpus)} (echo {target} > /proc/irq/N/smp_affinity_list)"
    )
    recommended = f"none on {format_cpulist(cpus)}"
    affinities = irq_affinities(host)
    if affinities is None:
        return Item("irq affinity", "unknown", recommended, UNKNOWN, fix, why)
    on_trading = sorted(irq for irq, cs in affinities.items() if cs & set(cpus))
    detail = {"irqs_on_trading_cores": on_trading, "irqs_seen": len(affinities)}
    if hk == set():
        return Item(
            "irq affinity",
            f"{len(on_trading)} of {len(affinities)} IRQs on trading cores",
            "leave >= 1 core for IRQs",
            WARN,
            "choose --cpus that leave a core for the OS",
            why,
            detail,
        )
    if not on_trading:
        return Item(
            "irq affinity", f"0 of {len(affinities)} IRQs on trading cores", recommended, OK, fix, why, detail
        )
    return Item(
        "irq affinity",
        f"{len(on_trading)} of {len(affinities)} IRQs on trading cores",
        recommended,
        WARN,
        fix,
        why,
        detail,
    )


def check_irq_default(host: Host, cpus: list[int]) -> Item:
    why = "new IRQs (a NIC queue after a reset, a hot-plugged device) start on this mask"
    hk = housekeeping_cpus(host, cpus)
    if hk:
        recommended = format_hexmask(hk)
        fix = f"echo {recommended} > /proc/irq/default_smp_affinity"
    elif hk is None:
        recommended = f"a mask without cpu {format_cpulist(cpus)}"
        fix = "echo <mask of the OS cores> > /proc/irq/default_smp_affinity"
    else:
        recommended, fix = "leave >= 1 core for IRQs", "choose --cpus that leave a core for the OS"
    text = host.read("proc/irq/default_smp_affinity")
    if text is None:
        return Item("irq default affinity", "unknown", recommended, UNKNOWN, fix, why)
    try:
        mask = parse_hexmask(text)
    except ValueError:
        return Item("irq default affinity", text, recommended, WARN, fix, why)
    current = f"{text} (cpu {format_cpulist(mask)})"
    status = OK if not mask & set(cpus) else WARN
    return Item("irq default affinity", current, recommended, status, fix, why)


def check_sysctls(host: Host, conf: str = SYSCTL_CONF) -> list[Item]:
    items = []
    for key, wanted, why in read_sysctl_conf(conf):
        rule = SYSCTL_RULES.get(key, "eq")
        shown = sysctl_shown(rule, wanted)
        fix = f"sysctl -w {key}='{wanted}'" if " " in wanted else f"sysctl -w {key}={wanted}"
        text = host.read(sysctl_path(key))
        if text is None:
            items.append(Item(key, "unknown", shown, UNKNOWN, fix, why))
            continue
        current = " ".join(text.split())
        try:
            status = OK if sysctl_ok(rule, current, wanted) else WARN
        except (ValueError, IndexError):
            status = WARN
        items.append(Item(key, current, shown, status, fix, why, {"rule": rule, "wanted": wanted}))
    return items


def memlock_limit(host: Host) -> tuple[int | None, int | None] | None:
    """(soft, hard) RLIMIT_MEMLOCK in bytes, None meaning unlimited; None when unknown."""
    if host.is_live:
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        return (
            None if soft == resource.RLIM_INFINITY else soft,
            None if hard == resource.RLIM_INFINITY else hard,
        )
    text = host.read("proc/self/limits")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("Max locked memory"):
            fields = line[len("Max locked memory") :].split()
            try:
                soft, hard = (None if f == "unlimited" else int(f) for f in fields[:2])
            except ValueError:
                return None
            return soft, hard
    return None


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def check_memlock(host: Host) -> Item:
    why = "mlockall() keeps rings and heap resident: no page fault on the hot path; the limit caps it"
    fix = "ulimit -l unlimited (limits.conf: '<user> - memlock unlimited'; systemd: LimitMEMLOCK=infinity)"
    recommended = f"unlimited (>= {format_bytes(MIN_MEMLOCK_BYTES)})"
    limit = memlock_limit(host)
    if limit is None:
        return Item("memlock limit", "unknown", recommended, UNKNOWN, fix, why)
    soft, hard = limit
    ok = soft is None or soft >= MIN_MEMLOCK_BYTES
    current = format_bytes(soft) + ("" if soft == hard else f" (hard {format_bytes(hard)})")
    return Item(
        "memlock limit", current, recommended, OK if ok else WARN, fix, why, {"soft": soft, "hard": hard}
    )


def run_checks(host: Host, cpus: list[int], conf: str = SYSCTL_CONF) -> list[Item]:
    """Every item, in report order; an unexpected error in one check becomes its UNKNOWN line."""
    checks = [
        ("isolcpus", lambda: check_isolation(host, cpus, "isolcpus")),
        ("nohz_full", lambda: check_isolation(host, cpus, "nohz_full")),
        ("rcu_nocbs", lambda: check_isolation(host, cpus, "rcu_nocbs")),
        ("cpu governor", lambda: check_governor(host, cpus)),
        ("turbo", lambda: check_turbo(host)),
        ("c-states", lambda: check_cstates(host, cpus)),
        ("thp enabled", lambda: check_thp(host, "enabled")),
        ("thp defrag", lambda: check_thp(host, "defrag")),
        ("irqbalance", lambda: check_irqbalance(host, cpus)),
        ("irq affinity", lambda: check_irq_affinity(host, cpus)),
        ("irq default affinity", lambda: check_irq_default(host, cpus)),
        ("sysctl", lambda: check_sysctls(host, conf)),
        ("memlock limit", lambda: check_memlock(host)),
    ]
    items: list[Item] = []
    for name, check in checks:
        try:
            result = check()
        except Exception as e:  # a host we did not foresee must not stop the report
            result = Item(name, f"unreadable: {type(e).__name__}: {e}", "", UNKNOWN, "", "")
        items.extend(result if isinstance(result, list) else [result])
    return items


# ------------------------------------------------------------------------------------------------ output


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(items: list[Item]) -> str:
    headers = ("item", "current", "recommended", "status", "fix")
    rows = [(i.item, clip(i.current, 40), clip(i.recommended, 30), i.status, i.fix) for i in items]
    widths = [max(len(r[k]) for r in [headers, *rows]) for k in range(4)]
    lines = []
    for r in [headers, *rows]:
        lines.append("  ".join(r[k].ljust(widths[k]) for k in range(4)) + "  " + r[4])
    return "\n".join(line.rstrip() for line in lines)


def summary(items: list[Item]) -> dict[str, int]:
    return {s: sum(1 for i in items if i.status == s) for s in (OK, WARN, UNKNOWN)}


def report(host: Host, cpus: list[int], conf: str = SYSCTL_CONF) -> dict:
    items = run_checks(host, cpus, conf)
    hk = housekeeping_cpus(host, cpus)
    return {
        "root": host.root,
        "cpus": cpus,
        "housekeeping_cpus": None if hk is None else sorted(hk),
        "summary": summary(items),
        "items": [asdict(i) for i in items],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python tune/check.py",
        description="Report host tuning for pinned low-latency trading processes.",
    )
    ap.add_argument(
        "--cpus",
        default=None,
        help="trading cores, e.g. 2,3,4 or 2-4 (default: what `python run.py` would use)",
    )
    ap.add_argument("--root", default="/", help="read /proc and /sys under this directory (tests)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    host = Host(args.root)
    try:
        cpus = resolve_cpus(host, args.cpus)
    except ValueError as e:
        print(f"check: {e}", file=sys.stderr)
        return 2
    rep = report(host, cpus)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    items = [Item(**i) for i in rep["items"]]
    hk = rep["housekeeping_cpus"]
    print(
        f"trading cores {format_cpulist(cpus)}; OS/IRQ cores "
        f"{'unknown' if hk is None else format_cpulist(hk) or 'none'}; root {host.root}"
    )
    print(format_table(items))
    s = rep["summary"]
    print(
        f"\n{s[OK]} OK, {s[WARN]} WARN, {s[UNKNOWN]} UNKNOWN. Kernel parameters (boot with ...) need a "
        f"reboot; `python tune/apply.py --cpus {format_cpulist(cpus)}` shows the runtime fixes (dry run)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
