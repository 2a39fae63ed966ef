"""tune/check.py and tune/apply.py against fake /proc and /sys trees: a tuned host, an untuned one and
a nearly empty one (a container). Nothing here reads or changes the real host's settings."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from tune import apply, check

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_PY = os.path.join(ROOT, "tune", "check.py")
APPLY_PY = os.path.join(ROOT, "tune", "apply.py")
NCPU = 6
TRADING = [2, 3, 4]
IRQS = {0: "0", 8: "0-5", 24: "0-5", 25: "3", 26: "0-1", 27: "4-5"}


def put(root, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def build_host(root, tuned: bool) -> None:
    """A 6-core host; `tuned` is what `check` should call OK for --cpus 2,3,4 (except the boot params)."""
    cpu = "sys/devices/system/cpu"
    put(root, f"{cpu}/online", f"0-{NCPU - 1}")
    cmdline = "BOOT_IMAGE=/vmlinuz ro quiet"
    if tuned:
        cmdline += " isolcpus=managed_irq,domain,2-4 nohz_full=2-4 rcu_nocbs=2-5"
    # Arguments after "--" go to init and must not count.
    put(root, "proc/cmdline", cmdline + " -- isolcpus=0-5")
    for c in range(NCPU):
        put(root, f"{cpu}/cpu{c}/cpufreq/scaling_governor", "performance" if tuned else "powersave")
        put(root, f"{cpu}/cpu{c}/cpufreq/scaling_available_governors", "performance powersave")
        for n, (name, latency) in enumerate((("POLL", 0), ("C1", 2), ("C1E", 10), ("C6", 133))):
            base = f"{cpu}/cpu{c}/cpuidle/state{n}"
            put(root, f"{base}/name", name)
            put(root, f"{base}/latency", str(latency))
            put(root, f"{base}/disable", "1" if tuned and latency > 2 else "0")
    put(root, f"{cpu}/intel_pstate/no_turbo", "1" if tuned else "0")
    thp = "sys/kernel/mm/transparent_hugepage"
    put(root, f"{thp}/enabled", "always madvise [never]" if tuned else "[always] madvise never")
    put(
        root,
        f"{thp}/defrag",
        "always defer defer+madvise madvise [never]"
        if tuned
        else "[always] defer defer+madvise madvise never",
    )
    sysctls = {
        "net/core/busy_poll": "50" if tuned else "0",
        "net/core/busy_read": "50" if tuned else "0",
        "net/core/rmem_max": "33554432" if tuned else "212992",
        "net/core/wmem_max": "16777216" if tuned else "212992",
        "net/ipv4/tcp_rmem": "4096\t131072\t33554432" if tuned else "4096\t131072\t6291456",
        "net/ipv4/tcp_wmem": "4096\t65536\t16777216" if tuned else "4096\t16384\t4194304",
        "vm/swappiness": "1" if tuned else "60",
        "kernel/sched_rt_runtime_us": "-1" if tuned else "950000",
        "kernel/numa_balancing": "0" if tuned else "1",
    }
    for rel, value in sysctls.items():
        put(root, f"proc/sys/{rel}", value)
    for irq, cpus in IRQS.items():
        put(root, f"proc/irq/{irq}/smp_affinity_list", "0-1" if tuned and irq != 0 else cpus)
    put(root, "proc/irq/default_smp_affinity", "00000000,00000023" if tuned else "3f")
    put(root, "proc/1/comm", "systemd")
    put(root, "proc/412/comm", "sshd")
    if not tuned:
        put(root, "proc/733/comm", "irqbalance")
    memlock = "unlimited            unlimited" if tuned else "8388608              8388608"
    put(
        root,
        "proc/self/limits",
        "Limit                     Soft Limit           Hard Limit           Units\n"
        f"Max locked memory         {memlock}            bytes",
    )


@pytest.fixture
def tuned_root(tmp_path):
    root = tmp_path / "tuned"
    build_host(root, tuned=True)
    return root


@pytest.fixture
def untuned_root(tmp_path):
    root = tmp_path / "untuned"
    build_host(root, tuned=False)
    return root


@pytest.fixture
def container_root(tmp_path):
    """What a container may show: no cmdline, no cpufreq, no IRQs, a few sysctls, no processes."""
    root = tmp_path / "container"
    put(root, "sys/devices/system/cpu/online", "0-3")
    put(root, "proc/sys/vm/swappiness", "60")
    put(root, "proc/sys/net/core/rmem_max", "garbage")
    return root


def snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def run_check_json(root, *args) -> dict:
    rc, out = call(check.main, ["--root", str(root), "--json", *args])
    assert rc == 0
    return json.loads(out)


def call(main, argv):
    """Run a main() in-process and return (exit code, stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def by_item(rep: dict) -> dict[str, dict]:
    return {i["item"]: i for i in rep["items"]}


def run_script(script, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


# ---------------------------------------------------------------------------------------------- parsers


def test_cpulist_round_trip():
    assert check.parse_cpulist("2-4,6") == {2, 3, 4, 6}
    assert check.parse_cpulist("0-7:2/4") == {0, 1, 4, 5}
    assert check.format_cpulist({6, 2, 3, 4, 9, 10}) == "2-4,6,9-10"
    assert check.isolcpus_cpus("managed_irq,domain,2-4") == {2, 3, 4}
    assert check.parse_hexmask("00000000,00000023") == {0, 1, 5}
    assert check.format_hexmask({0, 1, 5}) == "23"
    with pytest.raises(ValueError):
        check.parse_cpulist("4-2")
    with pytest.raises(ValueError):
        check.parse_cpus_arg("two")


def test_default_cpus_match_run_py_rule():
    assert check.default_trading_cpus({0, 1, 2, 3}) == [1, 2, 3]
    assert check.default_trading_cpus({0, 1}) == [0, 1]
    assert check.default_trading_cpus({5}) == [5]


def test_cmdline_params_stop_at_init_args():
    params = check.cmdline_params("ro isolcpus=2-4 quiet -- isolcpus=0")
    assert params["isolcpus"] == "2-4" and params["quiet"] == ""


def test_sysctl_conf_has_a_reason_and_a_rule_for_every_key():
    entries = check.read_sysctl_conf()
    keys = [k for k, _, _ in entries]
    assert set(keys) == set(check.SYSCTL_RULES)
    for key, value, why in entries:
        assert why, f"{key} has no comment saying why"
        assert "#" not in value, f"{key}: sysctl does not accept a comment after the value"


# ------------------------------------------------------------------------------------------------ check


def test_check_untuned_host_warns_with_recommended_values(untuned_root):
    rep = run_check_json(untuned_root, "--cpus", "2,3,4")
    items = by_item(rep)
    assert rep["cpus"] == TRADING and rep["housekeeping_cpus"] == [0, 1, 5]
    for param in ("isolcpus", "nohz_full", "rcu_nocbs"):
        assert items[param]["status"] == "WARN"
        assert items[param]["current"] == "absent"  # the value after "--" is init's, not the kernel's
        assert items[param]["recommended"] == "2-4"
        assert f"{param}=2-4" in items[param]["fix"]
    assert items["cpu governor"]["status"] == "WARN"
    assert items["cpu governor"]["current"] == "powersave"
    assert items["cpu governor"]["recommended"] == "performance"
    assert items["turbo"]["status"] == "WARN" and items["turbo"]["current"] == "on"
    assert items["c-states"]["status"] == "WARN" and "C6" in items["c-states"]["current"]
    assert items["thp enabled"]["status"] == "WARN" and items["thp enabled"]["current"] == "always"
    assert items["thp defrag"]["status"] == "WARN"
    assert items["irqbalance"]["status"] == "WARN" and items["irqbalance"]["current"] == "running"
    assert items["irq affinity"]["status"] == "WARN"
    assert items["irq affinity"]["detail"]["irqs_on_trading_cores"] == [8, 24, 25, 27]
    assert items["irq default affinity"]["status"] == "WARN"
    assert items["irq default affinity"]["recommended"] == "23"  # cores 0, 1, 5
    expected = {
        "net.core.busy_poll": ">= 50",
        "net.core.busy_read": ">= 50",
        "net.core.rmem_max": ">= 16777216",
        "net.core.wmem_max": ">= 16777216",
        "net.ipv4.tcp_rmem": "4096 131072 16777216 (max >=)",
        "net.ipv4.tcp_wmem": "4096 65536 16777216 (max >=)",
        "vm.swappiness": "<= 10",
        "kernel.sched_rt_runtime_us": "-1",
        "kernel.numa_balancing": "0",
    }
    for key, recommended in expected.items():
        assert items[key]["status"] == "WARN", key
        assert items[key]["recommended"] == recommended
        assert items[key]["fix"].startswith(f"sysctl -w {key}=")
    assert items["net.ipv4.tcp_rmem"]["current"] == "4096 131072 6291456"
    assert items["memlock limit"]["status"] == "WARN" and items["memlock limit"]["current"] == "8 MiB"
    assert rep["summary"]["OK"] == 0 and rep["summary"]["UNKNOWN"] == 0


def test_check_tuned_host_is_all_ok(tuned_root):
    rep = run_check_json(tuned_root, "--cpus", "2-4")
    not_ok = {i["item"]: (i["status"], i["current"]) for i in rep["items"] if i["status"] != "OK"}
    assert not_ok == {}
    items = by_item(rep)
    assert items["isolcpus"]["current"] == "managed_irq,domain,2-4"
    assert items["memlock limit"]["current"] == "unlimited"
    assert items["irqbalance"]["current"] == "not running"
    # a bigger buffer than recommended is fine, never "fixed" downwards
    assert items["net.core.rmem_max"]["current"] == "33554432"


def test_check_partial_isolation_and_mixed_governors(tuned_root):
    put(tuned_root, "proc/cmdline", "ro isolcpus=2-3 nohz_full=2-4 rcu_nocbs=2-4")
    put(tuned_root, "sys/devices/system/cpu/cpu4/cpufreq/scaling_governor", "schedutil")
    items = by_item(run_check_json(tuned_root, "--cpus", "2,3,4"))
    assert items["isolcpus"]["status"] == "WARN" and items["isolcpus"]["detail"]["missing"] == [4]
    assert items["nohz_full"]["status"] == "OK"
    assert items["cpu governor"]["status"] == "WARN"
    assert items["cpu governor"]["current"] == "cpu2-3 performance, cpu4 schedutil"


def test_check_irqbalance_with_banned_trading_cores_is_ok(untuned_root):
    put(untuned_root, "etc/default/irqbalance", 'IRQBALANCE_BANNED_CPULIST="2-4"')
    items = by_item(run_check_json(untuned_root, "--cpus", "2,3,4"))
    assert items["irqbalance"]["status"] == "OK"


def test_check_container_reports_unknown_never_raises(container_root):
    rep = run_check_json(container_root, "--cpus", "1,2,3")
    items = by_item(rep)
    for name in (
        "isolcpus",
        "nohz_full",
        "rcu_nocbs",
        "cpu governor",
        "turbo",
        "c-states",
        "thp enabled",
        "thp defrag",
        "irqbalance",
        "irq affinity",
        "irq default affinity",
        "net.core.busy_poll",
        "kernel.numa_balancing",
        "memlock limit",
    ):
        assert items[name]["status"] == "UNKNOWN", (name, items[name])
        assert items[name]["recommended"], name
    assert items["vm.swappiness"]["status"] == "WARN"
    assert items["net.core.rmem_max"]["status"] == "WARN"  # unparseable, reported, not raised


def test_check_empty_root_and_default_cpus(tmp_path):
    rep = run_check_json(tmp_path)  # nothing at all: default cores come from this process's affinity
    assert rep["cpus"] == check.default_trading_cpus(os.sched_getaffinity(0))
    assert all(i["status"] == "UNKNOWN" for i in rep["items"])


def test_check_default_cpus_follow_the_tree(untuned_root):
    assert run_check_json(untuned_root)["cpus"] == [1, 2, 3, 4, 5]


def test_check_table_is_aligned(untuned_root):
    rc, out = call(check.main, ["--root", str(untuned_root), "--cpus", "2,3,4"])
    assert rc == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("item"))
    col = lines[header].index("status")
    rows = lines[header + 1 : header + 1 + len(check.run_checks(check.Host(str(untuned_root)), TRADING))]
    assert rows and all(r[col:].split()[0] in ("OK", "WARN", "UNKNOWN") for r in rows)


@pytest.mark.parametrize("bad", ["x", "", "3-1", "2,,a", "9"])
def test_check_bad_cpus_exits_2_with_one_line(untuned_root, bad):
    done = run_script(CHECK_PY, "--root", str(untuned_root), "--cpus", bad)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "--cpus" in done.stderr


def test_check_script_runs_on_the_live_host():
    done = run_script(CHECK_PY, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"]


# ------------------------------------------------------------------------------------------------ apply


def test_apply_dry_run_prints_commands_and_changes_nothing(untuned_root):
    before = snapshot(untuned_root)
    done = run_script(APPLY_PY, "--root", str(untuned_root), "--cpus", "2,3,4", "--stop-irqbalance")
    assert done.returncode == 0, done.stderr
    assert snapshot(untuned_root) == before
    out = done.stdout
    r = str(untuned_root)
    for line in (
        f"echo 50 > {r}/proc/sys/net/core/busy_poll",
        f"echo 16777216 > {r}/proc/sys/net/core/rmem_max",
        f"echo '4096 131072 16777216' > {r}/proc/sys/net/ipv4/tcp_rmem",
        f"echo 10 > {r}/proc/sys/vm/swappiness",
        f"echo -1 > {r}/proc/sys/kernel/sched_rt_runtime_us",
        f"echo 0 > {r}/proc/sys/kernel/numa_balancing",
        f"echo performance > {r}/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        f"echo performance > {r}/sys/devices/system/cpu/cpu4/cpufreq/scaling_governor",
        f"echo 0-1,5 > {r}/proc/irq/8/smp_affinity_list",
        f"echo 0-1,5 > {r}/proc/irq/25/smp_affinity_list",  # only on a trading core: to all OS cores
        f"echo 5 > {r}/proc/irq/27/smp_affinity_list",  # keeps its OS core
        f"echo 23 > {r}/proc/irq/default_smp_affinity",
        "systemctl stop irqbalance",
    ):
        assert line in out, line
    assert "cpu0/cpufreq" not in out and "cpu5/cpufreq" not in out  # OS cores keep their governor
    assert "/proc/irq/26/" not in out and "/proc/irq/0/" not in out  # already off the trading cores
    assert out.index("systemctl stop irqbalance") < out.index("/proc/irq/8/")
    assert "isolcpus=2-4" in out and "dry run" in out
    assert not list(untuned_root.rglob("undo-*.sh"))


def test_apply_dry_run_on_tuned_host_has_nothing_to_do(tuned_root):
    rc, out = call(apply.main, ["--root", str(tuned_root), "--cpus", "2,3,4"])
    assert rc == 0
    assert not [line for line in out.splitlines() if line.startswith("echo ")]
    assert "(0 commands)" in out


def test_apply_container_root_skips_what_is_missing(container_root):
    rc, out = call(apply.main, ["--root", str(container_root), "--cpus", "1-3"])
    assert rc == 0
    assert f"echo 10 > {container_root}/proc/sys/vm/swappiness" in out
    assert "skip net.core.busy_poll" in out


def test_apply_bad_cpus_exits_2(untuned_root):
    done = run_script(APPLY_PY, "--root", str(untuned_root), "--cpus", "2,x")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def assert_refused(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "needs root" in done.stderr


def test_apply_for_real(untuned_root, tmp_path):
    """Non-root: refused with one line and exit 2. Root: changes the fake tree, writes a working undo."""
    undo_dir = tmp_path / "undo"
    before = snapshot(untuned_root)
    argv = [
        "--root",
        str(untuned_root),
        "--cpus",
        "2,3,4",
        "--apply",
        "--stop-irqbalance",
        "--undo-dir",
        str(undo_dir),
    ]
    if os.geteuid() != 0:
        assert_refused(run_script(APPLY_PY, *argv))
        assert snapshot(untuned_root) == before and not undo_dir.exists()
        return
    if shutil.which("setpriv"):  # as root, the refusal can still be seen by dropping to nobody
        assert_refused(
            subprocess.run(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    sys.executable,
                    APPLY_PY,
                    *argv,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                cwd="/",
            )
        )
        assert snapshot(untuned_root) == before and not undo_dir.exists()
    done = run_script(APPLY_PY, *argv)
    assert done.returncode == 0, done.stdout + done.stderr
    after = snapshot(untuned_root)
    assert after["proc/sys/net/core/busy_poll"] == "50\n"
    assert after["proc/sys/net/ipv4/tcp_wmem"] == "4096 65536 16777216\n"
    assert after["sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"] == "performance\n"
    assert after["sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"] == "powersave\n"
    assert after["proc/irq/25/smp_affinity_list"] == "0-1,5\n"
    assert after["proc/irq/27/smp_affinity_list"] == "5\n"
    assert after["proc/irq/default_smp_affinity"] == "23\n"
    assert "skipped irqbalance" in done.stdout  # never run systemctl against a fake root
    # check now agrees with what apply did
    items = by_item(run_check_json(untuned_root, "--cpus", "2,3,4"))
    for key in check.SYSCTL_RULES:
        assert items[key]["status"] == "OK", key
    assert items["cpu governor"]["status"] == "OK" and items["irq affinity"]["status"] == "OK"
    undo = [
        line.split("undo: sh ", 1)[1] for line in done.stdout.splitlines() if line.startswith("undo: sh ")
    ]
    assert len(undo) == 1 and os.path.dirname(undo[0]) == str(undo_dir)
    assert "systemctl" not in open(undo[0]).read()
    subprocess.run(["sh", undo[0]], check=True, timeout=30)
    restored = snapshot(untuned_root)
    assert {k: v.split() for k, v in restored.items()} == {k: v.split() for k, v in before.items()}
