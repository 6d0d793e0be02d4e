"""``kis-ws``: the command line of kis-proto (``python -m kis_ws``).

Its own package because it is the one place that knows every other: the core, the anyio transport
and its simulator, and (lazily, per subcommand) the optional extras. No library package imports it.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``kis-ws`` with `argv` (default: the process's arguments); returns the exit status."""
    from .__main__ import main as run

    return run(argv)
