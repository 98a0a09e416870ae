// Draws a statechart from GET /charts/{name} as SVG: compound states are labelled boxes
// around their children, transitions are arrows labelled with their events, and a dot
// marks each initial state. ELK (the vendored elk.bundled.js, loaded before this module as
// the global ELK) computes the nested layout; this module only turns its boxes and edge
// routes into SVG, and lights up the states an order is in.

const SVG = "http://www.w3.org/2000/svg";
const STATE_FONT = "14px system-ui, sans-serif";
const EVENT_FONT = "12px ui-monospace, monospace";
const TITLE_ROOM = 34; // the top padding of a compound state, where its name goes
const LINE = 18; // the height of one in-place transition listed in a state's box
const LAYOUT = {
  "elk.algorithm": "layered",
  "elk.direction": "DOWN",
  "elk.hierarchyHandling": "INCLUDE_CHILDREN",
  "elk.edgeRouting": "ORTHOGONAL",
  "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
  "elk.spacing.nodeNode": "28",
  "elk.layered.spacing.nodeNodeBetweenLayers": "36",
  "elk.spacing.edgeLabel": "4",
  "elk.padding": "[top=16,left=16,bottom=16,right=16]",
  // Every coordinate relative to the root, so no offsets need adding up while drawing.
  "elk.json.shapeCoords": "ROOT",
  "elk.json.edgeCoords": "ROOT",
};

let measurer;
function textWidth(text, font) {
  measurer ??= document.createElement("canvas").getContext("2d");
  measurer.font = font;
  return Math.ceil(measurer.measureText(text).width);
}

function el(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// The source of an XState machine root's own transitions (orchestrator.model.MACHINE_ROOT).
const MACHINE_ROOT = "(machine)";

/** A state's name: the last step of its path (its id may be the whole path, when another
 * state has the same name, as ``idle`` in two regions). */
const nameOf = (state) => state.path.split(".").at(-1);

/** The ELK graph of a chart; edges carry the chart's transition they stand for. */
function elkGraph(chart) {
  const edges = [];
  // Transitions with no target run an action in place (ADD_PIZZA): they are listed inside
  // their state's box rather than drawn as loops, which ELK routes poorly.
  const inPlace = new Map();
  for (const transition of chart.transitions.filter((t) => t.target === null)) {
    inPlace.set(transition.source, [...(inPlace.get(transition.source) ?? []), transition]);
  }
  const node = (state) => {
    const actions = inPlace.get(state.id) ?? [];
    const listed = actions.length * LINE;
    if (state.history) return { id: state.id, width: 30, height: 30, state, actions };
    if (!state.children.length) {
      const widest = Math.max(
        textWidth(nameOf(state), STATE_FONT),
        ...actions.map((t) => textWidth(eventText(t), EVENT_FONT)),
      );
      return { id: state.id, width: widest + 36, height: 40 + listed, state, actions };
    }
    return {
      id: state.id,
      state,
      actions,
      layoutOptions: { "elk.padding": `[top=${TITLE_ROOM + listed},left=16,bottom=16,right=16]` },
      children: region(state.id, state.children, state.parallel),
    };
  };
  // A region's initial child gets an arrow from a dot (none inside a parallel state,
  // where every child region is entered).
  const region = (id, states, parallel) => {
    const children = states.map(node);
    const initial = parallel ? undefined : states.find((s) => s.initial && !s.history);
    if (initial) {
      const dot = `${id}:initial`;
      children.unshift({ id: dot, width: 12, height: 12, initialDot: true });
      edges.push({ id: `${dot}->${initial.id}`, sources: [dot], targets: [initial.id] });
    }
    return children;
  };
  const children = region("", chart.states, false);
  chart.transitions.forEach((transition, n) => {
    // An XState machine's own transitions leave its root, which is not drawn.
    if (transition.target === null || transition.source === MACHINE_ROOT) return;
    const text = eventText(transition);
    edges.push({
      id: `t${n}`,
      sources: [transition.source],
      targets: [transition.target],
      labels: [{ text, width: textWidth(text, EVENT_FONT) + 10, height: 18 }],
      transition,
    });
  });
  return { id: "root", layoutOptions: LAYOUT, children, edges };
}

function eventText(transition) {
  // A timer's event is after.<state>.<delay>; on an arrow leaving that state, the delay
  // is what tells: "after kitchenTimeout".
  const timer = `after.${transition.source}.`;
  if (transition.event?.startsWith(timer)) return `after ${transition.event.slice(timer.length)}`;
  return transition.event ?? "(always)";
}

/** The group of one transition, tagged so that ``light`` can mark it enabled. */
function transitionGroup(transition, extra = "") {
  const group = el("g", { class: `transition ${extra}`.trim() });
  group.dataset.event = transition.event ?? "";
  group.dataset.source = transition.source;
  return group;
}

function drawNode(layer, node) {
  if (node.initialDot) {
    layer.append(el("circle", { class: "initial", cx: node.x + 6, cy: node.y + 6, r: 6 }));
    return;
  }
  const { state } = node;
  const kind = state.history ? "history" : state.children.length ? "compound" : "atomic";
  const group = el("g", {
    class: `state ${kind}`,
    "data-state": state.id,
    "data-path": state.path,
    "data-active": "false",
  });
  group.classList.toggle("parallel", state.parallel);
  group.classList.toggle("final", state.final);
  if (state.history) {
    group.append(el("circle", { cx: node.x + 15, cy: node.y + 15, r: 15 }));
    const label = state.history === "deep" ? "H*" : "H";
    group.append(el("text", { x: node.x + 15, y: node.y + 20, "text-anchor": "middle" }, label));
  } else {
    const box = { x: node.x, y: node.y, width: node.width, height: node.height, rx: 10 };
    group.append(el("rect", box));
    if (state.final) {
      const inner = { x: node.x + 4, y: node.y + 4, width: node.width - 8, height: node.height - 8 };
      group.append(el("rect", { ...inner, rx: 7, class: "inner" }));
    }
    const title =
      kind === "compound"
        ? { x: node.x + 14, y: node.y + 22, class: "title" }
        : { x: node.x + node.width / 2, y: node.y + 25, "text-anchor": "middle" };
    const name = nameOf(state);
    group.append(el("text", title, state.parallel ? `${name} (parallel)` : name));
    node.actions.forEach((transition, n) => {
      const line = transitionGroup(transition, "in-place");
      const x = kind === "compound" ? node.x + 14 : node.x + node.width / 2;
      const anchor = kind === "compound" ? "start" : "middle";
      const y = node.y + (kind === "compound" ? 22 : 25) + LINE * (n + 1);
      line.append(el("text", { x, y, "text-anchor": anchor }, `↻ ${eventText(transition)}`));
      group.append(line);
    });
  }
  layer.append(group);
  for (const child of node.children ?? []) drawNode(layer, child);
}

function drawEdge(layer, edge) {
  const group = edge.transition ? transitionGroup(edge.transition) : el("g", { class: "initial" });
  for (const section of edge.sections ?? []) {
    const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint];
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
    group.append(el("path", { d, "marker-end": "url(#arrow)" }));
  }
  for (const label of edge.labels ?? []) {
    group.append(el("rect", { class: "label", x: label.x, y: label.y, width: label.width, height: label.height, rx: 4 }));
    const at = { x: label.x + label.width / 2, y: label.y + 13, "text-anchor": "middle" };
    group.append(el("text", at, label.text));
  }
  layer.append(group);
}

/** Lays out and draws ``chart`` into ``container``; returns a function that lights up the
 * states of an order view (its ``state`` path and ``nextEvents``). */
export async function drawChart(container, chart) {
  const layout = await new globalThis.ELK().layout(elkGraph(chart));
  const svg = el("svg", {
    class: "chart",
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    width: layout.width,
    height: layout.height,
    role: "img",
    "aria-label": `statechart ${chart.name}`,
  });
  const defs = el("defs");
  const marker = el("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z" }));
  defs.append(marker);
  const nodes = el("g", { class: "nodes" });
  const edges = el("g", { class: "edges" });
  for (const node of layout.children) drawNode(nodes, node);
  for (const edge of layout.edges) drawEdge(edges, edge);
  svg.append(defs, nodes, edges);
  container.replaceChildren(svg);

  // States are lit by path: names repeat under different parents, paths do not.
  const pathOf = new Map();
  const index = (states) => {
    for (const state of states) {
      pathOf.set(state.id, state.path);
      index(state.children);
    }
  };
  index(chart.states);
  return (view) => {
    const leaves = view.state.split(",");
    const active = new Set(
      leaves.flatMap((path) => path.split(".").map((_, n, steps) => steps.slice(0, n + 1).join("."))),
    );
    const current = new Set(leaves);
    svg.dataset.state = view.state;
    for (const group of svg.querySelectorAll("g.state")) {
      const path = group.dataset.path;
      group.dataset.active = String(active.has(path));
      group.classList.toggle("active", active.has(path));
      group.classList.toggle("current", current.has(path));
    }
    const next = new Set(view.nextEvents);
    for (const group of svg.querySelectorAll("g.transition[data-source]")) {
      const events = group.dataset.event.split(" ");
      const source = pathOf.get(group.dataset.source);
      const enabled = active.has(source) && events.some((e) => next.has(e));
      group.classList.toggle("enabled", enabled);
    }
  };
}
