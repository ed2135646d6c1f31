"""Fixtures of the end-to-end tests: real Envoy stacks, jitgate-sidecar processes, Redis and
headless Chromium, built on scripts/jitgate_env.py. Every fixture that starts a process is module
scoped (or narrower only where a test needs its own), so a group starts its stack once, and stops
what it started by pid when the group ends, also when a test fails.

The binaries come from the wrappers' builds (scripts/e2e.sh, loop_e2e.sh, console_e2e.sh, edge.sh).
"""
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import jitgate_env  # noqa: E402


def fresh_dir(name: str) -> Path:
    """An emptied run directory (.run/NAME) for one group's keys, configs, logs and pids."""
    work = jitgate_env.run_dir(name)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


@pytest.fixture(scope="module")
def envoy():
    """Starts an Envoy stack (`jitgate_env.Stack` arguments) that lives until the module ends."""
    with contextlib.ExitStack() as stacks:
        yield lambda *args, **kw: stacks.enter_context(jitgate_env.Stack(*args, **kw))


@pytest.fixture(scope="module")
def sidecar():
    """Starts a jitgate-sidecar (`jitgate_env.Sidecar` arguments); each is stopped when the module ends."""
    started = []

    def start(*args, **kw):
        sc = jitgate_env.Sidecar(*args, **kw).start()
        started.append(sc)
        return sc

    yield start
    for sc in reversed(started):
        sc.stop()


@pytest.fixture(scope="module")
def redis():
    """A real redis-server for the module."""
    with jitgate_env.Redis(fresh_dir("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    """Opens headless Chromium (Selenium) with its own profile: `browser(name, *extra_flags)`;
    every window is closed and every profile removed when the module ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profiles = tempfile.mkdtemp(prefix="jitgate-chromium-")
    opened = []

    def open_browser(profile: str, *extra: str):
        o = Options()
        o.binary_location = "/usr/bin/chromium"
        # This machine has no outside network: Chromium's background fetches are switched off.
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000", f"--user-data-dir={profiles}/{profile}", *extra):
            o.add_argument(a)
        b = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
        opened.append(b)
        return b

    try:
        yield open_browser
    finally:
        for b in opened:
            b.quit()
        shutil.rmtree(profiles, ignore_errors=True)


# Scenario cases the harness checked in the other hosts (test_scenarios.py and
# test_edge_scenarios.py add to it): one pytest test runs a whole scenario file.
HARNESS_CASES = {"passed": 0, "failed": 0}


def pytest_terminal_summary(terminalreporter):
    if HARNESS_CASES["passed"] or HARNESS_CASES["failed"]:
        terminalreporter.write_line(f"scenario cases checked by jitgate-harness across hosts: "
                                    f"{HARNESS_CASES['passed']} agreed, {HARNESS_CASES['failed']} did not")
