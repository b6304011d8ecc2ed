"""Dashboard app: the live web pages served by Django at `/`."""
