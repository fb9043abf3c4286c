"""The live view's page: the MJPEG stream, clicks and touches as prompts, the tracked objects, controls.

Everything the page does goes through the server's JSON routes (see
:mod:`edgesam_edge.camera.mjpeg`), so a script can do the same. The page holds one
inline script and one inline style; :data:`PAGE_CSP` allows exactly those (by their
sha256) and nothing from other origins. Text from the server is set with
``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["PAGE", "PAGE_CSP", "BASE_CSP"]

_STYLE = """
body{background:#111;color:#ddd;font:15px system-ui,sans-serif;margin:10px}
#rates{font-variant-numeric:tabular-nums;margin-bottom:6px;color:#9cf}
#stage{position:relative;display:inline-block;max-width:100%;line-height:0}
#view{cursor:crosshair;max-width:100%;user-select:none;-webkit-user-select:none;-webkit-user-drag:none;
 -webkit-touch-callout:none;touch-action:none;border:1px solid #333}
#band{position:absolute;border:2px dashed #ff0;background:rgba(255,255,0,.12);pointer-events:none}
#badge{position:absolute;top:8px;right:8px;background:#c33;color:#fff;padding:4px 10px;line-height:1.2;
 border-radius:4px;font-weight:bold;pointer-events:none}
#controls{margin:8px 0}
button{font:inherit;margin:0 8px 6px 0;padding:8px 14px;min-height:40px;background:#333;color:#eee;
 border:1px solid #555;border-radius:6px}
button:active{background:#555}
#status{min-height:1.3em;color:#fc6}
table{border-collapse:collapse;min-width:300px}
th,td{padding:4px 10px;text-align:left;border-bottom:1px solid #333}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:18px;height:18px;border-radius:3px;vertical-align:middle}
td button{padding:4px 10px;min-height:32px;margin:0}
.lost,.pending,.occluded{color:#999}
"""

_SCRIPT = r"""
'use strict';
const $ = id => document.getElementById(id);
const img = $('view'), band = $('band'), stage = $('stage'), statusLine = $('status');
const LONG_PRESS_MS = 500, DRAG_PX = 8, MIN_BOX = 6;
let paused = false, pauseSeq = 0, press = null, polling = false;
const rows = new Map();

function say(text) { statusLine.textContent = text; }

function framePos(cx, cy) {
  const r = img.getBoundingClientRect();
  const w = img.naturalWidth || r.width, h = img.naturalHeight || r.height;
  const x = (cx - r.left) * w / r.width, y = (cy - r.top) * h / r.height;
  return [Math.min(w, Math.max(0, x)), Math.min(h, Math.max(0, y))];
}

function post(path, body) {
  return fetch(path, {method: 'POST', credentials: 'same-origin', cache: 'no-store',
                      headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
    .then(r => r.json().catch(() => ({ok: false, error: 'HTTP ' + r.status})))
    .then(j => { say(j.ok ? 'sent: ' + j.event : 'error: ' + j.error); refresh(); return j; })
    .catch(err => { say('error: ' + err); return {ok: false}; });
}

function point(cx, cy, label) {
  const [x, y] = framePos(cx, cy);
  return post('/prompt', {x: x, y: y, label: label});
}

function showBand(cx0, cy0, cx1, cy1) {
  const s = stage.getBoundingClientRect();
  band.style.left = (Math.min(cx0, cx1) - s.left) + 'px';
  band.style.top = (Math.min(cy0, cy1) - s.top) + 'px';
  band.style.width = Math.abs(cx1 - cx0) + 'px';
  band.style.height = Math.abs(cy1 - cy0) + 'px';
  band.hidden = false;
}

function endPress() {
  if (press) clearTimeout(press.timer);
  press = null;
  band.hidden = true;
}

// one pointer at a time: mouse, pen and touch alike. Tap or click: a new object;
// long press (touch, pen) or right click: a negative point; drag: a box.
img.addEventListener('pointerdown', e => {
  e.preventDefault();
  if (press) return;
  if (e.pointerType === 'mouse' && e.button === 2) { point(e.clientX, e.clientY, 0); return; }
  if (e.button !== 0) return;
  try { img.setPointerCapture(e.pointerId); } catch (err) { /* the pointer is gone already */ }
  press = {id: e.pointerId, cx: e.clientX, cy: e.clientY, dragging: false, timer: 0};
  if (e.pointerType !== 'mouse') {
    press.timer = setTimeout(() => {
      if (!press || press.dragging) return;
      const p = press; endPress();
      point(p.cx, p.cy, 0);
    }, LONG_PRESS_MS);
  }
});
img.addEventListener('pointermove', e => {
  if (!press || e.pointerId !== press.id) return;
  e.preventDefault();
  if (!press.dragging && Math.hypot(e.clientX - press.cx, e.clientY - press.cy) > DRAG_PX) {
    press.dragging = true;
    clearTimeout(press.timer);
  }
  if (press.dragging) showBand(press.cx, press.cy, e.clientX, e.clientY);
});
img.addEventListener('pointerup', e => {
  if (!press || e.pointerId !== press.id) return;
  const p = press; endPress();
  if (!p.dragging) { point(p.cx, p.cy, 1); return; }
  const [x0, y0] = framePos(p.cx, p.cy), [x1, y1] = framePos(e.clientX, e.clientY);
  if (Math.abs(x1 - x0) > MIN_BOX && Math.abs(y1 - y0) > MIN_BOX) {
    post('/prompt', {box: [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)]});
  } else {
    say('drag a box wider and taller than ' + MIN_BOX + ' pixels');
  }
});
img.addEventListener('pointercancel', e => { if (press && e.pointerId === press.id) endPress(); });
img.addEventListener('contextmenu', e => e.preventDefault());

function setPaused(p) {
  paused = p;
  $('pause').textContent = p ? 'resume (p)' : 'pause (p)';
  $('badge').hidden = !p;
}
function togglePause() {
  pauseSeq += 1;  // a /tracks answer asked for before this does not undo it
  post('/pause', {paused: !paused}).then(j => { if (j && j.ok) setPaused(j.paused); });
}
function clearAll() { post('/prompt', {clear: true}); }

function download(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 30000);
}
async function snapshot() {
  try {
    const r = await fetch('/snapshot.json', {credentials: 'same-origin', cache: 'no-store'});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const text = await r.text();
    const frame = JSON.parse(text).frame;
    const png = await fetch('/snapshot.png?frame=' + frame, {credentials: 'same-origin', cache: 'no-store'});
    if (!png.ok) throw new Error('HTTP ' + png.status);
    download(await png.blob(), 'edgesam-' + frame + '.png');
    download(new Blob([text], {type: 'application/json'}), 'edgesam-' + frame + '.json');
    say('snapshot of frame ' + frame + ': PNG and masks (JSON, RLE) downloaded');
  } catch (err) { say('error: snapshot failed: ' + err.message); }
}

function fmt(v, digits, unit) { return (v === null || v === undefined) ? '\u2013' : v.toFixed(digits) + unit; }

function cell(tr, cls) {
  const td = document.createElement('td');
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderObjects(objects) {
  const body = $('object-rows'), seen = new Set();
  for (const o of objects) {
    const id = String(o.id);
    seen.add(id);
    let row = rows.get(id);
    if (!row) {
      const tr = document.createElement('tr');
      tr.dataset.id = id;
      const idCell = cell(tr, 'num'), swatchCell = cell(tr), stateCell = cell(tr), scoreCell = cell(tr, 'num');
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'remove';
      btn.textContent = 'remove';
      btn.addEventListener('click', () => post('/remove', {id: o.id}));
      cell(tr).appendChild(btn);
      const sw = document.createElement('span');
      sw.className = 'swatch';
      swatchCell.appendChild(sw);
      idCell.textContent = '#' + id;
      row = {tr: tr, sw: sw, state: stateCell, score: scoreCell};
      rows.set(id, row);
      body.appendChild(tr);
    }
    if (/^#[0-9a-f]{6}$/.test(o.color)) row.sw.style.background = o.color;
    row.state.textContent = o.state;
    row.tr.className = o.state;
    row.score.textContent = o.score.toFixed(2);
  }
  for (const [id, row] of rows) { if (!seen.has(id)) { row.tr.remove(); rows.delete(id); } }
  $('empty').hidden = objects.length > 0;
}

function refresh() {
  if (polling) return;
  polling = true;
  const seq = pauseSeq;
  fetch('/tracks', {credentials: 'same-origin', cache: 'no-store'})
    .then(r => r.ok ? r.json() : Promise.reject(new Error('HTTP ' + r.status)))
    .then(t => {
      const s = t.status || {};
      $('rates').textContent = 'display ' + fmt(s.display_fps, 1, ' fps') +
        ' \u00b7 model ' + fmt(s.model_fps, 1, '/s') + ' \u00b7 latency ' + fmt(s.latency_ms, 0, ' ms') +
        ' \u00b7 ' + t.objects.length + ' of ' + t.max_objects + ' objects';
      $('max-objects').textContent = String(t.max_objects);
      if (seq === pauseSeq && t.paused !== paused) setPaused(t.paused);
      renderObjects(t.objects);
    })
    .catch(err => { $('rates').textContent = 'no contact with the server: ' + err.message; })
    .finally(() => { polling = false; });
}

$('pause').addEventListener('click', togglePause);
$('clear').addEventListener('click', clearAll);
$('snapshot').addEventListener('click', snapshot);
document.addEventListener('keydown', e => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === 'c') clearAll();
  else if (e.key === 'p') togglePause();
  else if (e.key === 's') snapshot();
});
// the endless stream starts after the page has loaded, so the load event is not held back by it
window.addEventListener('load', () => { img.src = '/stream'; refresh(); setInterval(refresh, 500); });
"""

_BODY = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgesam live</title>
<style>{style}</style></head>
<body>
<div id="rates">display &ndash; &middot; model &ndash; &middot; latency &ndash;</div>
<div id="stage"><img id="view" alt="live view" draggable="false"><div id="band" hidden></div>
<div id="badge" hidden>paused</div></div>
<div id="controls"><button id="pause" type="button">pause (p)</button><button id="clear"
type="button">clear all (c)</button><button id="snapshot" type="button">snapshot (s)</button></div>
<p id="help">Click or tap: new object &middot; right click or long press: negative point &middot; drag: box &middot;
up to <span id="max-objects">32</span> objects</p>
<p id="status"></p>
<table id="objects"><thead><tr><th>id</th><th>colour</th><th>state</th><th>score</th><th></th></tr></thead>
<tbody id="object-rows"></tbody></table>
<p id="empty">No objects yet: click or tap one.</p>
<script>{script}</script></body></html>
"""

#: The page served at ``/``.
PAGE = _BODY.replace("{style}", _STYLE).replace("{script}", _SCRIPT)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


#: Content-Security-Policy of every response but the page: nothing may load, nothing may frame it.
BASE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Content-Security-Policy of the page: its own inline script and style (by hash), images, fetches and
#: downloads from its own origin only; no framing.
PAGE_CSP = (f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
            "img-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
