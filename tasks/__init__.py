"""Prefect tasks of the pretraining-check flow: one module per step of the DAG.

Each task is a thin layer over a plain function in :mod:`biasgate` (easy to test
without Prefect): it logs through the run logger and sets retries where I/O happens.
"""
