"""CLI command modules; each defines ``register(app, prep_app)`` (see :mod:`w2vtk.cli`)."""
