// Small DOM helpers for the operator console. Every value becomes text: nothing here (or
// anywhere in the console) parses HTML, so what users and Claude wrote cannot become markup.

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "halted"]);
const STATUSES = new Set(["queued", "running", "cancelling", ...TERMINAL]);
const TIERS = new Set(["ok", "warn", "slow", "halt"]);

export const $ = (id) => document.getElementById(id);

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else if (key === "title") node.title = String(value);
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key === "onkeydown") node.addEventListener("keydown", value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fill(parent, nodes) {
  parent.replaceChildren(...nodes);
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function usd(micros) {
  if (micros === null || micros === undefined) return "—";
  return "$" + (Number(micros) / 1e6).toFixed(4);
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export function statusClass(status) {
  return "badge status-" + (STATUSES.has(status) ? status : "other");
}

export function tierClass(tier) {
  return "badge tier-" + (TIERS.has(tier) ? tier : "other");
}
