// The operator console. No build step, no dependency.
//
// Rules its files keep (tests/test_console.py checks them):
// - the token goes only to this page's own origin: every request is a relative /v1/ path;
// - every value shown is text (textContent, never innerHTML): goals, results and rationales
//   come from users and from Claude;
// - nothing inline: the page's Content-Security-Policy allows scripts and styles from this
//   origin only.

import { EventStream, api, companyPath, session } from "/console/api.js";
import { $, TERMINAL, el, fill, show, statusClass, tierClass, usd, when } from "/console/dom.js";
import { auditFilters, loadAudit, loadGuard, loadIntegrations } from "/console/panels.js";
import { timelineEntry } from "/console/timeline.js";

const TOKEN_KEY = "s2.console.token";
const COMPANY_KEY = "s2.console.company";

const state = {
  companies: [], // [{company_id, name, role}]
  company: null, // the one shown
  quests: new Map(), // quest_id -> list item
  questsNext: null, // the list's next page
  feed: null, // the company's live feed (EventStream)
  quest: null, // {id, view, stream, tier}
  audit: { cursors: [null], filters: null },
  timers: {},
};

function notice(text) {
  const box = $("notice");
  box.textContent = text || "";
  show(box, Boolean(text));
}

function debounce(name, ms, fn) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(fn, ms);
}

function path(rest) {
  return companyPath(state.company, rest);
}

// --- signing in -----------------------------------------------------------------------------

function tokenFromFragment() {
  // `make demo` prints /console#token=…: read it, keep it in this tab, and take it out of the
  // address bar (and so out of the history and of anything copied from it).
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return token;
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch (_) {
    return {};
  }
}

function signOut(why) {
  stopStreams();
  session.token = null;
  state.company = null;
  sessionStorage.removeItem(TOKEN_KEY);
  show($("session"), false);
  show($("app"), false);
  show($("sign-in"), true);
  notice(why || "");
}

function stopStreams() {
  if (state.feed) state.feed.stop();
  state.feed = null;
  if (state.quest && state.quest.stream) state.quest.stream.stop();
  state.quest = null;
}

async function signIn(token) {
  session.token = token.trim();
  sessionStorage.setItem(TOKEN_KEY, session.token);
  show($("sign-in"), false);
  const who = claims(session.token);
  $("who").textContent = who.sub ? "signed in as " + who.sub : "";
  show($("session"), true);
  notice("");
  try {
    state.companies = await api("/v1/companies");
  } catch (error) {
    if (session.token) notice("Could not list your companies: " + error.message);
    return;
  }
  if (!state.companies.length) {
    notice("You are not a member of any company.");
    return;
  }
  fill(
    $("company"),
    state.companies.map((c) => el("option", { value: c.company_id, text: c.name + " (" + c.role + ")" })),
  );
  const kept = sessionStorage.getItem(COMPANY_KEY);
  const chosen = state.companies.find((c) => c.company_id === kept) || state.companies[0];
  $("company").value = chosen.company_id;
  openCompany(chosen);
}

function openCompany(company) {
  stopStreams();
  state.company = company;
  state.quests = new Map();
  sessionStorage.setItem(COMPANY_KEY, company.company_id);
  const admin = company.role === "admin";
  $("role").textContent = company.role;
  $("role").className = "badge role-" + (admin ? "admin" : "member");
  for (const node of document.querySelectorAll(".admin-only")) show(node, admin);
  if (!admin) {
    fill($("guard-rows"), []);
    fill($("audit-rows"), []);
  }
  show($("quest"), false);
  show($("app"), true);
  startFeed(company); // from now: opened before the list is read, so nothing falls between
  loadQuests();
  refreshIntegrations();
  if (admin) {
    refreshGuard();
    state.audit = { cursors: [null], filters: auditFilters() };
    refreshAudit();
  }
}

// --- quests and the company's live feed -----------------------------------------------------

const QUEST_FILTERS = {
  "": [],
  live: ["queued", "running"],
  ended: ["succeeded", "failed", "cancelled", "halted"],
};

async function loadQuests(more = false) {
  const company = state.company;
  const params = new URLSearchParams({ limit: "50" });
  for (const status of QUEST_FILTERS[$("quest-filter").value] || []) params.append("status", status);
  if (more && state.questsNext) params.set("cursor", state.questsNext);
  $("quests-status").textContent = "loading…";
  let page;
  try {
    page = await api(path("/quests?" + params.toString()));
  } catch (error) {
    if (state.company === company) $("quests-status").textContent = "Quests could not be listed: " + error.message;
    return;
  }
  if (state.company !== company) return;
  if (!more) state.quests = new Map();
  for (const q of page.items) state.quests.set(q.quest_id, q);
  state.questsNext = page.next_cursor;
  show($("quests-more"), Boolean(page.next_cursor));
  renderQuests();
}

function startFeed(company) {
  if (state.feed || state.company !== company) return;
  state.feed = new EventStream(path("/events"), {
    fromStart: false,
    onEvent: (e) => onFeedEvent(e.data),
    onState: (s) => {
      $("feed-state").textContent = "feed: " + s;
      // Back without an event id to resume from (none came yet): the feed starts from now
      // again, so the list is read again for what happened in between.
      if (s === "live" && state.feed && state.feed.connects > 1 && !state.feed.lastId) {
        debounce("quests", 300, loadQuests);
      }
    },
  }).start();
}

function onFeedEvent(event) {
  const quest = state.quests.get(event.quest_id);
  if (!quest) {
    debounce("quests", 300, loadQuests); // a quest this page has not seen: list again
    return;
  }
  if (event.kind === "quest.state" && event.data && event.data.status) {
    quest.status = event.data.status;
    if (TERMINAL.has(quest.status)) quest.finished_at = event.at;
  }
  if (event.kind === "step.finished" && Number.isInteger(event.step)) {
    quest.steps_done = Math.max(quest.steps_done || 0, event.step);
    debounce("quest-cost-" + quest.quest_id, 500, () => refreshListedQuest(quest.quest_id));
  }
  if (state.company && state.company.role === "admin" && (event.kind === "step.finished" || event.kind === "quest.state")) {
    debounce("guard", 1500, refreshGuard);
    // The newest audit rows, when the admin is looking at the first page.
    if (state.audit.cursors.length === 1) debounce("audit", 2000, refreshAudit);
  }
  renderQuests();
}

async function refreshListedQuest(questId) {
  try {
    const view = await api(path("/quests/" + encodeURIComponent(questId)));
    const quest = state.quests.get(questId);
    if (quest) {
      quest.cost_usd_micros = view.cost_usd_micros;
      quest.status = view.status;
      renderQuests();
    }
  } catch (_) {
    // the list says what it said; the next event tries again
  }
}

function renderQuests() {
  const rows = [...state.quests.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  $("quests-status").textContent = rows.length ? "" : $("quest-filter").value ? "No quests match." : "No quests yet.";
  fill(
    $("quest-rows"),
    rows.map((q) =>
      el(
        "tr",
        {
          "data-quest-id": q.quest_id,
          class: state.quest && state.quest.id === q.quest_id ? "selected" : "",
          tabIndex: 0,
          onclick: () => openQuest(q.quest_id),
          onkeydown: (e) => {
            if (e.key === "Enter") openQuest(q.quest_id);
          },
        },
        el("td", {}, el("span", { class: statusClass(q.status), "data-status": q.status, text: q.status })),
        el("td", { class: "goal-cell", title: q.goal, text: q.goal }),
        el("td", { class: "num", text: q.steps_done ?? "" }),
        el("td", { class: "num", text: usd(q.cost_usd_micros) }),
        el("td", { class: "when", text: when(q.created_at) }),
      ),
    ),
  );
}

// --- one quest's timeline ---------------------------------------------------------------------

async function openQuest(questId) {
  if (state.quest && state.quest.stream) state.quest.stream.stop();
  const quest = { id: questId, view: null, stream: null, tier: null, rationale: {} };
  state.quest = quest;
  fill($("timeline"), []);
  fill($("step-rows"), []);
  $("quest-id").textContent = questId;
  show($("quest"), true);
  renderQuests();
  try {
    quest.view = await api(path("/quests/" + encodeURIComponent(questId)));
  } catch (error) {
    if (state.quest !== quest) return;
    show($("quest"), false);
    state.quest = null;
    notice("Quest " + questId + ": " + error.message);
    return;
  }
  if (state.quest !== quest) return;
  notice("");
  renderQuest();
  quest.stream = new EventStream(path("/quests/" + encodeURIComponent(questId) + "/events"), {
    onEvent: (e) => onQuestEvent(quest, e.data),
    onState: (s) => {
      if (state.quest === quest) $("timeline-state").textContent = s;
    },
    done: (e) => e.data.kind === "quest.state" && TERMINAL.has(e.data.data && e.data.data.status),
    resume: async () => {
      // The server ends a quest's stream when the quest has ended (or at its maximum life).
      await refreshQuest(quest);
      return state.quest === quest && !TERMINAL.has(quest.view.status);
    },
  }).start();
}

function onQuestEvent(quest, event) {
  if (state.quest !== quest) return;
  // A tool call's rationale is the text of the reply that asked for it (claude.replied).
  if (event.kind === "claude.replied" && event.data && event.data.text) quest.rationale[event.step] = event.data.text;
  if (event.kind === "tool.called" && event.data && !event.data.rationale) {
    event = { ...event, data: { ...event.data, rationale: quest.rationale[event.step] } };
  }
  $("timeline").append(timelineEntry(event));
  if (event.kind === "guard.tier" && event.data && event.data.scope === "quest") quest.tier = event.data.tier;
  if (event.kind === "quest.state" && event.data && event.data.status) quest.view.status = event.data.status;
  if (event.kind === "step.finished" || event.kind === "quest.state" || event.kind === "tool.called") {
    debounce("quest-view", 200, () => refreshQuest(quest));
  }
  renderQuest();
}

async function refreshQuest(quest) {
  try {
    const view = await api(path("/quests/" + encodeURIComponent(quest.id)));
    if (state.quest !== quest) return;
    quest.view = view;
    renderQuest();
  } catch (_) {
    // shown as it was; the next event refreshes it
  }
}

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", { text: value })];
}

function renderQuest() {
  const quest = state.quest;
  if (!quest || !quest.view) return;
  const v = quest.view;
  $("quest-status").textContent = v.status;
  $("quest-status").className = statusClass(v.status);
  $("quest-status").setAttribute("data-status", v.status);
  $("quest-goal").textContent = v.goal;
  fill($("quest-facts"), [
    ...fact("model", v.model),
    ...fact("cost", usd(v.cost_usd_micros) + (v.max_usd_micros ? " of " + usd(v.max_usd_micros) : "")),
    ...fact("tier", quest.tier || "ok"),
    ...fact("created", when(v.created_at)),
    ...fact("finished", when(v.finished_at)),
  ]);
  const outcome = v.result || v.reason;
  $("quest-outcome").textContent = outcome ? (v.result ? "Result: " : "Reason: ") + outcome : "";
  show($("quest-outcome"), Boolean(outcome));
  show($("quest-cancel"), !TERMINAL.has(v.status) && v.status !== "cancelling");
  fill(
    $("step-rows"),
    v.steps.map((s) =>
      el(
        "tr",
        { "data-step": s.step },
        el("td", { class: "num", text: s.step }),
        el("td", { text: s.status }),
        el("td", { text: s.tools.join(", ") || "—" }),
        el("td", { text: s.stop_reason || "—" }),
        el("td", { class: "num", text: usd(s.cost_usd_micros) }),
      ),
    ),
  );
  const listed = state.quests.get(v.quest_id);
  if (listed && listed.status !== v.status && !TERMINAL.has(listed.status)) {
    listed.status = v.status;
    renderQuests();
  }
}

async function cancelQuest() {
  const quest = state.quest;
  if (!quest) return;
  const button = $("quest-cancel");
  button.disabled = true;
  try {
    const answer = await api(path("/quests/" + encodeURIComponent(quest.id) + "/cancel"), {
      method: "POST",
      body: { reason: "cancelled from the operator console" },
    });
    if (state.quest === quest && answer && answer.status) {
      quest.view.status = answer.status;
      renderQuest();
    }
  } catch (error) {
    notice("Cancel refused: " + error.message);
  } finally {
    button.disabled = false;
  }
}

// --- the company's panels (panels.js), for the company shown --------------------------------

function refreshGuard() {
  const company = state.company;
  if (company && company.role === "admin") loadGuard(company, () => state.company === company);
}

function refreshIntegrations() {
  const company = state.company;
  if (company) loadIntegrations(company, () => state.company === company);
}

function refreshAudit() {
  const company = state.company;
  const audit = state.audit;
  if (company && company.role === "admin") {
    loadAudit(company, audit, () => state.company === company && state.audit === audit, openQuest);
  }
}

// --- wiring ---------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("company").addEventListener("change", () => {
    const chosen = state.companies.find((c) => c.company_id === $("company").value);
    if (chosen) openCompany(chosen);
  });
  $("quests-refresh").addEventListener("click", () => loadQuests());
  $("quest-filter").addEventListener("change", () => loadQuests());
  $("quests-more").addEventListener("click", () => loadQuests(true));
  $("open-quest-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("open-quest-input").value.trim();
    if (id) openQuest(id);
  });
  $("quest-cancel").addEventListener("click", cancelQuest);
  $("guard-refresh").addEventListener("click", refreshGuard);
  $("integrations-refresh").addEventListener("click", refreshIntegrations);
  $("audit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.audit = { cursors: [null], filters: auditFilters() };
    refreshAudit();
  });
  $("audit-next").addEventListener("click", () => {
    if (!state.audit.next) return;
    state.audit.cursors.push(state.audit.next);
    refreshAudit();
  });
  $("audit-first").addEventListener("click", () => {
    state.audit.cursors = [null];
    refreshAudit();
  });
}

function start() {
  wire();
  const token = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else signOut("");
}

session.unauthorized = (detail) => signOut("Signed out: " + detail);
start(); // a module runs once the page is parsed
