"""biasgate: stop a skewed training set before a model learns from it.

Validate a table with Great Expectations, measure SageMaker Clarify's pre-training
bias metrics, gate on a policy, split and rebalance the training split, as a Prefect 3
flow. See README.md.
"""

__version__ = "0.1.0"
