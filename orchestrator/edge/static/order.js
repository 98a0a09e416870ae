// The order page (order.html?id=...): the chart drawn with the active states lit, the
// context, the history as a timeline, and a form that sends the events allowed now.
//
// It reads the view and the history over HTTP, then follows WS /orders/{id}/ws with
// ?after=<last version read>, so the server replays whatever happened in between; each
// message is a journal entry (a new timeline row) and the view after it. A dropped socket
// reconnects from the last version seen, so the page never misses or repeats an event.
// The send form offers the events allowed now except the chart's service events (the
// kitchen's PIZZA_READY...), which only a service may send: the server refuses them here.

import { age, api, h, openSocket, setUpTokenForm, showProblem } from "./api.js";
import { drawChart } from "./chart.js";

const RECONNECT_MS = 1000;
const NOT_FOUND = 4404;

const orderId = new URLSearchParams(location.search).get("id") ?? "";
const path = `/orders/${encodeURIComponent(orderId)}`;
const live = document.querySelector("#live");
const pageError = document.querySelector("#page-error");
const sendForm = document.querySelector("#send");
const sendError = document.querySelector("#send-error");
const timeline = document.querySelector("#history tbody");
let current = null; // the latest view
let seen = 0; // the last version in the timeline, where a (re)connected socket resumes
let light = () => {}; // lights up the chart's active states, once it is drawn
let serviceEvents = new Set(); // the chart's events only a service may send

function text(selector, value) {
  document.querySelector(selector).textContent = value;
}

function itemsText(items) {
  if (!Array.isArray(items)) return JSON.stringify(items); // a chart's own kind of items
  return items.map((item) => JSON.stringify(item)).join("\n") || "none";
}

function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function show(view) {
  if (current && current.version >= view.version) return;
  current = view;
  text("#state", view.state);
  text("#status", view.status ?? "");
  text("#chart-name", view.chart);
  text("#version", String(view.version));
  text("#created-at", `${new Date(view.createdAt).toLocaleString()} (${age(view.createdAt)} ago)`);
  text("#updated-at", `${new Date(view.updatedAt).toLocaleString()} (${age(view.updatedAt)} ago)`);
  text("#items", itemsText(view.items));
  text("#context", JSON.stringify(view.context ?? {}, null, 2));
  const offered = view.nextEvents.filter((event) => !serviceEvents.has(event));
  const select = sendForm.elements.type;
  const chosen = select.value;
  select.replaceChildren(...offered.map((event) => h("option", { value: event }, event)));
  if (offered.includes(chosen)) select.value = chosen;
  sendForm.hidden = offered.length === 0;
  document.querySelector("#no-events").hidden = offered.length > 0;
  document.body.dataset.state = view.state;
  light(view);
}

function addEntry(entry) {
  if (entry.version <= seen) return;
  seen = entry.version;
  const data = Object.keys(entry.data ?? {}).length ? JSON.stringify(entry.data) : "";
  timeline.append(
    h(
      "tr",
      { "data-version": String(entry.version), "data-event": entry.type },
      h("td", {}, String(entry.version)),
      h("td", { class: "event" }, h("code", {}, entry.type), data ? h("div", { class: "data" }, data) : ""),
      h("td", {}, h("code", {}, entry.stateBefore || "—")),
      h("td", {}, h("code", {}, entry.stateAfter)),
      h("td", { title: entry.at }, new Date(entry.at).toLocaleTimeString()),
      h("td", { class: "duration" }, duration(entry.durationMs)),
    ),
  );
}

async function readHistory() {
  let after = 0;
  for (;;) {
    const page = await api(`${path}/history?after=${after}`);
    page.entries.forEach(addEntry);
    if (page.nextAfter === undefined) return;
    after = page.nextAfter;
  }
}

function follow() {
  const socket = openSocket(`${path}/ws?after=${seen}`, {
    onMessage: ({ event, view }) => {
      if (event) addEntry(event);
      show(view);
    },
    onClose: (code) => {
      live.dataset.live = "false";
      if (code === NOT_FOUND) {
        live.textContent = "no such order";
        return;
      }
      live.textContent = "reconnecting…";
      setTimeout(follow, RECONNECT_MS);
    },
  });
  socket.addEventListener("open", () => {
    live.dataset.live = "true";
    live.textContent = "live";
  });
}

sendForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  sendError.hidden = true;
  let data;
  try {
    data = JSON.parse(sendForm.elements.data.value || "{}");
  } catch (problem) {
    showProblem(sendError, new Error(`data is not JSON: ${problem.message}`));
    return;
  }
  try {
    show(await api(`${path}/events`, { method: "POST", body: { type: sendForm.elements.type.value, data } }));
  } catch (problem) {
    showProblem(sendError, problem);
  }
});

setUpTokenForm();
text("#order-id", orderId);
document.title = `Order ${orderId} · orchestrator`;
try {
  if (!orderId) throw new Error("no order id: open this page as order.html?id=<order id>");
  const view = await api(path);
  // An id such as "." or ".." is a path segment the URL resolves away: the answer is then
  // another resource's (the list of orders), not this order's.
  if (view?.id !== orderId) throw new Error(`no such order: ${orderId}`);
  const chart = await api(`/charts/${encodeURIComponent(view.chart)}`);
  serviceEvents = new Set(chart.serviceEvents ?? []);
  show(view);
  await readHistory();
  follow();
  light = await drawChart(document.querySelector("#chart"), chart);
  light(current);
} catch (error) {
  showProblem(pageError, error);
}
