"""Fuzz the config loader as `dispatcher check-config` uses it: each input is a config file.

The input is written to `config.yaml` in a fresh folder; what follows its first NUL byte (which
YAML text cannot hold) goes to `subscriptions.yaml` beside it, for `subscriptions_file:` to name.
The environment holds a secret in every variable the shipped examples reference. Every input
loads or raises `ConfigError`, and neither its problems nor check-config's summary show a
secret (the loader quotes no value, only subscription names); run by scripts/fuzz, corpus in
fuzz/corpus/config/.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fuzz.harness import fuzz, instrumented

with instrumented(__name__):
    from dispatcher.config import load_settings, summarize
    from dispatcher.errors import ConfigError
    from dispatcher.settings import redact_url

SECRET = "FUZZsecret7tokenFUZZsecret7token"  # base64 of 24 bytes: a valid signing key too
ENVIRON = {
    "BROKER_URL": f"amqp://dispatcher:{SECRET}@127.0.0.1:5672/",
    "SMTP_HOST": "127.0.0.1",
    "SMTP_USERNAME": "dispatcher",
    "SMTP_PASSWORD": SECRET,
    "SLACK_BOT_TOKEN": f"xoxb-{SECRET}",
    "CONFIG_CHANGES_WEBHOOK_URL": f"https://hooks.example.com/config?token={SECRET}",
    "CONFIG_CHANGES_SIGNING_KEY": f"whsec_{SECRET}",
    "OPS_WEBHOOK_SECRET": f"whsec_{SECRET}",
    "DEPLOYS_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/T000/B000/{SECRET}",
    "DEPLOYS_WEBHOOK_URL": f"https://user:{SECRET}@hooks.example.com/deploys",
    "ARTIFACTS_WEBHOOK_URL": "https://hooks.example.com/artifacts",
    "APP_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/T000/B001/{SECRET}",
    "STORE_URL": f"postgresql://dispatcher:{SECRET}@127.0.0.1/dispatcher",
    "ADMIN_TOKEN": SECRET,
    "EMPTY": "",
}
#: the problems that quote a subscription name, which is no secret (but may come from ${VAR})
_QUOTING_NAMES = ("name ", "subscription name ", "email targets (")


def check(data: bytes) -> None:
    config, _, subscriptions = data.partition(b"\0")
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as folder:
        path = Path(folder, "config.yaml")
        path.write_bytes(config)
        Path(folder, "subscriptions.yaml").write_bytes(subscriptions)
        try:
            settings = load_settings(path, ENVIRON)
        except ConfigError as error:
            for problem in error.problems:
                if not problem.message.startswith(_QUOTING_NAMES):
                    assert SECRET not in problem.message, f"a secret in {problem.message!r}"
            return
    output = summarize(settings)
    if settings.store.url is not None:
        output += redact_url(settings.store.url.get_secret_value())
    assert SECRET not in output, f"a secret in check-config's output: {output!r}"


if __name__ == "__main__":
    fuzz(check)
