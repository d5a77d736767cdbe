"""CLI command groups. Each module exposes ``register(app)``; ``advisor.cli`` wires them."""
