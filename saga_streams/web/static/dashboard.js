// The dashboard's whole behaviour: poll the orchestrator's API (same origin) and the
// participants' GET /accounts (other ports, which allow cross-origin reads) every 2 s and
// redraw in place. Plain DOM, no framework, no build step.
"use strict";

(() => {
  const STATUSES = ["STARTED", "COMPENSATING", "COMPLETED", "ROLLED_BACK", "FAILED"];
  const IN_FLIGHT = new Set(["STARTED", "COMPENSATING"]);
  const PAGE_SIZE = 20;
  const ACCOUNT_PAGE_SIZE = 10;
  const POLL_MS = 2000;
  const TOKEN_KEY = "saga_streams.token";
  const PARTICIPANTS_KEY = "saga_streams.participants";

  const state = {
    status: "",
    pages: [], // the path of each saga page seen so far; the last is shown
    next: null,
    detailId: null,
    accountPages: new Map(), // participant base URL -> paths of its pages seen so far
    polling: false,
  };

  const $ = (id) => document.getElementById(id);

  // An element with attributes and children (strings become text: server data is never
  // parsed as HTML).
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJson(url) {
    // With API_TOKEN_READS=1 the reads need the token too (a cross-origin one is then
    // preflighted, which the participants answer).
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const response = await fetch(url, { headers });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body };
  }

  function timeOf(value) {
    if (value === null || value === undefined) return "";
    const at = new Date(value);
    if (Number.isNaN(at.getTime())) return String(value);
    return el("time", { datetime: at.toISOString(), title: at.toISOString() },
      at.toLocaleTimeString());
  }

  // -- settings -------------------------------------------------------------------------
  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function participants() {
    const stored = localStorage.getItem(PARTICIPANTS_KEY);
    const host = window.location.hostname || "127.0.0.1";
    const fallback = [8001, 8002, 8003].map((port) => `http://${host}:${port}`).join(",");
    return (stored || fallback).split(",").map((url) => url.trim().replace(/\/+$/, ""))
      .filter(Boolean);
  }

  function setUpSettings() {
    $("participant-urls").value = participants().join(",");
    $("api-token").value = token();
    $("settings-form").addEventListener("submit", (event) => {
      event.preventDefault();
      localStorage.setItem(PARTICIPANTS_KEY, $("participant-urls").value);
      sessionStorage.setItem(TOKEN_KEY, $("api-token").value.trim());
      state.accountPages.clear();
      $("account-tables").replaceChildren();
      poll();
    });
  }

  // -- counts ---------------------------------------------------------------------------
  async function refreshCounts() {
    const answers = await Promise.all(
      STATUSES.map((status) => getJson(`/sagas?status=${status}&limit=1`)));
    const items = STATUSES.map((status, i) => {
      const count = answers[i].status === 200 ? answers[i].body.count : "?";
      const item = el("li", { "data-status-count": status, className: "status-card" },
        el("span", { className: `count status-${status}` }, count),
        el("button", { type: "button", "aria-label": `Show ${status} sagas` }, status));
      if (state.status === status) item.classList.add("active");
      item.querySelector("button").addEventListener("click", () => chooseStatus(status));
      return item;
    });
    $("status-counts").replaceChildren(...items);
  }

  // -- the saga list --------------------------------------------------------------------
  function firstPage() {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state.status) query.set("status", state.status);
    return `/sagas?${query}`;
  }

  function chooseStatus(status) {
    state.status = status;
    $("status-filter").value = status;
    state.pages = [firstPage()];
    poll();
  }

  async function stuckIds() {
    const seconds = Math.max(1, Number($("stuck-after").value) || 30);
    const answers = await Promise.all(["STARTED", "COMPENSATING"].map(
      (status) => getJson(`/sagas?status=${status}&older_than=${seconds}&limit=1000`)));
    return new Set(answers.flatMap((a) => (a.status === 200 ? a.body.sagas : []))
      .map((saga) => saga.saga_id));
  }

  function isRetrying(detail) {
    return detail.steps.some((step) => (step.attempts || 0) > 1
      || (step.compensation_attempts || 0) > 1);
  }

  // Attempts are in the detail only: read it for the sagas in flight on this page.
  async function retryingIds(sagas) {
    const inFlight = sagas.filter((saga) => IN_FLIGHT.has(saga.status));
    const details = await Promise.all(inFlight.map(
      (saga) => getJson(`/sagas/${encodeURIComponent(saga.saga_id)}`)));
    return new Set(details.filter((d) => d.status === 200 && isRetrying(d.body))
      .map((d) => d.body.saga_id));
  }

  function sagaRow(saga, stuck, retrying) {
    const flags = [];
    if (stuck.has(saga.saga_id)) flags.push("stuck");
    if (retrying.has(saga.saga_id)) flags.push("retrying");
    const row = el("tr", {
      "data-saga-id": saga.saga_id, "data-status": saga.status,
      "data-flags": flags.join(" "), className: flags.join(" "), tabindex: 0,
    },
    el("td", { className: "mono" }, saga.saga_id),
    el("td", {}, el("span", { className: `status status-${saga.status}` }, saga.status),
      ...flags.map((flag) => el("span", { className: `badge ${flag}` }, flag))),
    el("td", {}, `$${saga.amount}`),
    el("td", {}, `${saga.from_account || "?"} → ${saga.to_account || "?"}`),
    el("td", {}, saga.workflow),
    el("td", {}, timeOf(saga.created_at)),
    el("td", {}, timeOf(saga.updated_at)));
    if (saga.saga_id === state.detailId) row.classList.add("selected");
    row.addEventListener("click", () => openDetail(saga.saga_id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openDetail(saga.saga_id);
    });
    return row;
  }

  async function refreshList() {
    if (state.pages.length === 0) state.pages = [firstPage()];
    const path = state.pages[state.pages.length - 1];
    const { status, body } = await getJson(path);
    if (status !== 200) throw new Error(body && body.error ? body.error : `GET /sagas: ${status}`);
    const [stuck, retrying] = await Promise.all([stuckIds(), retryingIds(body.sagas)]);
    const rows = body.sagas.map((saga) => sagaRow(saga, stuck, retrying));
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 7, className: "empty" }, "No sagas.")));
    }
    $("saga-rows").replaceChildren(...rows);
    state.next = body.next;
    $("older-page").disabled = !body.next;
    $("newer-page").disabled = state.pages.length < 2;
    $("page-label").textContent = `Page ${state.pages.length} · ${body.count} matching`;
  }

  function setUpList() {
    const filter = $("status-filter");
    for (const status of STATUSES) filter.append(el("option", { value: status }, status));
    filter.addEventListener("change", () => chooseStatus(filter.value));
    $("stuck-after").addEventListener("change", () => poll());
    $("older-page").addEventListener("click", () => {
      if (state.next) state.pages.push(state.next);
      poll();
    });
    $("newer-page").addEventListener("click", () => {
      if (state.pages.length > 1) state.pages.pop();
      poll();
    });
    $("saga-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("saga-lookup").value.trim();
      if (id) openDetail(id);
    });
  }

  // -- the saga detail ------------------------------------------------------------------
  function openDetail(sagaId) {
    state.detailId = sagaId;
    $("action-result").textContent = "";
    $("action-result").className = "";
    $("detail").hidden = false;
    $("detail-id").textContent = sagaId;
    refreshDetail().then(() => $("detail").scrollIntoView({ block: "nearest" }));
  }

  function stepRow(step) {
    return el("tr", { "data-step": step.step, "data-outcome": step.outcome },
      el("td", {}, step.step),
      el("td", {}, step.service),
      el("td", {}, step.account || ""),
      el("td", {}, step.action),
      el("td", {}, step.amount === undefined ? "" : `$${step.amount}`),
      el("td", {}, el("span", { className: `outcome-${step.outcome}` }, step.outcome)),
      el("td", {}, step.attempts === undefined ? "" : step.attempts),
      el("td", { className: step.error ? "error" : "" }, step.error || ""));
  }

  function historyItem(entry) {
    const what = [entry.event];
    if (entry.step !== null && entry.step !== undefined) what.push(`step ${entry.step}`);
    return el("li", { "data-event": entry.event },
      timeOf(entry.at), el("strong", {}, what.join(" · ")),
      entry.detail ? ` — ${typeof entry.detail === "string" ? entry.detail : JSON.stringify(entry.detail)}` : "");
  }

  function renderDetail(saga) {
    const fields = [
      ["Status", el("span", { className: `status status-${saga.status}`, id: "detail-status" },
        saga.status)],
      ["Amount", `$${saga.amount}`],
      ["From → to", `${saga.from_account || "?"} → ${saga.to_account || "?"}`],
      ["Workflow", saga.workflow],
      ["Created", timeOf(saga.created_at)],
      ["Updated", timeOf(saga.updated_at)],
      ["Next retry", saga.next_retry_at ? timeOf(saga.next_retry_at) : "—"],
    ];
    $("detail-fields").replaceChildren(...fields.flatMap(([name, value]) =>
      [el("dt", {}, name), el("dd", {}, value)]));
    $("detail").dataset.status = saga.status;
    $("detail-error").hidden = !saga.error;
    $("detail-error").textContent = saga.error || "";
    $("step-rows").replaceChildren(...saga.steps.map(stepRow));
    // The history is newer than the rest of the API: absent, nothing is shown.
    const history = Array.isArray(saga.history) ? saga.history : null;
    $("history-section").hidden = !history;
    $("history").replaceChildren(...(history || []).map(historyItem));
  }

  async function refreshDetail() {
    if (!state.detailId) return;
    const { status, body } = await getJson(`/sagas/${encodeURIComponent(state.detailId)}`);
    if (status === 200) {
      renderDetail(body);
      return;
    }
    $("detail-fields").replaceChildren();
    $("step-rows").replaceChildren();
    $("history-section").hidden = true;
    $("detail-error").hidden = false;
    $("detail-error").textContent = (body && body.error) || `GET /sagas/${state.detailId}: ${status}`;
  }

  // -- operator actions -----------------------------------------------------------------
  function showResult(text, ok) {
    $("action-result").textContent = text;
    $("action-result").className = ok ? "done" : "failed";
  }

  async function act(action) {
    const sagaId = state.detailId;
    if (!sagaId) return;
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const reason = $("action-reason").value.trim() || "operator action from the dashboard";
    let response;
    try {
      response = await fetch(`/sagas/${encodeURIComponent(sagaId)}/${action}`,
        { method: "POST", headers, body: JSON.stringify({ reason }) });
    } catch (exc) {
      showResult(`${action} failed: the orchestrator did not answer (${exc.message})`, false);
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response.status === 401) {
      showResult(`${action}: the server asks for an API token; enter it under Settings and save.`, false);
      $("api-token").focus();
      return;
    }
    if (response.status === 202 && body) {
      showResult(`${action} accepted: saga ${sagaId} is ${body.status}`, true);
      if (body.steps) renderDetail(body);
      poll();
      return;
    }
    const why = body && body.error ? body.error : `HTTP ${response.status}`;
    showResult(`${action} refused (${response.status}): ${why}`, false);
  }

  function setUpActions() {
    for (const button of document.querySelectorAll("#actions button[data-action]")) {
      button.addEventListener("click", () => act(button.dataset.action));
    }
    $("close-detail").addEventListener("click", () => {
      state.detailId = null;
      $("detail").hidden = true;
    });
  }

  // -- balances -------------------------------------------------------------------------
  function accountSection(base) {
    const id = `accounts-${base.replace(/[^a-z0-9]+/gi, "-")}`;
    let section = document.getElementById(id);
    if (section) return section;
    const older = el("button", { type: "button", className: "older" }, "Next →");
    const newer = el("button", { type: "button", className: "newer" }, "← Previous");
    section = el("section", { id, "data-participant": base },
      el("h3", {}, base),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Account"),
        el("th", { scope: "col" }, "Balance"))), el("tbody", {})),
      el("p", { className: "error", role: "alert" }),
      el("nav", { className: "pager", "aria-label": `Account pages of ${base}` }, newer,
        el("span", { className: "page" }), older));
    older.addEventListener("click", () => {
      const next = section.dataset.next;
      if (next) state.accountPages.get(base).push(next);
      poll();
    });
    newer.addEventListener("click", () => {
      const pages = state.accountPages.get(base);
      if (pages.length > 1) pages.pop();
      poll();
    });
    $("account-tables").append(section);
    return section;
  }

  async function refreshParticipant(base) {
    const section = accountSection(base);
    if (!state.accountPages.has(base)) {
      state.accountPages.set(base, [`/accounts?limit=${ACCOUNT_PAGE_SIZE}`]);
    }
    const pages = state.accountPages.get(base);
    const error = section.querySelector(".error");
    try {
      const { status, body } = await getJson(`${base}${pages[pages.length - 1]}`);
      if (status !== 200) throw new Error((body && body.error) || `HTTP ${status}`);
      section.querySelector("tbody").replaceChildren(...body.accounts.map((account) =>
        el("tr", { "data-account": account.account },
          el("td", {}, account.account), el("td", { className: "balance" }, `$${account.balance}`))));
      section.dataset.next = body.next || "";
      section.querySelector(".older").disabled = !body.next;
      section.querySelector(".newer").disabled = pages.length < 2;
      section.querySelector(".page").textContent = `Page ${pages.length} · ${body.count} accounts`;
      error.textContent = "";
    } catch (exc) {
      error.textContent = `Unreachable: ${exc.message}`;
    }
  }

  async function refreshAccounts() {
    await Promise.all(participants().map(refreshParticipant));
  }

  // -- polling --------------------------------------------------------------------------
  async function poll() {
    if (state.polling) return;
    state.polling = true;
    try {
      const results = await Promise.allSettled(
        [refreshCounts(), refreshList(), refreshDetail(), refreshAccounts()]);
      const failed = results.find((result) => result.status === "rejected");
      $("updated").textContent = failed
        ? `Update failed at ${new Date().toLocaleTimeString()}: ${failed.reason.message}`
        : `Updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    } finally {
      state.polling = false;
    }
  }

  setUpSettings();
  setUpList();
  setUpActions();
  poll();
  window.setInterval(poll, POLL_MS);
})();
