"""The view's one web page: a tile per source with its overlay stream and its figures, refreshed from /stats.json.

Plain HTML and a few lines of script, no framework: the page asks /stats.json twice a second, adds a tile for a
source it has not seen (its <img> reads /stream/N.mjpg, which the browser shows frame by frame) and writes each
source's FPS, latency, dropped count and the class shares of its newest frame.
"""

from __future__ import annotations

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>segrun live view</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 12px; background: #111; color: #eee; }
  #tiles { display: flex; flex-wrap: wrap; gap: 12px; }
  .tile { background: #222; padding: 8px; border-radius: 6px; }
  .tile img { display: block; max-width: 100%; min-width: 160px; image-rendering: pixelated; }
  .name { font-weight: bold; margin-bottom: 4px; overflow-wrap: anywhere; }
  .figures { margin-top: 6px; font-variant-numeric: tabular-nums; }
  .shares { margin-top: 4px; color: #bbb; }
</style>
</head>
<body>
<h3>segrun live view</h3>
<p id="waiting">waiting for the first frame...</p>
<div id="tiles"></div>
<script>
"use strict";
const tiles = new Map();

function tileFor(source) {
  let tile = tiles.get(source.index);
  if (tile) return tile;
  tile = document.createElement("div");
  tile.className = "tile";
  tile.id = "source-" + source.index;
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = source.name;
  const img = document.createElement("img");
  img.alt = "overlay of " + source.name;
  img.src = source.stream;
  const figures = document.createElement("div");
  figures.className = "figures";
  const shares = document.createElement("div");
  shares.className = "shares";
  tile.append(name, img, figures, shares);
  document.getElementById("tiles").append(tile);
  document.getElementById("waiting").hidden = true;
  tiles.set(source.index, tile);
  return tile;
}

function number(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "-";
}

function show(source) {
  const tile = tileFor(source);
  const s = source.stats || {};
  tile.querySelector(".figures").textContent =
    "frame " + (s.frame ?? "-") + " | " + number(s.fps, 1) + " FPS | latency " +
    number(s.latency_ms, 1) + " ms | dropped " + (s.dropped ?? 0);
  const shares = Object.entries(s.class_shares || {}).sort((a, b) => b[1] - a[1]);
  tile.querySelector(".shares").textContent =
    shares.map(([name, share]) => name + " " + (100 * share).toFixed(1) + " %").join(" | ");
}

async function refresh() {
  try {
    const reply = await fetch("/stats.json", {cache: "no-store"});
    const body = await reply.json();
    body.sources.forEach(show);
  } catch (error) {
    document.getElementById("waiting").textContent = "the run has ended or cannot be reached";
    document.getElementById("waiting").hidden = false;
  }
}

refresh();
setInterval(refresh, 500);
</script>
</body>
</html>
"""
