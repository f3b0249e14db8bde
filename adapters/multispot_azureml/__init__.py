"""multispot provider for azureml (placeholder until the adapter lands)."""
