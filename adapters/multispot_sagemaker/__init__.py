"""multispot provider for Amazon SageMaker Managed Spot Training (``provider: sagemaker``)."""
