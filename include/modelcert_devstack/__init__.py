"""The development harness: starts a local Airflow stack (embedded PostgreSQL, api-server, scheduler,
dag-processor, triggerer) and runs the demo through it.

Kept out of the core library ``modelcert`` on purpose: the library is what certifies (and what Airflow tasks
import); this package is how a developer or the README's main job drives a whole stack on one machine. It may
import ``modelcert``; ``modelcert`` imports it only lazily, in the ``modelcert demo`` command.
"""
