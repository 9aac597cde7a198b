"""The web app: pages, their static files, and the JSON they are drawn from."""
