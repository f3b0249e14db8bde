"""Framework image URIs (the AWS Deep Learning Containers) from the SageMaker SDK's own data files.

``sagemaker-core`` ships one JSON table per framework (``sagemaker/core/image_uri_config/
pytorch.json``: version aliases, Python versions, the processors, the ECR account of every
region). Importing ``sagemaker.core.image_uris`` to read them costs seconds of CPU (it pulls in
pandas and scipy), so this module finds the files through the ``sagemaker`` namespace package's
locations — ``importlib.util.find_spec`` on a top-level name runs no ``__init__`` — and reads them
as JSON. The URI is built the way ``image_uris.retrieve(..., image_scope="training")`` builds it
for these frameworks (SDK 3.x): ``{account}.dkr.ecr.{region}.amazonaws.com/{repository}:{version}-
{processor}-{py}``; a test compares the two over versions, regions and instance types.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

_FAMILY = re.compile(r"^ml[\._]([a-z\d\-]+)\.?\w*$")  # as sagemaker.core.common_utils reads it


class ImageError(ValueError):
    """A framework/version/region/instance the bundled tables do not offer."""


def _config_dir() -> Path:
    spec = importlib.util.find_spec("sagemaker")  # a namespace package: nothing is executed
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "core" / "image_uri_config"
        if folder.is_dir():
            return folder
    raise ImageError(
        "the SageMaker SDK's image tables are not installed: pip install 'multispot[sagemaker]', "
        "or give the image as an ECR URI"
    )


@lru_cache(maxsize=8)
def _table(framework: str) -> dict[str, Any]:
    path = _config_dir() / f"{framework}.json"
    if not path.is_file():
        raise ImageError(f"no image table for {framework!r}")
    data = json.loads(path.read_text())
    training = data.get("training")
    if not isinstance(training, dict):
        raise ImageError(f"{framework!r} has no training images")
    return training


def _processor(instance_type: str, processors: list[str]) -> str:
    match = _FAMILY.match(instance_type)
    if not match:
        raise ImageError(f"{instance_type!r} is not a SageMaker instance type")
    family = match[1]
    if family in processors:
        processor = family
    elif family.startswith(("inf", "trn")):
        raise ImageError(f"{instance_type} needs a Neuron image: give its URI")
    else:
        processor = "gpu" if family[0] in ("g", "p") else "cpu"
    if processor not in processors:
        raise ImageError(f"no {processor} image; the table offers {', '.join(processors)}")
    return processor


def _hostname(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"ecr.{region}.{suffix}"


def training_image(framework: str, version: str, py_version: str, region: str, instance_type: str) -> str:
    """The training image URI of ``framework`` ``version`` for ``region`` and ``instance_type``."""
    table = _table(framework)
    full = table.get("version_aliases", {}).get(version, version)
    config = table.get("versions", {}).get(full)
    if not isinstance(config, dict):
        known = ", ".join(sorted(table.get("version_aliases", {})))
        raise ImageError(f"{framework} {version} has no training image (known: {known})")
    config = config.get(py_version, config) if "repository" not in config else config
    if py_version not in config.get("py_versions", [py_version]):
        raise ImageError(
            f"{framework} {version} is built for {', '.join(config['py_versions'])}, not {py_version}"
        )
    registries = config.get("registries", {})
    if region not in registries:
        raise ImageError(f"{framework} {version} has no training image in {region}")
    processor = _processor(instance_type, table.get("processors") or config.get("processors") or [])
    parts = [config.get("tag_prefix", version)]
    if config.get("processor_in_tag", True):
        parts.append(processor)
    parts.append(py_version)
    if config.get("container_version"):
        parts.append(config["container_version"][processor])
    return f"{registries[region]}.dkr.{_hostname(region)}/{config['repository']}:{'-'.join(parts)}"
