// The list page: every order, newest first, kept live by the firehose (WS /ws); filters
// by chart and state prefix (kept in the URL), "More" follows nextCursor, and a form
// creates an order.
//
// The socket is opened before the first page is read, so no change is lost between the
// two; a view replaces the row's only when its version is newer. After the socket drops
// (or falls behind, 4008) the list is read again from the first page.

import { age, api, h, openSocket, setUpTokenForm, showProblem } from "./api.js";

const PAGE = 50;
const RECONNECT_MS = 1000;

const filters = document.querySelector("#filters");
const rows = document.querySelector("#orders tbody");
const more = document.querySelector("#more");
const live = document.querySelector("#live");
const listError = document.querySelector("#list-error");
const orders = new Map(); // id -> view, for the orders shown
let cursor = null;

function wanted() {
  const params = new URLSearchParams(location.search);
  return { chart: params.get("chart") ?? "", state: params.get("state") ?? "" };
}

function matches(view) {
  const { chart, state } = wanted();
  return (!chart || view.chart === chart) && (!state || view.state.startsWith(state));
}

// Items are whatever clients sent: a name that is not a string is shown as JSON, so no
// order's data can break the rendering of the others.
function itemText(item) {
  const name = item !== null && typeof item === "object" ? item.name : undefined;
  return typeof name === "string" && name ? name : JSON.stringify(item);
}

function itemsText(items) {
  if (!Array.isArray(items)) return JSON.stringify(items);
  return `${items.length}: ${items.map(itemText).join(", ")}`;
}

function row(view) {
  const link = h("a", { href: `order.html?id=${encodeURIComponent(view.id)}` }, view.id);
  return h(
    "tr",
    { "data-id": view.id, "data-state": view.state },
    h("td", { class: "id" }, link),
    h("td", {}, view.chart),
    h("td", { class: "state" }, h("code", {}, view.state)),
    h("td", { class: "status" }, view.status ?? ""),
    h("td", { class: "items" }, itemsText(view.items)),
    h("td", { class: "age", "data-since": view.createdAt }, age(view.createdAt)),
    h("td", { class: "age", "data-since": view.updatedAt }, age(view.updatedAt)),
    h("td", { class: "version" }, String(view.version)),
  );
}

function render() {
  const sorted = [...orders.values()].sort(
    (a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id),
  );
  rows.replaceChildren(...sorted.map(row));
  document.querySelector("#empty").hidden = orders.size > 0;
  more.hidden = cursor === null;
}

function take(view) {
  const known = orders.get(view.id);
  if (known && known.version >= view.version) return;
  if (matches(view)) orders.set(view.id, view);
  else orders.delete(view.id);
}

async function loadPage(after) {
  const { chart, state } = wanted();
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (chart) params.set("chart", chart);
  if (state) params.set("state", state);
  if (after) params.set("cursor", after);
  try {
    const page = await api(`/orders?${params}`);
    page.orders.forEach(take);
    cursor = page.nextCursor;
    listError.hidden = true;
  } catch (error) {
    showProblem(listError, error);
  }
  render();
}

function connect() {
  const socket = openSocket("/ws", {
    onMessage: ({ view }) => {
      take(view);
      render();
    },
    onClose: () => {
      live.dataset.live = "false";
      live.textContent = "reconnecting…";
      setTimeout(connect, RECONNECT_MS);
    },
  });
  socket.addEventListener("open", () => {
    live.dataset.live = "true";
    live.textContent = "live";
    orders.clear();
    cursor = null;
    loadPage(null);
  });
}

async function setUpFilters(charts) {
  const { chart, state } = wanted();
  const select = filters.elements.chart;
  select.append(...charts.charts.map((name) => h("option", { value: name }, name)));
  select.value = chart;
  filters.elements.state.value = state;
  // The state paths of every chart, as suggestions for the prefix.
  const paths = new Set();
  for (const name of charts.charts) {
    const graph = await api(`/charts/${encodeURIComponent(name)}`);
    const walk = (states, prefix) => {
      for (const s of states) {
        paths.add(prefix + s.id);
        walk(s.children, `${prefix}${s.id}.`);
      }
    };
    walk(graph.states, "");
  }
  document.querySelector("#state-paths").replaceChildren(...[...paths].map((p) => h("option", { value: p })));
  const apply = () => {
    const params = new URLSearchParams();
    if (select.value) params.set("chart", select.value);
    if (filters.elements.state.value) params.set("state", filters.elements.state.value);
    history.replaceState(null, "", params.size ? `?${params}` : location.pathname);
    orders.clear();
    cursor = null;
    loadPage(null);
  };
  filters.addEventListener("change", apply);
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  filters.addEventListener("reset", () => setTimeout(apply));
}

async function setUpCreate(charts) {
  const form = document.querySelector("#create");
  const fields = document.querySelector("#create-fields");
  const error = document.querySelector("#create-error");
  const created = document.querySelector("#created");
  const select = form.elements.chart;
  select.append(...charts.charts.map((name) => h("option", { value: name }, name)));
  select.value = charts.default;
  const showFields = async () => {
    const chart = await api(`/charts/${encodeURIComponent(select.value)}`);
    fields.replaceChildren(
      ...Object.entries(chart.createFields).map(([name, type]) =>
        h(
          "label",
          {},
          `${name} (JSON ${type})`,
          h("textarea", { name, rows: "2", spellcheck: "false", "data-type": type, "aria-label": name }),
        ),
      ),
    );
  };
  select.addEventListener("change", showFields);
  await showFields();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = { chart: select.value };
    try {
      for (const area of fields.querySelectorAll("textarea")) {
        body[area.name] = area.dataset.type === "string" ? area.value : JSON.parse(area.value);
      }
    } catch (problem) {
      showProblem(error, new Error(`not JSON: ${problem.message}`));
      return;
    }
    try {
      const view = await api("/orders", { method: "POST", body });
      take(view);
      render();
      const link = h("a", { href: `order.html?id=${encodeURIComponent(view.id)}` }, view.id);
      created.replaceChildren("Created ", link);
      created.hidden = false;
    } catch (problem) {
      showProblem(error, problem);
    }
  });
}

setInterval(() => {
  for (const cell of rows.querySelectorAll("[data-since]")) cell.textContent = age(cell.dataset.since);
}, 1000);
more.addEventListener("click", () => loadPage(cursor));
setUpTokenForm();
connect();
try {
  const charts = await api("/charts");
  await Promise.all([setUpFilters(charts), setUpCreate(charts)]);
} catch (error) {
  showProblem(listError, error);
}
