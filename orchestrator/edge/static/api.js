// The dashboard's one way to the server: JSON over fetch with the API token, the
// WebSockets with ?access_token, RFC 9457 problems as errors, and the token prompt.
//
// The pages themselves load without a token; when the server answers 401 (or closes a
// socket with 4401) the header's token form appears, and the token is kept in
// localStorage for the next page.

const TOKEN_KEY = "orchestrator.apiToken";
const UNAUTHORIZED = 4401;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

/** Shows the token form in the page header, with ``reason`` when a token was refused. */
export function askForToken(reason) {
  const form = document.querySelector("#auth");
  form.hidden = false;
  form.querySelector(".reason").textContent = reason;
  form.querySelector("input").focus();
}

/** Wires the header's token form: saving a token (or clearing it) reloads the page. */
export function setUpTokenForm() {
  const form = document.querySelector("#auth");
  const forget = form.querySelector("button.forget");
  forget.hidden = !token();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, form.querySelector("input").value.trim());
    location.reload();
  });
  forget.addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  document.querySelector("#show-auth").addEventListener("click", () => askForToken(""));
}

/** One API call; resolves to the JSON body, or throws an ApiError carrying the problem. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json, application/problem+json" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { title: response.statusText, detail: text };
  }
  if (!response.ok) {
    if (response.status === 401) askForToken("This server needs an API token.");
    throw new ApiError(response.status, data ?? { title: response.statusText });
  }
  return data;
}

/** A WebSocket to ``path`` (with the token); ``onClose(code)`` runs unless it was 4401. */
export function openSocket(path, { onMessage, onClose }) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token()) url.searchParams.set("access_token", token());
  const socket = new WebSocket(url);
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (event.code === UNAUTHORIZED) askForToken("This server needs an API token.");
    else onClose(event.code);
  });
  return socket;
}

/** Shows a problem (or any error) in ``box``: title, status, detail, and the fields a
 * problem adds where they help (``field``, ``allowed``, ``version``). */
export function showProblem(box, error) {
  const problem = error instanceof ApiError ? error.problem : { title: String(error) };
  const lines = [`${problem.title ?? "Error"}${problem.status ? ` (${problem.status})` : ""}`];
  if (problem.detail) lines.push(problem.detail);
  if (problem.field) lines.push(`field: ${problem.field}`);
  if (problem.allowed) lines.push(`allowed now: ${problem.allowed.join(", ") || "nothing"}`);
  if (problem.version !== undefined) lines.push(`current version: ${problem.version}`);
  box.replaceChildren(...lines.map((line) => Object.assign(document.createElement("div"), { textContent: line })));
  box.hidden = false;
}

/** "42s", "3m 5s", "2h 10m", "4d 2h": how long ago ``iso`` was. */
export function age(iso, now = Date.now()) {
  let seconds = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts = [];
  for (const [unit, size] of units) {
    if (seconds >= size || (unit === "s" && !parts.length)) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/** A new element with text and attributes, for building rows without innerHTML. */
export function h(name, attributes = {}, ...children) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}
