"""Airflow integration of modelcert: task callables, the sign-off sensor and trigger, the plugin.

Lives in ``plugins/`` (on sys.path for every Airflow component, including the triggerer), never in the DAG
folder. The certification logic itself is in the ``modelcert`` library; this package only translates its
outcomes into Airflow task states.
"""
