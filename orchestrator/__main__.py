"""`python -m orchestrator` runs the CLI."""

from orchestrator.cli.app import main

if __name__ == "__main__":
    main()
