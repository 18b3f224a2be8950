// One quest's timeline: each live event as a line of text.

import { el, usd } from "/console/dom.js";

function describe(event) {
  const d = event.data || {};
  switch (event.kind) {
    case "quest.state":
      return ["quest " + d.status, d.reason || d.result || ""];
    case "step.waiting":
      return ["waiting for Claude", (d.reason || "") + (d.retry_in_ms ? " · retry in " + d.retry_in_ms / 1000 + " s" : "")];
    case "guard.tier":
      return ["guard: " + d.scope + " reached " + d.tier, usd(d.spent_usd_micros) + " of " + usd(d.cap_usd_micros)];
    case "guard.slowed":
      return ["guard slows the next step", (d.delay_ms || 0) / 1000 + " s"];
    case "tool.called":
      return ["calls " + d.tool, d.rationale ? "why: " + d.rationale : ""];
    case "tool.finished":
      return [d.tool + (d.ok === false ? " failed" : " done"), d.target || ""];
    case "claude.replied":
      return [
        "Claude replied" + (d.stop_reason ? " (" + d.stop_reason + ")" : "") + (d.cost_usd_micros !== undefined ? " · " + usd(d.cost_usd_micros) : ""),
        d.tools && d.tools.length ? "" : d.text || "", // a tool call's text shows with the call
      ];
    case "step.started":
      return ["step started", d.reserved_usd_micros ? usd(d.reserved_usd_micros) + " reserved for the call" : ""];
    case "step.finished":
      return ["step finished", ""];
    default:
      return [event.kind, ""];
  }
}

export function timelineEntry(event) {
  const [what, detail] = describe(event);
  return el(
    "li",
    { "data-kind": event.kind, class: "kind-" + String(event.kind).replace(/[^a-z]/g, "-") },
    el("span", { class: "at muted", text: event.at ? new Date(event.at).toLocaleTimeString() : "" }),
    el("span", { class: "step", text: event.step ? "step " + event.step : "" }),
    el("span", { class: "what", text: what }),
    detail ? el("span", { class: "detail", text: detail }) : null,
  );
}
