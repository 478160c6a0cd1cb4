"""The certification dossier: the evidence of a run as documents people file — an HTML/PDF report with figures,
a model card (skops.card), and one dossier per regulation (EU AI Act Annex IV, NYC LL144, SR 26-2, Colorado).

``content`` decides what is said (pure data), ``plots`` draws it (matplotlib), ``render`` writes HTML, PDF and
Markdown, ``frameworks`` holds each regulation's checklist (YAML, versioned and dated) and its completeness
table, ``modelcard`` fills the Mitchell et al. sections, ``store`` records every document's sha256 with the run.
"""
