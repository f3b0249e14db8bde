"""Names the SageMaker adapter tests share with their fixtures."""

BUCKET = "multispot-test"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
# An image built from examples/images/sagemaker/Dockerfile (the fake gives it the DLC's packages
# plus s3fs); jobs that write s3:// from inside need it. Without ``image`` a job gets the DLC.
RECIPE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/multispot-pytorch:2.5"
