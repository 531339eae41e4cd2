"""The image_sim provider: options, idempotent billing in the ledger, faults, registration."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mounted_tmpfs
from vow.errors import ConfigError, PermanentError, TransientError
from vow.faults import with_faults
from vow.images import ImageRequest
from vow.leaf import LeafContext
from vow.plugins import Plugins
from vow.simulation import Ledger
from vow_image_sim import plugin
from vow_image_sim.render import render_png

FOX = ImageRequest("a fox in a misty forest", "cartoon", seed=3, width=96, height=64)


def build(tmp_path: Path, **options):
    plugins = Plugins(entry_points=False)
    plugins.add(plugin, "image_sim")
    return plugins.image_providers.build("image_sim", {"ledger": str(tmp_path / "ledger.sqlite"), "latency": 0,
                                                       **options})


def test_generates_the_painted_png_with_its_provenance(tmp_path: Path) -> None:
    image = build(tmp_path).generate(FOX, LeafContext("run.cartoon"))
    assert image.png == render_png(FOX.prompt, FOX.style, FOX.seed, FOX.width, FOX.height)
    assert (image.provider, image.model, image.duplicate) == ("image_sim", "image-sim-1", False)
    assert image.revised_prompt == "a fox in a misty forest (cartoon; day, forest, mist)"
    assert Path(image.detail["cache_file"]).read_bytes() == image.png
    assert Path(image.detail["cache_file"]).parent == tmp_path / "image_sim"


def test_a_retry_with_the_same_key_returns_the_same_image_and_bills_once(tmp_path: Path) -> None:
    provider = build(tmp_path)
    first = provider.generate(FOX, LeafContext("run.cartoon", attempt=1))
    again = provider.generate(FOX, LeafContext("run.cartoon", attempt=2))
    assert again.png == first.png
    assert again.duplicate and not first.duplicate
    assert again.detail["generation_id"] == first.detail["generation_id"]
    assert provider.generations() == 1
    [delivery] = Ledger(tmp_path / "ledger.sqlite").deliveries("image_sim")
    assert (delivery.key, delivery.duplicates) == ("run.cartoon", 1)

    other = provider.generate(FOX, LeafContext("run.cartoon", idempotency_key="another-key"))
    assert not other.duplicate
    assert provider.generations() == 2


def test_a_repeated_key_answers_with_the_first_image_even_for_another_request(tmp_path: Path) -> None:
    """As a paid API does: the key identifies the request, the first answer is replayed."""
    provider = build(tmp_path)
    first = provider.generate(FOX, LeafContext("k"))
    replay = provider.generate(ImageRequest("something else", "abstract"), LeafContext("k", attempt=2))
    assert replay.png == first.png and replay.duplicate


def test_the_ledger_survives_a_process_that_died_after_generating(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os
        from vow.images import ImageRequest
        from vow.leaf import LeafContext
        from vow_image_sim.plugin import ImageSimOptions, ImageSimProvider
        p = ImageSimProvider(ImageSimOptions(latency=0, ledger={str(tmp_path / "ledger.sqlite")!r}))
        request = ImageRequest({FOX.prompt!r}, {FOX.style!r}, {FOX.seed}, {FOX.width}, {FOX.height})
        p.generate(request, LeafContext("run.cartoon"))
        os._exit(9)  # die without any cleanup, as a crash would
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    provider = build(tmp_path)
    retry = provider.generate(FOX, LeafContext("run.cartoon", attempt=2))
    assert retry.duplicate
    assert retry.png == render_png(FOX.prompt, FOX.style, FOX.seed, FOX.width, FOX.height)
    assert provider.generations() == 1


def test_a_deleted_cache_file_is_repainted_from_the_stored_request(tmp_path: Path) -> None:
    provider = build(tmp_path)
    first = provider.generate(FOX, LeafContext("k"))
    Path(first.detail["cache_file"]).unlink()
    again = provider.generate(FOX, LeafContext("k", attempt=2))
    assert again.png == first.png and again.duplicate
    assert Path(first.detail["cache_file"]).exists()


def test_latency_defaults_by_style_and_can_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert plugin.STYLE_LATENCY["photorealistic"] > plugin.STYLE_LATENCY["abstract"] >= 0.3
    provider = build(tmp_path, latency=0.3, jitter=0)
    started = time.monotonic()
    provider.generate(FOX, LeafContext("slow"))
    assert time.monotonic() - started >= 0.29
    waits: list[float] = []  # the latency each answer is held for, not the wall clock: load cannot move it
    monkeypatch.setattr(plugin, "_sleep_until", lambda started, seconds: waits.append(seconds))
    provider.generate(FOX, LeafContext("slow", attempt=2))  # answered from the provider's cache: quicker
    assert waits == [plugin.REPLAY_LATENCY]


def test_requests_a_real_api_would_reject_are_permanent_errors(tmp_path: Path) -> None:
    provider = build(tmp_path)
    cases = [(ImageRequest("x", "oil"), "invalid_style", "unknown style 'oil'"),
             (ImageRequest("x", "cartoon", width=8), "invalid_size", "width must be between 16 and 2048"),
             (ImageRequest("  ", "cartoon"), "invalid_prompt", "prompt is empty")]
    for request, code, message in cases:
        with pytest.raises(PermanentError, match=message) as info:
            provider.generate(request, LeafContext(f"bad-{code}"))
        assert info.value.code == code
    assert provider.generations() == 0


def test_bad_options_name_the_field_and_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"options.latency: 'latency' must be >= 0: -1"):
        build(tmp_path, latency=-1)
    with pytest.raises(ConfigError, match=r"options.colour: unknown key \(allowed: latency, jitter, ledger, model\)"):
        build(tmp_path, colour="red")


def test_injected_faults_fail_before_anything_is_generated(tmp_path: Path) -> None:
    provider = build(tmp_path)
    faulty = with_faults(provider, {"fail_attempts": [1], "message": "image service timeout"})
    with pytest.raises(TransientError, match=r"image service timeout \(attempt 1\)"):
        faulty.generate(FOX, LeafContext("run.abstract", attempt=1))
    assert provider.generations() == 0
    assert not faulty.generate(FOX, LeafContext("run.abstract", attempt=2)).duplicate
    assert provider.generations() == 1


def test_an_injected_status_is_classified_like_a_real_answer(tmp_path: Path) -> None:
    provider = build(tmp_path)
    with pytest.raises(TransientError) as info:
        with_faults(provider, {"fail_attempts": [1], "status": 429, "retry_after": 2}).generate(FOX, LeafContext("a"))
    assert info.value.retry_after == 2
    with pytest.raises(PermanentError, match="image_sim answered HTTP 400"):
        with_faults(provider, {"fail_attempts": [1], "status": 400}).generate(FOX, LeafContext("b"))


def test_installed_through_the_vow_entry_point() -> None:
    plugins = Plugins()
    registration = plugins.image_providers.get("image_sim")
    assert registration.distribution == "vow-image-sim"
    assert registration.options_class is plugin.ImageSimOptions


def test_racing_attempts_with_one_key_bill_one_generation(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    provider = build(tmp_path, latency=0.05)
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda n: provider.generate(FOX, LeafContext("same", attempt=n)), range(1, 5)))
    assert len({img.png for img in images}) == 1
    assert sorted(img.duplicate for img in images) == [False, True, True, True]
    assert provider.generations() == 1



@pytest.fixture
def disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of ``request.param`` bytes (``4k``) for the ledger: a disk that fills up."""
    yield from mounted_tmpfs(tmp_path / "disk", f"size={request.param}")


def _grow(disk: Path) -> None:
    """Give the full disk room again, as a user who freed some space would."""
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)


# SQLite says "database or disk is full" when the file cannot grow, "disk I/O error" when its -shm file cannot.
@pytest.mark.parametrize("disk", ["4k", "16k"], indirect=True)
def test_a_full_disk_under_the_ledger_is_a_transient_error_naming_it_and_a_retry_passes(disk: Path) -> None:
    # Before: sqlite3.OperationalError: disk I/O error, naming no file; and the retry, once the disk had room,
    # met "no such table: deliveries" (the connection was kept though the table was never made).
    provider = build(disk)
    with pytest.raises(TransientError, match=rf"could not use the simulation's ledger {disk}/ledger.sqlite: "
                                             r"(database or disk is full|disk I/O error)") as caught:
        provider.generate(FOX, LeafContext("run.cartoon"))
    assert caught.value.code.startswith("SQLITE_")
    _grow(disk)
    assert provider.generate(FOX, LeafContext("run.cartoon", attempt=2)).duplicate is False
    assert provider.generations() == 1


@pytest.mark.parametrize("disk", ["64k"], indirect=True)  # room for the ledger, not for a 256x256 photo
def test_a_full_disk_under_the_image_cache_is_a_transient_error_naming_the_file(disk: Path) -> None:
    # Before: OSError: [Errno 28] No space left on device, naming no file.
    provider = build(disk)
    big = ImageRequest("a fox in a misty forest", "photorealistic", seed=3, width=256, height=256)
    with pytest.raises(TransientError, match=rf"could not write image_sim's cached image {disk}/image_sim/"
                                             r"[0-9a-f-]+\.png: No space left on device") as caught:
        provider.generate(big, LeafContext("run.photo"))
    assert caught.value.code == "ENOSPC"
    assert provider.generations() == 0  # nothing billed for an image it could not keep
