// A company's panels: the guard's spend against its caps (admins), its integrations, and its
// audit trail with filters and cursor paging (admins). Each reads for one company and draws
// only while `current()` says that company (and that search) is still the one shown.

import { api, companyPath } from "/console/api.js";
import { $, el, fill, tierClass, usd, when } from "/console/dom.js";

export async function loadGuard(company, current) {
  let view;
  try {
    view = await api(companyPath(company, "/guard"));
  } catch (error) {
    if (current()) $("guard-status").textContent = "Guard: " + error.message;
    return;
  }
  if (!current()) return;
  $("guard-status").textContent =
    "weight " + view.weight + " · quest steps waiting their turn: " + view.queued_steps;
  const row = (s, scopeLabel) =>
    el(
      "tr",
      { "data-scope": s.scope },
      el("td", { text: scopeLabel }),
      el("td", { text: s.window || (s.quest_id ? String(s.quest_id).slice(0, 8) : "—") }),
      el("td", { class: "num", text: usd(s.spent_usd_micros) }),
      el("td", { class: "num", text: usd(s.reserved_usd_micros) }),
      el("td", { class: "num", text: s.cap_usd_micros ? usd(s.cap_usd_micros) : "none" }),
      el("td", {}, s.cap_usd_micros ? el("meter", { min: 0, max: s.cap_usd_micros, value: Math.min(s.spent_usd_micros, s.cap_usd_micros) }) : null),
      el("td", {}, el("span", { class: tierClass(s.tier), text: s.tier })),
    );
  fill($("guard-rows"), [
    ...view.windows.map((s) => row(s, s.scope)),
    ...view.running_quests.map((s) => row(s, "quest")),
  ]);
}

export async function loadIntegrations(company, current) {
  let items;
  try {
    items = await api(companyPath(company, "/integrations"));
  } catch (error) {
    if (current()) $("integrations-status").textContent = "Integrations: " + error.message;
    return;
  }
  if (!current()) return;
  $("integrations-status").textContent = items.length ? "" : "None connected.";
  fill(
    $("integration-rows"),
    items.map((i) =>
      el(
        "tr",
        { "data-integration": i.integration },
        el("td", { text: i.title || i.integration }),
        el("td", {}, el("span", { class: "badge conn-" + (i.needs_reconnect ? "needs_reconnect" : "ok"), text: i.status }), i.needs_reconnect_reason ? " " + i.needs_reconnect_reason : ""),
        el("td", { text: i.account || "—" }),
        el("td", { text: when(i.connected_at) + " by " + i.connected_by }),
      ),
    ),
  );
}

export function auditFilters() {
  const form = $("audit-form");
  const filters = new URLSearchParams();
  for (const name of ["action", "actor", "quest_id"]) {
    const value = form.elements[name].value.trim();
    if (value) filters.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = form.elements[name].value;
    if (value) {
      const d = new Date(value);
      if (!isNaN(d)) filters.set(name, d.toISOString());
    }
  }
  filters.set("limit", form.elements.limit.value);
  return filters;
}

// `audit` is one search: its filters (URLSearchParams), the cursor of each page seen (null:
// the first; the last is the page to read), and the next page's cursor once read.
export async function loadAudit(company, audit, current, openQuest) {
  const params = new URLSearchParams(audit.filters);
  const cursor = audit.cursors[audit.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  $("audit-status").textContent = "loading…";
  let page;
  try {
    page = await api(companyPath(company, "/activity?" + params.toString()));
  } catch (error) {
    if (current()) $("audit-status").textContent = "Audit trail: " + error.message;
    return;
  }
  if (!current()) return;
  audit.next = page.next_cursor;
  $("audit-status").textContent = page.items.length ? "" : "No entries.";
  $("audit-page").textContent = "page " + audit.cursors.length;
  $("audit-next").disabled = !page.next_cursor;
  $("audit-first").disabled = audit.cursors.length === 1;
  fill(
    $("audit-rows"),
    page.items.map((r) =>
      el(
        "tr",
        { "data-activity-id": r.id },
        el("td", { class: "when", text: when(r.occurred_at) }),
        el("td", { text: r.actor_type + ":" + r.actor_id }),
        el("td", { text: r.action }),
        el("td", { text: r.target }),
        el("td", { class: "rationale", text: r.rationale || "" }),
        el("td", {}, r.quest_id ? el("button", { type: "button", class: "link", text: String(r.quest_id).slice(0, 8), onclick: () => openQuest(r.quest_id) }) : ""),
      ),
    ),
  );
}
