"""Scripts run by the e2e tests in the third-party clients virtualenv (.venv-clients):
they import tritonclient or the KServe SDK, never Ferry, and print one JSON document."""
