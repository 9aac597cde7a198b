"""The servers Ferry is compared with. Each runs from the peers' own venv (bench/.venv)."""
