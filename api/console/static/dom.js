// Small DOM helpers: elements are built with h(), never from HTML strings, so data from the
// API is always text.

export function h(tag, attributes = {}, ...children) {
  const svg = ["svg", "g", "circle", "line", "path", "polygon", "text", "title", "rect", "image", "desc"];
  const element = svg.includes(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.setAttribute("class", value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function replace(target, ...children) {
  target.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return date.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function metres(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return value < 1000 ? `${Math.round(value)} m` : `${(value / 1000).toFixed(1)} km`;
}

export function money(cents, currency) {
  return `${(cents / 100).toFixed(2)} ${currency}`;
}

export function label(text) {
  return String(text).replaceAll("_", " ");
}

export function notify(message, kind = "info") {
  const box = document.getElementById("status");
  box.className = `notice notice-${kind}`;
  box.textContent = message;
}

export function field(id, text, control, hint) {
  return h("div", { class: "field" },
    h("label", { for: id }, text),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

export function table(caption, headers, rows, className = "") {
  return h("table", { class: `data ${className}` },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows));
}

// Changing the hash routes (hashchange); the same hash again is routed too (a refresh).
export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

// Why a visit could not be completed, in words.
export const OUTCOMES = {
  store_closed: "the store was closed",
  product_absent: "the product was absent",
  refused_entry: "entry was refused",
  unsafe: "it was unsafe",
};

export function answerText(answer, item) {
  if (answer === null || answer === undefined || answer === "") return "—";
  if (answer === true) return "Yes";
  if (answer === false) return "No";
  const choices = Object.fromEntries((item?.choices ?? []).map((c) => [c.name, c.label]));
  if (Array.isArray(answer)) return answer.map((a) => choices[a] ?? a).join(", ") || "—";
  if (typeof answer === "string") return choices[answer] ?? answer;
  return item?.unit ? `${answer} ${item.unit}` : String(answer);
}
