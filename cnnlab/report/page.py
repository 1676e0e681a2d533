"""The report page: one self-contained HTML file (styles, scripts, Bokeh's library and every image
inlined; a system font stack), with a table of contents and a note per missing part."""

from __future__ import annotations

from jinja2 import Environment

STYLE = """
:root { --ink:#1d2329; --muted:#5d6b78; --line:#d9dee3; --accent:#1f5f9f; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
  sans-serif; color:var(--ink); background:#f6f7f9; }
header { background:#1d2a38; color:#fff; padding:18px 28px; }
header h1 { margin:0; font-size:22px; } header p { margin:4px 0 0; color:#c9d3dd; }
.layout { display:grid; grid-template-columns:220px 1fr; gap:24px; padding:20px 28px; }
nav { position:sticky; top:12px; align-self:start; font-size:14px; }
nav a { display:block; padding:3px 0; color:var(--accent); text-decoration:none; }
nav a.has-missing::after { content:" (incomplete)"; color:#b5651d; font-size:12px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 22px;
  margin-bottom:22px; }
h2 { margin-top:0; font-size:19px; } h3 { font-size:15px; margin:18px 0 6px; }
.missing { background:#fff4e5; border-left:4px solid #e69138; padding:8px 12px; }
.statement { background:#eef5fc; border-left:4px solid var(--accent); padding:8px 12px; }
dl.pairs { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; }
dl.pairs dt { color:var(--muted); } dl.pairs dd { margin:0; overflow-wrap:anywhere; }
table { border-collapse:collapse; margin:10px 0; font-size:13px; }
th, td { border:1px solid var(--line); padding:3px 8px; text-align:right; }
thead th { background:#eef1f4; }
table.confusion td.cell { cursor:pointer; min-width:34px; text-align:center;
  background:rgba(31,95,159,calc(var(--shade) * 0.85)); }
table.confusion td.cell.diag { outline:2px solid #2a9d2a55; outline-offset:-2px; }
table.confusion td.cell.active { outline:3px solid #e69138; }
figure { margin:8px 0; } figure.wide img { max-width:100%; border:1px solid var(--line); }
figcaption { font-size:12px; color:var(--muted); }
figure.thumb { display:inline-block; margin:3px; width:96px; vertical-align:top; }
figure.thumb img, .sample-row img { width:64px; height:64px; image-rendering:pixelated; }
.sample-row figure.thumb { width:auto; } .sample-row .cls { display:inline-block; width:60px; }
.cell-images { margin-top:10px; } .gallery { display:flex; flex-wrap:wrap; }
.point-tip { display:flex; gap:8px; align-items:center; font-size:12px; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:6px; }
.diff.up { color:#1a7f37; font-weight:600; } .diff.down { color:#b42318; font-weight:600; }
.diff.notable.up { background:#dafbe1; } .diff.notable.down { background:#ffebe9; }
pre { font-size:12px; background:#f3f5f7; padding:8px; overflow:auto; max-height:320px; }
"""

SCRIPT = """
(function () {
  const holder = document.getElementById('confusion-data');
  const panel = document.getElementById('confusion-images');
  if (!holder || !panel) return;
  const data = JSON.parse(holder.textContent);
  function show(cell) {
    document.querySelectorAll('td.cell.active').forEach(c => c.classList.remove('active'));
    cell.classList.add('active');
    const t = cell.dataset.true, p = cell.dataset.pred;
    const items = data.cells[t + ',' + p] || [];
    panel.replaceChildren();
    const title = document.createElement('h3');
    title.textContent = `true ${data.classes[t]}, predicted ${data.classes[p]}: ` +
      `${cell.textContent} image(s)` + (items.length < +cell.textContent ?
      `, the ${items.length} most confident shown` : '');
    panel.appendChild(title);
    for (const [uri, sample, confidence, text] of items) {
      const fig = document.createElement('figure'); fig.className = 'thumb';
      if (uri) { const img = document.createElement('img'); img.src = uri; img.alt = sample;
        fig.appendChild(img); }
      const cap = document.createElement('figcaption');
      cap.textContent = `${sample}: p(${data.classes[p]}) = ${confidence.toFixed(3)}; ${text}`;
      fig.appendChild(cap); panel.appendChild(fig);
    }
  }
  document.querySelectorAll('table.confusion td.cell').forEach(cell => {
    cell.addEventListener('click', () => show(cell));
    cell.addEventListener('keydown', e => { if (e.key === 'Enter') show(cell); });
  });
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnlab report: {{ title }}</title>
<style>{{ style }}</style>
{{ bokeh_resources }}
</head><body>
<header><h1>cnnlab report: {{ title }}</h1><p>{{ subtitle }}</p></header>
<div class="layout">
<nav><strong>Contents</strong>
{% for s in sections %}<a href="#{{ s.anchor }}"
  {%- if s.missing %} class="has-missing"{% endif %}>{{ s.title }}</a>
{% endfor %}</nav>
<main>
{% for s in sections %}<section id="{{ s.anchor }}"><h2>{{ s.title }}</h2>
{% for note in s.missing %}<p class="missing">{{ note }}</p>
{% endfor %}{{ s.body | safe }}</section>
{% endfor %}
</main></div>
{{ bokeh_script }}
<script>{{ script }}</script>
</body></html>
"""


def render_page(
    title: str, subtitle: str, sections: list, bokeh_resources: str, bokeh_script: str
) -> str:
    """The whole page; `bokeh_resources` and `bokeh_script` are trusted HTML from Bokeh."""
    environment = Environment(autoescape=True)
    from markupsafe import Markup

    return environment.from_string(TEMPLATE).render(
        title=title,
        subtitle=subtitle,
        sections=sections,
        style=Markup(STYLE),
        script=Markup(SCRIPT),
        bokeh_resources=Markup(bokeh_resources),
        bokeh_script=Markup(bokeh_script),
    )
