"""biasgate."""
