"""multispot provider for Vertex AI: Job → CustomJob on Spot VMs (``translate.py`` pure,
``provider.py`` I/O through google-cloud-aiplatform, imported lazily; ``notice.py`` runs inside
the job with the standard library only; ``billing.py`` reads the Cloud Billing export)."""
