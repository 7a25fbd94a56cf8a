"""Prefect flows of biasgate."""
