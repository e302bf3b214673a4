"""An operator deploys Sift from the Dockerfile and docker-compose.yml, as they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with backslash continuations joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_runs_the_web_app_workers_and_their_services() -> None:
    services = compose()["services"]
    assert set(services) == {"web", "worker", "gpu-worker", "redis", "postgres"}
    assert services["web"]["image"] == services["worker"]["image"]
    assert services["web"]["build"] == services["worker"]["build"]
    assert services["worker"]["command"].startswith("celery -A config worker")
    for name in ("web", "worker", "gpu-worker"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://")
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert "postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis:/data" in services["redis"]["volumes"]


def test_the_gpu_worker_reserves_a_gpu_and_consumes_the_gpu_queue() -> None:
    services = compose()["services"]
    gpu = services["gpu-worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert "--queues gpu" in gpu["command"]
    assert gpu["image"] != services["worker"]["image"]
    assert "PIP_EXTRA_INDEX_URL" in gpu["build"]["args"]
    assert gpu["environment"]["SIFT_TRAINING_QUEUE"] == "${SIFT_TRAINING_QUEUE:-gpu}"


def test_every_service_has_a_healthcheck_and_the_web_app_waits_for_its_services() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    assert "/health/db/" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_the_image_is_built_in_one_stage_and_runs_from_another() -> None:
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert stages == ["python:3.11-slim AS build", "python:3.11-slim AS runtime"]
    runtime = instructions[instructions.index(("FROM", stages[-1])) :]
    copies = [args for op, args in runtime if op == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]
    # The CUDA variant is the same Dockerfile with another torch wheel index.
    assert ("ARG", 'PIP_EXTRA_INDEX_URL=""') in instructions


def test_the_image_runs_as_a_user_and_checks_its_own_health() -> None:
    instructions = dockerfile_instructions()
    users = [args for op, args in instructions if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8000") in instructions
    healthchecks = [args for op, args in instructions if op == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "http://127.0.0.1:8000/health/'" in healthchecks[0]
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "manage.py collectstatic --no-input" in runs


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
