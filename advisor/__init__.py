"""vpt-advisor: decision logic (pure, no torch) and the command-line interface.

``advisor.decide`` holds the paper's rules as pure functions over pydantic models; ``advisor.cli``
is a thin typer app whose commands build a request, call one engine function and render the result.
"""

__all__: list[str] = []
