"""The modelcert Airflow plugin: the approvals API and pages, served by the Airflow api-server.

- ``fastapi_apps``: our FastAPI app mounted at ``/modelcert`` (JSON under ``/modelcert/api``, pages under
  ``/modelcert/ui``). Airflow does not authenticate plugin apps; the app validates the caller's Airflow
  token itself (``modelcert_airflow.auth``).
- ``external_views``: the pages inside the Airflow UI — "Certification" and "Model certificates" at the top
  level of the navigation (iframes at ``/plugin/certification`` and ``/plugin/model-certificates``), and a
  "Certification" tab on every DAG run (``destination: dag_run``; Airflow fills in ``{DAG_ID}``/``{RUN_ID}``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from modelcert_airflow.api import URL_PREFIX, app

#: Path prefix of the api-server (``[api] base_url``), e.g. "" or "/airflow": hrefs are server-relative.
_ROOT = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
_ICON = f"{_ROOT}{URL_PREFIX}/ui/static/seal.svg"


class ModelcertPlugin(AirflowPlugin):
    name = "modelcert"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "modelcert"}]
    external_views = [
        {
            "name": "Certification",
            "href": f"{_ROOT}{URL_PREFIX}/ui/runs",
            "url_route": "certification",
            "destination": "nav",
            "nav_top_level": True,
            "icon": _ICON,
        },
        {
            "name": "Model certificates",
            "href": f"{_ROOT}{URL_PREFIX}/ui/models",
            "url_route": "model-certificates",
            "destination": "nav",
            "nav_top_level": True,
            "icon": _ICON,
        },
        {
            "name": "Certification",
            "href": f"{_ROOT}{URL_PREFIX}/ui/airflow/{{DAG_ID}}/{{RUN_ID}}",
            "url_route": "certification-run",
            "destination": "dag_run",
            "icon": _ICON,
        },
    ]
