"""Names the SageMaker adapter tests share with their fixtures."""

BUCKET = "multispot-test"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
