// Maps drawn as SVG on a plain background (offline), in Web Mercator so that raster tiles,
// when a deployment configures a tile server, line up underneath.

import { h, label, metres } from "./dom.js";

const R = 6378137;
const WORLD = 2 * Math.PI * R;

export function mercator([lon, lat]) {
  const phi = (Math.max(-85, Math.min(85, lat)) * Math.PI) / 180;
  return [(R * lon * Math.PI) / 180, R * Math.log(Math.tan(Math.PI / 4 + phi / 2))];
}

// Geodesic distance on a sphere: good to a fraction of a percent at these scales, for when no
// check measured the distance.
export function haversine([lon1, lat1], [lon2, lat2]) {
  const rad = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * rad) / 2) ** 2
    + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lon2 - lon1) * rad) / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.sqrt(a));
}

function frame(positions, width, height, minSpanMetres = 120) {
  const points = positions.map(mercator);
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const meanLat = positions.reduce((s, p) => s + p[1], 0) / positions.length;
  const stretch = 1 / Math.cos((meanLat * Math.PI) / 180);
  const span = minSpanMetres * stretch;
  let [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const cx = (minX + maxX) / 2;
  const cy = (minY + maxY) / 2;
  const halfW = Math.max(maxX - minX, span) / 2;
  const halfH = Math.max(maxY - minY, span) / 2;
  const pad = 36;
  const scale = Math.min((width - 2 * pad) / (2 * halfW), (height - 2 * pad) / (2 * halfH));
  const project = (lonLat) => {
    const [x, y] = mercator(lonLat);
    return [width / 2 + (x - cx) * scale, height / 2 - (y - cy) * scale];
  };
  return { project, scale, cx, cy, width, height, stretch };
}

function tiles(view, template) {
  if (!template) return [];
  const z = Math.max(0, Math.min(19, Math.round(Math.log2((view.scale * WORLD) / 256))));
  const size = WORLD / 2 ** z;
  const left = view.cx - view.width / 2 / view.scale;
  const right = view.cx + view.width / 2 / view.scale;
  const top = view.cy + view.height / 2 / view.scale;
  const bottom = view.cy - view.height / 2 / view.scale;
  const images = [];
  const [x0, x1] = [Math.floor((left + WORLD / 2) / size), Math.floor((right + WORLD / 2) / size)];
  const [y0, y1] = [Math.floor((WORLD / 2 - top) / size), Math.floor((WORLD / 2 - bottom) / size)];
  for (let x = x0; x <= x1 && images.length < 64; x += 1) {
    for (let y = y0; y <= y1 && images.length < 64; y += 1) {
      if (y < 0 || y >= 2 ** z) continue;
      const wrapped = ((x % 2 ** z) + 2 ** z) % 2 ** z;
      const href = template.replace("{z}", z).replace("{x}", wrapped).replace("{y}", y)
        .replace("{s}", "abc"[(wrapped + y) % 3]);
      const sx = view.width / 2 + (x * size - WORLD / 2 - view.cx) * view.scale;
      const sy = view.height / 2 - (WORLD / 2 - y * size - view.cy) * view.scale;
      images.push(h("image", {
        href, x: sx, y: sy, width: size * view.scale + 0.5, height: size * view.scale + 0.5,
        preserveAspectRatio: "none", class: "tile",
      }));
    }
  }
  return images;
}

function scaleBar(view) {
  const metresPerPx = view.stretch > 0 ? 1 / (view.scale * view.stretch) : 1;
  const target = metresPerPx * 100;
  const nice = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000]
    .reduce((best, n) => (Math.abs(n - target) < Math.abs(best - target) ? n : best));
  const length = nice / metresPerPx;
  const y = view.height - 14;
  return h("g", { class: "scale-bar" },
    h("line", { x1: 12, y1: y, x2: 12 + length, y2: y }),
    h("text", { x: 12, y: y - 6 }, `${metres(nice)}`));
}

function marker(shape, [x, y], className, title) {
  const tip = h("title", {}, title);
  if (shape === "square") {
    return h("rect", { x: x - 7, y: y - 7, width: 14, height: 14, class: className }, tip);
  }
  if (shape === "diamond") {
    return h("polygon", { points: `${x},${y - 9} ${x + 9},${y} ${x},${y + 9} ${x - 9},${y}`, class: className }, tip);
  }
  return h("circle", { cx: x, cy: y, r: 8, class: className }, tip);
}

// Both markers of a distance line sit on it and reach at most 11 px from it (the square's
// corner with its outline); the label's outline reaches 2 px beyond its text.
const LABEL_CLEARANCE = 14;

// The label beside the middle of the line, on its upper side, anchored so the whole text lies
// on that side: it never covers the markers at either end, however close they are.
function distanceLabel(origin, end, text) {
  const [dx, dy] = [end[0] - origin[0], end[1] - origin[1]];
  const length = Math.hypot(dx, dy);
  let [nx, ny] = length ? [dy / length, -dx / length] : [0, -1];
  if (ny > 0 || (ny === 0 && nx < 0)) [nx, ny] = [-nx, -ny];
  return h("text", {
    x: (origin[0] + end[0]) / 2 + nx * LABEL_CLEARANCE,
    y: (origin[1] + end[1]) / 2 + ny * LABEL_CLEARANCE,
    "text-anchor": nx < 0 ? "end" : "start",
    class: "distance-label",
  }, text);
}

function ring(view, coordinates) {
  return coordinates.map((c, i) => `${i ? "L" : "M"}${view.project(c).map((v) => v.toFixed(1)).join(",")}`).join(" ") + " Z";
}

function svgMap(view, labelText, config, ...content) {
  return h("svg", {
    class: "map", viewBox: `0 0 ${view.width} ${view.height}`, role: "img", "aria-label": labelText,
  },
  h("rect", { x: 0, y: 0, width: view.width, height: view.height, class: "map-background" }),
  tiles(view, config?.tile_url),
  content,
  scaleBar(view),
  config?.tile_url && config.tile_attribution
    ? h("text", { x: view.width - 6, y: view.height - 6, class: "attribution" }, config.tile_attribution)
    : null);
}

const LEGEND_SHAPES = { store: "square", exif: "circle", device: "diamond" };

function legendSwatch(shape, className) {
  return h("svg", { class: "swatch", viewBox: "0 0 20 20", "aria-hidden": "true" },
    marker(shape, [10, 10], className, ""));
}

// The store, its geofence, each photo's EXIF position and the device fix, with the distance
// from the store to each drawn and labelled in metres.
export function reviewMap(item, config) {
  const features = item.geometry.features;
  const store = features.find((f) => f.properties.role === "store");
  const fence = features.find((f) => f.properties.role === "geofence");
  const device = features.find((f) => f.properties.role === "device");
  const photos = features.filter((f) => f.properties.role === "photo");
  const report = item.submission.report;
  const measured = (code, photoId = null) => report.find((c) => c.code === code && (c.photo_id ?? null) === photoId && typeof c.value === "number")?.value;
  const positions = [store.geometry.coordinates, ...fence.geometry.coordinates[0]];
  if (device) positions.push(device.geometry.coordinates);
  for (const photo of photos) positions.push(photo.geometry.coordinates);
  const view = frame(positions, 640, 480);
  const origin = view.project(store.geometry.coordinates);
  const lines = [];
  const marks = [];
  const legend = [
    ["store", "store", "Store"],
    ["geofence", null, `Geofence (${fence.properties.radius_m} m radius)`],
  ];
  const line = (feature, className, distance) => {
    const end = view.project(feature.geometry.coordinates);
    lines.push(h("g", { class: `distance ${className}` },
      h("line", { x1: origin[0], y1: origin[1], x2: end[0], y2: end[1], class: "distance-line" }),
      distanceLabel(origin, end, metres(distance))));
  };
  photos.forEach((photo, index) => {
    const distance = measured("gps.geofence", photo.properties.photo_id) ?? haversine(store.geometry.coordinates, photo.geometry.coordinates);
    line(photo, "distance-exif", distance);
    marks.push(marker("circle", view.project(photo.geometry.coordinates), "position-exif", `Photo ${index + 1} EXIF position, ${metres(distance)} from the store`));
  });
  if (photos.length) legend.push(["exif", "position-exif", "Photo position (EXIF)"]);
  if (device) {
    const distance = measured("device.geofence") ?? haversine(store.geometry.coordinates, device.geometry.coordinates);
    line(device, "distance-device", distance);
    marks.push(marker("diamond", view.project(device.geometry.coordinates), "position-device", `Device position, ${metres(distance)} from the store`));
    legend.push(["device", "position-device", "Device position"]);
  }
  const svg = svgMap(view, "Map of the store's geofence with the photo and device positions", config,
    h("path", { d: ring(view, fence.geometry.coordinates[0]), class: "geofence" }, h("title", {}, `Geofence, ${fence.properties.radius_m} m radius`)),
    lines,
    marker("square", origin, "store", `Store: ${item.task.store_name}`),
    marks);
  const missing = [];
  if (!photos.length) missing.push("no photo carries a GPS position");
  if (!device) missing.push("no device position (erased after the retention period, or none sent)");
  return h("figure", { class: "map-figure" }, svg,
    h("figcaption", {},
      h("ul", { class: "legend" }, legend.map(([shape, className, text]) => h("li", {},
        className ? legendSwatch(LEGEND_SHAPES[shape], className) : h("span", { class: "swatch swatch-fence", "aria-hidden": "true" }),
        text)),
      h("li", {}, h("span", { class: "swatch swatch-line", "aria-hidden": "true" }), "Distance from the store")),
      missing.length ? h("p", { class: "hint" }, `Not drawn: ${missing.join("; ")}.`) : null));
}

export const STATUS_LETTERS = {
  open: "O", reserved: "R", submitted: "S", approved: "A", rejected: "X", expired: "E", cancelled: "C", hidden: "H",
};

// One marker per store, its class and letter naming the task's status, with a legend.
export function campaignMap(results, config) {
  if (!results.length) return h("p", {}, "No stores in this campaign.");
  const view = frame(results.map((r) => r.store_location.coordinates), 720, 480, 400);
  const counts = {};
  const markers = results.map((r) => {
    counts[r.status] = (counts[r.status] ?? 0) + 1;
    const [x, y] = view.project(r.store_location.coordinates);
    return h("g", { class: `marker status-${r.status}`, "data-status": r.status, "data-store": r.store_name },
      h("circle", { cx: x, cy: y, r: 9 }),
      h("text", { x, y: y + 4, "text-anchor": "middle" }, STATUS_LETTERS[r.status] ?? "?"),
      h("title", {}, `${r.store_name}: ${label(r.status)}`));
  });
  return h("figure", { class: "map-figure" },
    svgMap(view, `Map of the campaign's ${results.length} stores coloured by task status`, config, markers),
    h("figcaption", {},
      h("ul", { class: "legend" }, Object.keys(STATUS_LETTERS).filter((s) => counts[s]).map((status) => h("li", {},
        h("svg", { class: "swatch", viewBox: "0 0 20 20", "aria-hidden": "true" },
          h("g", { class: `marker status-${status}` }, h("circle", { cx: 10, cy: 10, r: 9 }),
            h("text", { x: 10, y: 14, "text-anchor": "middle" }, STATUS_LETTERS[status]))),
        h("span", { class: "legend-text" }, `${label(status)}: ${counts[status]}`))))));
}
