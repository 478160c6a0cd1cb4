"""modelcert: certify machine-learning models for high-risk use.

The core library. It never imports Airflow (a test enforces it): the Airflow integration lives in
``plugins/`` and the DAG wiring in ``dags/``; both call into this package.
"""

__version__ = "0.1.0"
