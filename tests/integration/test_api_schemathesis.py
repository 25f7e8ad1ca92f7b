"""schemathesis against the live subscriptions API (the daemon on a real SQLite file), from the
OpenAPI document the API serves: generated requests, valid and not, never get a 5xx, and every
answer is one the document describes (status code, content type, headers, body schema). The test
endpoint is left out: it makes a real request to whatever target a generated subscription
names, and this test's traffic stays on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support import BrokerNames, running, write_config

pytestmark = pytest.mark.integration

TOKEN = "schemathesis-token-0123456789"


async def test_generated_requests_get_no_server_error_and_only_documented_answers(
    tmp_path: Path, names: BrokerNames
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [],
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        store={"url": f"sqlite:///{tmp_path / 'subs.db'}", "poll_every": "200ms"},
    )
    async with running(config) as app:
        base = f"{app.servers[0].url}/api/v1"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/openapi.json", headers=headers) as r,
        ):
            assert r.status == 200
            schema = tmp_path / "openapi.json"
            schema.write_text(json.dumps(await r.json()))
        process = await asyncio.create_subprocess_exec(
            st,
            "run",
            str(schema),
            "--url",
            base,
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            # no 5xx, and no answer the document does not describe: its status, content type,
            # headers and body all as documented
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--max-examples",
            "30",
            "--seed",
            "20261202",
            "--exclude-path",
            "/subscriptions/{id}/test",
            "--request-timeout",
            "10",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            cwd=tmp_path,  # schemathesis keeps its files in the working directory
        )
        try:
            async with asyncio.timeout(300):
                out, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    report = out.decode(errors="replace")
    assert process.returncode == 0, report
    assert "passed" in report.lower()
