// The reference for XState behaviour: run a machine config on the real xstate package.
//
// Reads one JSON object on stdin: {"version": 5 | 4, "config": <machine config>,
// "onlyRunning": <bool, see runs() below>,
// "events": [<event object>, ...], "guards": {<name>: <JS expression over context, event,
// params>}}
// and prints one JSON object: {"steps": [{"event", "value", "context", "actions"}, ...]},
// the first step being the start (event null), then one per event (``skipped``: an
// outcome of an invoke that is not running, not sent): the state value as
// sorted dotted paths of the active leaves, the context, and the action names run, in
// order (an action given params as name(<params as JSON>)). Every action name in the config is implemented as "record my name", every invoke
// src as a service that never finishes (a test sends its done or error event itself), so
// the order of actions is XState's own. Test-only: the pytest helper tests/xstate_ref.py
// runs it.
import { readFileSync } from "node:fs";
import * as xstate5 from "xstate";
import * as xstate4 from "xstate4";

const input = JSON.parse(readFileSync(0, "utf8"));
const { version, config, events } = input;
const guardSources = input.guards ?? {};

// Every name used as an action, and every invoke src, anywhere in the config.
const actionNames = new Set();
const srcNames = new Set();
function names(value) {
  const items = Array.isArray(value) ? value : value == null ? [] : [value];
  for (const item of items) {
    if (typeof item === "string") actionNames.add(item);
    else if (item && typeof item.type === "string") actionNames.add(item.type);
  }
}
function transitions(spec) {
  const items = Array.isArray(spec) ? spec : spec == null ? [] : [spec];
  for (const item of items) if (item && typeof item === "object") names(item.actions);
}
function walk(node) {
  names(node.entry);
  names(node.exit);
  for (const spec of Object.values(node.on ?? {})) transitions(spec);
  transitions(node.always);
  transitions(node.onDone);
  for (const spec of Object.values(node.after ?? {})) transitions(spec);
  const invokes = Array.isArray(node.invoke) ? node.invoke : node.invoke ? [node.invoke] : [];
  for (const invoke of invokes) {
    if (typeof invoke.src === "string") srcNames.add(invoke.src);
    transitions(invoke.onDone);
    transitions(invoke.onError);
  }
  for (const child of Object.values(node.states ?? {})) walk(child);
}
walk(config);

let log = [];
// The services started in a step, each as [src, its input as JSON, or null].
let started = [];
const start = (name, input) =>
  started.push([name, input === undefined ? null : JSON.stringify(input)]);
// An action given params is recorded with them: name(<params as JSON>).
const record_action = (name, params) =>
  log.push(params === undefined ? name : `${name}(${JSON.stringify(params)})`);
// v4 hands the action object itself: its keys other than type are its params.
const v4Params = (action) => {
  const { type, exec, ...rest } = action ?? {};
  return Object.keys(rest).length ? rest : undefined;
};
const guard = (source) => new Function("context", "event", "params", `return (${source});`);

function paths(value, prefix = "") {
  if (typeof value === "string") return [prefix + value];
  const out = [];
  for (const [key, child] of Object.entries(value ?? {})) {
    const deeper = paths(child, `${prefix}${key}.`);
    out.push(...(deeper.length ? deeper : [prefix + key]));
  }
  return out.sort();
}

const steps = [];
function record(event, snapshot, skipped = false) {
  steps.push({
    event,
    value: paths(snapshot.value),
    context: snapshot.context ?? null,
    actions: log,
    started,
    skipped,
  });
  log = [];
  started = [];
}

// With "onlyRunning", an invoke's outcome is sent only while the invoke runs, as XState
// would hear it (v5 fails on an unhandled error of an actor); one of an invoke that is not
// running is skipped, and said so.
const OUTCOME_PREFIXES = {
  5: ["xstate.done.actor.", "xstate.error.actor."],
  4: ["done.invoke.", "error.platform."],
}[version];
function runs(event, snapshot) {
  if (!input.onlyRunning) return true;
  const prefix = OUTCOME_PREFIXES?.find((p) => event.type.startsWith(p));
  return prefix === undefined || event.type.slice(prefix.length) in (snapshot.children ?? {});
}

if (version === 5) {
  const { createMachine, createActor, fromCallback } = xstate5;
  const actions = Object.fromEntries(
    [...actionNames].map((name) => [name, (_, params) => record_action(name, params)]),
  );
  const guards = Object.fromEntries(
    Object.entries(guardSources).map(([n, s]) => [
      n,
      ({ context, event }, params) => guard(s)(context, event, params),
    ]),
  );
  const actors = Object.fromEntries(
    [...srcNames].map((n) => [n, fromCallback(({ input }) => {
        start(n, input);
      })]),
  );
  const machine = createMachine(config).provide({ actions, guards, actors });
  const actor = createActor(machine);
  actor.start();
  record(null, actor.getSnapshot());
  input.children = Object.keys(actor.getSnapshot().children ?? {});
  for (const event of events) {
    if (!runs(event, actor.getSnapshot())) {
      record(event, actor.getSnapshot(), true);
      continue;
    }
    actor.send(event);
    record(event, actor.getSnapshot());
  }
  actor.stop(); // its delayed events would keep Node running
  steps[0].children = input.children;
} else if (version === 4) {
  const { createMachine, interpret } = xstate4;
  const actions = Object.fromEntries(
    [...actionNames].map((name) => [
      name,
      (context, event, meta) => record_action(name, v4Params(meta.action)),
    ]),
  );
  const guards = Object.fromEntries(
    Object.entries(guardSources).map(([n, s]) => [
      n,
      (context, event, meta) => guard(s)(context, event, v4Params(meta.cond)),
    ]),
  );
  // v4 hands a service its invoke's data in the event it starts with.
  const services = Object.fromEntries(
    [...srcNames].map((n) => [
      n,
      (context, event, meta) => {
        start(n, meta.data);
        return () => {};
      },
    ]),
  );
  const machine = createMachine(
    { predictableActionArguments: true, ...config },
    { actions, guards, services },
  );
  const service = interpret(machine);
  service.start();
  record(null, service.getSnapshot());
  steps[0].children = Object.keys(service.getSnapshot().children ?? {});
  for (const event of events) {
    if (!runs(event, service.getSnapshot())) {
      record(event, service.getSnapshot(), true);
      continue;
    }
    service.send(event);
    record(event, service.getSnapshot());
  }
  service.stop();
} else {
  throw new Error(`version must be 4 or 5, not ${version}`);
}
process.stdout.write(JSON.stringify({ steps }) + "\n");
