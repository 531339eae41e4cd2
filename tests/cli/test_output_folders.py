"""The default output folder of a pipeline with images: one per run id, in real `vow run` processes."""

from __future__ import annotations

import json
from pathlib import Path

PIPELINE = """\
version: 1
name: pictures
input: {prompt: a fox}
fan_out:
  - image: image_sim
    style: cartoon
    prompt: "{{ input.prompt }}"
    size: 64
"""


def results(sandbox) -> dict[str, str]:
    """Each folder under .vow/output with the run its result.json is of."""
    out = Path(sandbox.cwd) / ".vow" / "output"
    return {folder.name: json.loads((folder / "result.json").read_text())["run_id"]
            for folder in sorted(out.iterdir())}


def test_run_ids_that_slug_alike_get_folders_of_their_own(sandbox) -> None:
    """`img/a:b` and `img/a-b` both slug to `img-a-b`: their images and result.json went to one folder,
    the second run's overwriting the first's. An id that is its own slug keeps that very folder."""
    sandbox.write("pictures.yaml", PIPELINE)
    for run_id, prompt in (("img/a:b", "a fox"), ("img/a-b", "a hare"), ("img-a-b", "a lynx")):
        done = sandbox.run("run", "pictures.yaml", "--id", run_id, "--set", f"prompt={prompt}")
        assert done.returncode == 0, done.stderr
    found = results(sandbox)
    assert sorted(found.values()) == ["img-a-b", "img/a-b", "img/a:b"]  # three folders, each its own run's
    assert found["img-a-b"] == "img-a-b"
    assert all(name.startswith("img-a-b") for name in found)


def test_a_run_started_under_the_old_folder_name_keeps_it(sandbox) -> None:
    """A run stored (here: detached, not yet run) by a vow that named its folder by the slug alone is
    joined by `vow run` with the same id, not refused as "started with other input", and writes there."""
    sandbox.write("pictures.yaml", PIPELINE)
    old = str(Path(sandbox.cwd) / ".vow" / "output" / "img-a-b")
    stored = sandbox.python("-c", f"""
import attrs, sys
from vow import Vow
from vow.pipeline import NAME, load
from vow.plugins import default_plugins
plan = load("pictures.yaml", plugins=default_plugins(), run_id="img/a:b")
assert plan.spec.output != {old!r}, plan.spec.output
with Vow(sys.argv[1]) as vow:
    vow.submit(plan.run_id, NAME, attrs.evolve(plan.spec, output={old!r}))
""", sandbox.store)
    assert stored.returncode == 0, stored.stderr
    joined = sandbox.run("run", "pictures.yaml", "--id", "img/a:b")
    assert joined.returncode == 0, joined.stderr
    assert results(sandbox) == {"img-a-b": "img/a:b"}
