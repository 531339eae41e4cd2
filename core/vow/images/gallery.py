"""The gallery of an image-variations run: ``index.html`` plus a ``gallery.json`` manifest.

The page is self-contained (inline CSS, no scripts, no external assets) and refers to the
images by relative path, so the output directory can be zipped, served or opened as a file.
It shows the prompt, every style's image with its attempts and timings, a timeline that makes
the parallelism visible (wall time is the slowest branch, not the sum), and the run id.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from vow.encoding import json_safe, valid_text
from vow.files import locked_folder, write_output

INDEX = "index.html"
MANIFEST = "gallery.json"

_TEMPLATE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string("""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ run.prompt }} · vow image variations</title>
<style>
  :root { --bg: #0e1014; --panel: #171a21; --line: #262b35; --text: #e8eaf0; --muted: #9aa3b2;
          --ok: #4ade80; --warn: #fbbf24; --bad: #f87171; --accent: #7dd3fc; }
  * { box-sizing: border-box; }
  body { margin: 0; background: radial-gradient(1200px 600px at 20% -10%, #1c2433 0%, var(--bg) 60%);
         color: var(--text); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; min-height: 100vh; }
  main { max-width: 1180px; margin: 0 auto; padding: 40px 28px 56px; }
  .eyebrow { color: var(--accent); font-size: 12px; letter-spacing: .14em; text-transform: uppercase; font-weight: 600; }
  h1 { font-size: 34px; line-height: 1.2; margin: 8px 0 14px; font-weight: 650; letter-spacing: -.01em; }
  h1 q { quotes: "\\201C" "\\201D"; }
  .meta { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 26px; }
  .chip { background: var(--panel); border: 1px solid var(--line); border-radius: 999px; padding: 3px 12px;
          color: var(--muted); font-size: 13px; }
  .chip b { color: var(--text); font-weight: 600; }
  code, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
  .stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin-bottom: 28px; }
  .stat { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; padding: 14px 16px; }
  .stat .n { font-size: 24px; font-weight: 650; }
  .stat .l { color: var(--muted); font-size: 12.5px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 18px; }
  .card { background: var(--panel); border: 1px solid var(--line); border-radius: 16px; overflow: hidden;
          box-shadow: 0 10px 30px rgba(0,0,0,.25); display: flex; flex-direction: column; }
  .card img { display: block; width: 100%; height: auto; background: #0b0d10; }
  .card .body { padding: 14px 16px 16px; display: flex; flex-direction: column; gap: 8px; }
  .title { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
  .title h2 { margin: 0; font-size: 17px; text-transform: capitalize; }
  .badge { font-size: 12px; border-radius: 999px; padding: 2px 10px; font-weight: 600; white-space: nowrap; }
  .badge.ok { color: var(--ok); background: rgba(74,222,128,.12); }
  .badge.retried { color: var(--warn); background: rgba(251,191,36,.13); }
  .badge.failed { color: var(--bad); background: rgba(248,113,113,.13); }
  dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 14px; margin: 0; font-size: 13px; }
  dt { color: var(--muted); } dd { margin: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .revised { color: var(--muted); font-size: 12.5px; font-style: italic; }
  .error { aspect-ratio: {{ run.width }} / {{ run.height }}; display: flex; align-items: center; justify-content: center;
           padding: 24px; color: var(--bad); background: repeating-linear-gradient(45deg, #1a1215, #1a1215 12px, #1e1418 12px, #1e1418 24px);
           text-align: center; font-size: 14px; }
  h3 { font-size: 14px; color: var(--muted); text-transform: uppercase; letter-spacing: .12em; margin: 34px 0 12px; }
  .timeline { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; padding: 16px 18px; }
  .row { display: grid; grid-template-columns: 130px 1fr 70px; align-items: center; gap: 12px; margin: 7px 0; font-size: 13px; }
  .row .name { text-transform: capitalize; }
  .row .t { color: var(--muted); text-align: right; }
  .track { position: relative; height: 14px; background: #0f1217; border-radius: 7px; overflow: hidden; }
  .seg { position: absolute; top: 0; bottom: 0; border-radius: 7px; }
  .seg.run { background: linear-gradient(90deg, #38bdf8, #818cf8); }
  .seg.wait { background: repeating-linear-gradient(45deg, rgba(251,191,36,.45), rgba(251,191,36,.45) 4px, transparent 4px, transparent 8px); }
  .legend { display: flex; gap: 16px; color: var(--muted); font-size: 12px; margin-top: 10px; }
  .legend i { display: inline-block; width: 18px; height: 9px; border-radius: 4px; margin-right: 6px; vertical-align: middle; }
  footer { margin-top: 34px; color: var(--muted); font-size: 12.5px; }
</style>
</head>
<body>
<main>
  <div class="eyebrow">vow · image variations</div>
  <h1><q>{{ run.prompt }}</q></h1>
  <div class="meta">
    <span class="chip">run <b class="mono">{{ run.run_id }}</b></span>
    <span class="chip">provider <b>{{ run.provider }}</b></span>
    <span class="chip">seed <b>{{ run.seed }}</b></span>
    <span class="chip">size <b>{{ run.width }}×{{ run.height }}</b></span>
    <span class="chip">started <b>{{ started }}</b></span>
  </div>

  <section class="stats">
    <div class="stat"><div class="n">{{ "%.2f"|format(wall_s) }} s</div><div class="l">wall time (fan-out / fan-in)</div></div>
    <div class="stat"><div class="n">{{ "%.2f"|format(sum_s) }} s</div><div class="l">sum of the styles' generation times</div></div>
    <div class="stat"><div class="n">{{ ok_count }} / {{ images|length }}</div><div class="l">styles generated</div></div>
    <div class="stat"><div class="n">{{ attempts }}</div><div class="l">attempts in all ({{ retried }} retried)</div></div>
  </section>

  <section class="grid">
  {% for img in images %}
    <article class="card">
    {% if img.ok and img.file %}
      <div class="error">{{ img.path }} is {{ "gone" if img.file == "missing" else "no longer this run's image: another run writing this folder replaced it" }}</div>
    {% elif img.ok %}
      <img src="{{ img.path }}" alt="{{ run.prompt }}, {{ img.style }}" width="{{ img.width }}" height="{{ img.height }}">
    {% else %}
      <div class="error">{{ img.error }}</div>
    {% endif %}
      <div class="body">
        <div class="title">
          <h2>{{ img.style }}</h2>
          {% if not img.ok %}<span class="badge failed">failed{% if img.attempt %} after {{ img.attempt }} attempt{{ "s" if img.attempt > 1 }}{% endif %}</span>
          {% elif img.attempt > 1 %}<span class="badge retried">attempt {{ img.attempt }} · retried</span>
          {% else %}<span class="badge ok">first attempt</span>{% endif %}
        </div>
        {% if img.ok %}
        <dl>
          <dt>generation</dt><dd>{{ "%.2f"|format(img.elapsed_ms / 1000) }} s{% if img.duplicate %} · replayed by provider{% endif %}</dd>
          <dt>done at</dt><dd>+{{ "%.2f"|format(img.done_s) }} s</dd>
          <dt>model</dt><dd>{{ img.provider }} / {{ img.model }}</dd>
          <dt>size</dt><dd>{{ img.width }}×{{ img.height }} · {{ (img.bytes / 1024)|round(1) }} KiB</dd>
          <dt>sha256</dt><dd class="mono" title="{{ img.sha256 }}">{{ img.sha256[:16] }}…</dd>
          <dt>key</dt><dd class="mono" title="{{ img.idempotency_key }}">{{ img.idempotency_key }}</dd>
        </dl>
        {% if img.revised_prompt %}<div class="revised">{{ img.revised_prompt }}</div>{% endif %}
        {% endif %}
      </div>
    </article>
  {% endfor %}
  </section>

  <h3>Timeline</h3>
  <section class="timeline">
  {% for img in images %}
    <div class="row">
      <span class="name">{{ img.style }}</span>
      <div class="track">
      {% if img.ok %}
        {% if img.attempt > 1 %}<div class="seg wait" style="left:0;width:{{ '%.1f'|format(img.wait_pct) }}%"></div>{% endif %}
        <div class="seg run" style="left:{{ '%.1f'|format(img.wait_pct) }}%;width:{{ '%.1f'|format(img.run_pct) }}%"></div>
      {% endif %}
      </div>
      <span class="t">{% if img.ok %}{{ "%.2f"|format(img.done_s) }} s{% else %}failed{% endif %}</span>
    </div>
  {% endfor %}
    <div class="legend"><span><i style="background:linear-gradient(90deg,#38bdf8,#818cf8)"></i>successful attempt</span>
      <span><i style="background:repeating-linear-gradient(45deg,rgba(251,191,36,.6),rgba(251,191,36,.6) 3px,transparent 3px,transparent 6px)"></i>earlier attempts and retry back-off</span></div>
  </section>

  <footer>Written by vow · every style is its own durable promise (<code>{{ run.run_id }}.&lt;style&gt;</code>) · manifest: <a href="{{ manifest }}" style="color:var(--accent)">{{ manifest }}</a></footer>
</main>
</body>
</html>
""")


def render_gallery(run: Mapping[str, Any]) -> str:
    """The HTML page for ``run`` (the summary ``image_variations`` builds, with ``finished_at``)."""
    start = float(run["started_at"])
    wall = max(1e-6, float(run.get("finished_at", start)) - start)
    images = []
    for img in run["images"]:
        img = dict(img)
        if img.get("ok"):
            wait = max(0.0, float(img["started_at"]) - start)
            span = max(0.0, float(img["finished_at"]) - float(img["started_at"]))
            img.update(done_s=wait + span, wait_pct=min(100.0, 100 * wait / wall),
                       run_pct=min(100.0, 100 * span / wall))
        images.append(img)
    ok = [i for i in images if i.get("ok")]
    return _TEMPLATE.render(
        run=run, images=images, manifest=MANIFEST, wall_s=wall, ok_count=len(ok),
        sum_s=sum(i["elapsed_ms"] for i in ok) / 1000,
        # Every style's attempts count, the failed ones' too ("2 attempts in all" when one failed 5 times was wrong).
        attempts=sum(i.get("attempt", 1) for i in images), retried=sum(1 for i in images if i.get("attempt", 1) > 1),
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
    )


def write_gallery(out_dir: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``out_dir/index.html`` and ``out_dir/gallery.json`` atomically; return their paths.

    A write that fails raises :class:`~vow.errors.TransientError` (a full disk) or
    :class:`~vow.errors.PermanentError` (an unwritable folder) naming the file (:func:`vow.files.write_output`).
    The folder is locked while the two are written, so they always come from the same run. An
    image whose file no longer holds it (``sha256`` differs: another run writing the same folder
    replaced it) or is gone is marked ``"file": "replaced"`` or ``"missing"``, and the page says so
    instead of showing another run's picture.

    Whatever ``run`` holds, both files are valid: a text's lone surrogates (a provider's JSON may
    carry ``"\\ud800"``) become U+FFFD, and in the manifest a number JSON cannot write (NaN,
    infinity, an integer too long to print) becomes ``null`` and any other value its text.
    """
    out = Path(out_dir)
    html_path, manifest_path = out / INDEX, out / MANIFEST
    # Locked: two runs writing one folder at once could otherwise leave one's page beside the other's manifest.
    with locked_folder(out, "the gallery's folder"):
        shown = {**run, "images": [_with_its_file(out, img) for img in run["images"]]}
        manifest = json.dumps(json_safe(shown), indent=2, sort_keys=True, allow_nan=False) + "\n"
        write_output(manifest_path, manifest, "the gallery's manifest")
        write_output(html_path, valid_text(render_gallery(shown)), "the gallery")
    wall = float(run.get("finished_at", run["started_at"])) - float(run["started_at"])
    return {"gallery": str(html_path), "manifest": str(manifest_path), "wall_ms": round(wall * 1000, 1)}


def _with_its_file(out: Path, img: Mapping[str, Any]) -> Mapping[str, Any]:
    """``img``, marked when its file is not the image it describes any more (see :func:`write_gallery`)."""
    name, digest = img.get("path"), img.get("sha256")
    if not img.get("ok") or not isinstance(name, str) or not isinstance(digest, str) or "/" in name:
        return img
    try:
        with open(out / name, "rb") as f:
            found = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return {**img, "file": "missing"}
    except OSError:
        return img  # unreadable here: the page shows it as it is, as before
    return img if found == digest else {**img, "file": "replaced"}
