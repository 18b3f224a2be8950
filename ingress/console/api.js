// The console's one way to the API: this page's own origin, /v1/ paths only, with the
// user's bearer token; and its live streams, read with fetch() (EventSource cannot send a
// token). Errors are RFC 9457 problems: their `detail` is what the user is shown.

// Who is signed in, and what to do when the API says the token is no longer good.
export const session = {
  token: null,
  unauthorized: (_detail) => {},
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function ownPath(path) {
  const url = new URL(path, location.origin);
  if (url.origin !== location.origin || !url.pathname.startsWith("/v1/")) {
    throw new Error("refusing to send the token elsewhere than this server's API");
  }
  return url.pathname + url.search;
}

function problemDetail(body, fallback) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => (d && d.msg ? String(d.msg) : String(d))).join("; ");
  }
  if (body && typeof body.title === "string") return body.title;
  return fallback;
}

export function companyPath(company, rest) {
  return "/v1/companies/" + encodeURIComponent(company.company_id) + rest;
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Authorization: "Bearer " + session.token, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(ownPath(path), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, problemDetail(data, response.status + " " + response.statusText));
    if (response.status === 401) session.unauthorized(error.message);
    throw error;
  }
  return data;
}

// --- Server-Sent Events over fetch ---------------------------------------------------------

export class EventStream {
  // Reads `path` as text/event-stream, calling onEvent({id, event, data}) for each event,
  // and reconnects with Last-Event-ID when the server ends the stream (its maximum life)
  // unless `done(event)` said the stream is over.
  constructor(path, { onEvent, onState, done, resume, fromStart = true }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.done = done || (() => false);
    this.resume = resume || (async () => true); // after the server ended the stream
    this.lastId = fromStart ? null : undefined;
    this.retryMs = 1000;
    this.stopped = false;
    this.controller = null;
    this.connects = 0;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      this.controller = new AbortController();
      let wait = this.retryMs;
      try {
        const headers = { Authorization: "Bearer " + session.token, Accept: "text/event-stream" };
        if (this.lastId) headers["Last-Event-ID"] = this.lastId;
        const response = await fetch(ownPath(this.path), {
          headers,
          signal: this.controller.signal,
          credentials: "omit",
          cache: "no-store",
        });
        if (!response.ok) {
          let body = null;
          try {
            body = await response.json();
          } catch (_) {
            body = null;
          }
          const detail = problemDetail(body, response.status + " " + response.statusText);
          if (response.status === 401) {
            signOut("Signed out: " + detail);
            return;
          }
          if (response.status === 429 || response.status === 503) {
            const after = Number(response.headers.get("Retry-After")) || 5;
            this.onState("waiting: " + detail);
            wait = after * 1000;
          } else {
            this.onState("stopped: " + detail);
            return; // 403, 404, 405, 422: retrying will not help
          }
        } else {
          failures = 0;
          this.connects += 1;
          this.onState("live");
          const over = await this.read(response.body);
          if (over || this.stopped || !(await this.resume())) {
            this.onState("ended");
            return;
          }
          this.onState("reconnecting");
        }
      } catch (error) {
        if (this.stopped) return;
        failures += 1;
        wait = Math.min(30000, 500 * 2 ** failures);
        this.onState("reconnecting: " + (error && error.message ? error.message : error));
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async read(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) {
            if (event.id !== null) this.lastId = event.id;
            let data = null;
            try {
              data = JSON.parse(event.data.join("\n"));
            } catch (_) {
              data = null;
            }
            if (data && typeof data === "object") {
              const parsed = { id: event.id, event: event.event, data };
              this.onEvent(parsed);
              if (this.done(parsed)) {
                this.stopped = true;
                reader.cancel().catch(() => {});
                return true;
              }
            }
          }
          event = { id: null, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: keep-alive, or why the stream ends
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "id") event.id = text;
        else if (field === "event") event.event = text;
        else if (field === "data") event.data.push(text);
        else if (field === "retry" && /^\d+$/.test(text)) this.retryMs = Number(text);
      }
    }
  }
}
