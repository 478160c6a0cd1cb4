"""Airflow's start-up hook (imported by every Airflow process; the plugins folder is on its path): the processes
that fork task processes import the stage libraries once (:mod:`modelcert_airflow.preimport`)."""

from __future__ import annotations

from modelcert_airflow.preimport import preimport_if_worker

preimport_if_worker()
