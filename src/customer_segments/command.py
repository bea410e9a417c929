"""The `customer-segments` command's entry point, importable without the server's libraries:
a client-only installation gets a sentence instead of a traceback."""

from __future__ import annotations


def main() -> None:
    try:
        from customer_segments.cli import main as server_main
    except ModuleNotFoundError as missing:
        raise SystemExit(
            f"customer-segments: {missing.name} is not installed; the command is the server's:"
            " pip install 'customer-segments[server]'"
        ) from None
    server_main()
