"""multispot reaches a job with no package index: the wheels built at submit install offline into a
fresh environment holding nothing else, and the runtime then saves and restores a checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from multispot.ship import build_wheels, install_command


def test_the_wheels_hold_the_running_code_and_the_entry_points(tmp_path: Path) -> None:
    multispot_wheel, fsspec_wheel = build_wheels(tmp_path / "wheels")
    with zipfile.ZipFile(multispot_wheel) as wheel:
        names = set(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/WHEEL"))
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "multispot/runtime/checkpointer.py" in names and "multispot_sagemaker/entry.py" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert (
        "[multispot.providers]" in entry_points and "sagemaker = multispot_sagemaker.provider" in entry_points
    )
    assert "+g" in multispot_wheel.name  # the content hash: another build of other code is another version
    assert fsspec_wheel.name.startswith("fsspec-")
    again = build_wheels(tmp_path / "again")[0]
    assert again.name == multispot_wheel.name and again.read_bytes() == multispot_wheel.read_bytes()


@pytest.mark.slow
def test_an_image_without_multispot_runs_the_runtime_after_an_offline_install(tmp_path: Path) -> None:
    wheels = tmp_path / "code" / "multispot-wheels"
    build_wheels(wheels)
    venv = tmp_path / "image"  # a bare Python with pip: nothing of this environment on its path
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_INDEX_URL": "http://127.0.0.1:9/unreachable",  # any index use would fail
        "PIP_NO_CACHE_DIR": "1",
    }
    subprocess.run(["sh", "-c", install_command(str(wheels))], env=env, check=True, cwd=tmp_path)
    probe = (
        "import json, sys\n"
        "from multispot.runtime import Checkpointer\n"
        "ckpt = Checkpointer()\n"
        "with ckpt.save(7) as w:\n"
        "    w.write_bytes('state.json', b'{\"step\": 7}')\n"
        "restored = Checkpointer().restore()\n"
        "foreign = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'__main__', '_distutils_hack'})\n"
        "print(json.dumps({'step': restored.step, 'data': restored.read_bytes('state.json').decode(), 'modules': foreign}))\n"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        env={**env, "MULTISPOT_CHECKPOINT_URI": (tmp_path / "ckpt").as_uri(), "PYTHONNOUSERSITE": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["step"], result["data"]) == (7, '{"step": 7}')
    # the standard library, fsspec and the shipped wheel alone (its adapter packages recognise the
    # service through their SDK-free jobenv modules)
    assert set(result["modules"]) <= {
        "fsspec",
        "multispot",
        "multispot_sagemaker",
        "multispot_vertex",
        "multispot_azureml",
    }
    assert {"fsspec", "multispot"} <= set(result["modules"])
