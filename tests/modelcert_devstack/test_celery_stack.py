"""The Celery dev stack's configuration, without starting it: executor, broker, result backend, queue, the
workers' names, task hostnames and log-server port; an unreachable or wrong broker is one line naming it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelcert.cli import build_parser
from modelcert.errors import ModelcertError
from modelcert_devstack.airflow_stack import AirflowStack, check_broker, redacted, result_backend, worker_address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nothing listens there


def test_unreachable_broker_is_one_line_naming_the_url_without_its_password() -> None:
    url = f"redis://:s3cret@127.0.0.1:{_closed_port()}/5"
    with pytest.raises(ModelcertError) as err:
        check_broker(url, timeout=1.0)
    msg = str(err.value)
    assert "\n" not in msg and "s3cret" not in msg
    assert f"Celery broker {redacted(url)} is unreachable" in msg and "MODELCERT_CELERY_BROKER_URL" in msg
    assert redacted(url).startswith("redis://:***@127.0.0.1:")


def test_a_broker_that_is_not_redis_is_refused_naming_the_setting() -> None:
    with pytest.raises(ModelcertError, match=r"MODELCERT_CELERY_BROKER_URL: 'amqp://guest:\*\*\*@mq/' is not a "
                                             r"Redis URL; allowed: redis://"):
        check_broker("amqp://guest:guest@mq/")


def test_demo_refuses_a_worker_count_outside_1_to_250(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "251", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", "--executor", "celery", "--workers", bad])
        assert f"argument --workers: {bad!r} is not allowed; allowed: a whole number from 1 to 250" in \
            capsys.readouterr().err
    args = build_parser().parse_args(["demo", "--executor", "celery", "--workers", "3"])
    assert (args.executor, args.workers) == ("celery", 3)
    assert build_parser().parse_args(["demo"]).executor == "local"


def test_celery_stack_environment(tmp_path: Path) -> None:
    st = AirflowStack(home=tmp_path, metadata_url="postgresql://u:p@db:5432/airflow", results_url="postgresql://x/y",
                      executor="celery", workers=3, worker_concurrency=2, broker_url="redis://127.0.0.1:6379/9",
                      queue="q-test")
    env = st.env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/9"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://u:p@db:5432/airflow"
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "q-test" and env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "2"
    names = st.celery_workers
    assert list(names) == ["worker1", "worker2", "worker3"]
    assert len(set(names.values())) == 3 and all(n.startswith(f"worker{i}.q-test@") for i, n in
                                                  enumerate(names.values(), start=1))
    hosts = [st.worker_env(n)["MODELCERT_WORKER_HOSTNAME"] for n in (1, 2, 3)]
    assert hosts == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert {st.worker_env(n)["AIRFLOW__CORE__HOSTNAME_CALLABLE"] for n in (1, 2, 3)} == {
        "modelcert_devstack.airflow_stack.worker_hostname"}
    # One log-server port for every worker (the api-server knows one), free on each worker's address.
    port = int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
    for address in hosts:
        with socket.socket() as s:
            s.bind((address, port))


def test_local_stack_is_unchanged_and_bad_settings_are_refused(tmp_path: Path) -> None:
    env = AirflowStack(home=tmp_path, metadata_url="postgresql://u@db/airflow", results_url="postgresql://x/y").env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and "AIRFLOW__CELERY__BROKER_URL" not in env
    with pytest.raises(ValueError, match="executor 'dask': allowed local, celery"):
        AirflowStack(home=tmp_path, metadata_url="", results_url="", executor="dask")
    with pytest.raises(ValueError, match="worker number 0: allowed 1..250"):
        worker_address(0)
    assert result_backend("postgresql+psycopg2://a@h/airflow") == "db+postgresql+psycopg2://a@h/airflow"
