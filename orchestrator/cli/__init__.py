"""The user's surface: the typer commands, their rendering and the demo.

Nothing below this package imports it; it reads the environment and hands settings down.
"""
