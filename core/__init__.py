"""The bottom floor: domain errors, limits and infrastructure helpers that every app uses and that import no app."""
