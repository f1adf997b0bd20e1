// A plan's transitions drawn as a layered graph: each transition's layer is the longest
// path to it along `after` edges, transitions within a layer are ordered by the mean
// position of what they come after (a few barycentre sweeps), and edges are curves from
// each dependency to its dependent, left to right.

import { svg } from "./api.js";

const NODE_WIDTH = 180;
const NODE_HEIGHT = 46;
const COLUMN_GAP = 70;
const ROW_GAP = 18;
const MARGIN = 12;

/** Each transition's layer: 0 without dependencies, else one more than its deepest. */
export function layers(transitions) {
  const byId = new Map(transitions.map((t) => [t.id, t]));
  const layer = new Map();
  const visiting = new Set();
  function depth(id) {
    if (layer.has(id)) return layer.get(id);
    // A cycle (refused at load, so never expected) or an unknown id ends the path.
    if (visiting.has(id) || !byId.has(id)) return -1;
    visiting.add(id);
    const after = byId.get(id).after || [];
    const value = after.reduce((deepest, dep) => Math.max(deepest, depth(dep) + 1), 0);
    visiting.delete(id);
    layer.set(id, value);
    return value;
  }
  for (const t of transitions) depth(t.id);
  return layer;
}

/** The transitions grouped by layer, each layer ordered to keep edges short and uncrossed. */
export function orderedLayers(transitions) {
  const layer = layers(transitions);
  const columns = [];
  for (const t of transitions) {
    const index = layer.get(t.id);
    (columns[index] ||= []).push(t);
  }
  const position = new Map();
  const place = (column) => column.forEach((t, index) => position.set(t.id, index));
  columns.forEach(place);
  for (let sweep = 0; sweep < 4; sweep += 1) {
    for (let index = 1; index < columns.length; index += 1) {
      const weight = new Map();
      for (const t of columns[index]) {
        const known = (t.after || []).filter((dep) => position.has(dep) && layer.get(dep) < index);
        const mean = known.length
          ? known.reduce((sum, dep) => sum + position.get(dep), 0) / known.length
          : position.get(t.id);
        weight.set(t.id, mean);
      }
      // A stable sort: ties keep the plan file's order.
      columns[index].sort((a, b) => weight.get(a.id) - weight.get(b.id));
      place(columns[index]);
    }
  }
  return columns;
}

function clip(text, room) {
  const value = String(text || "");
  return value.length > room ? `${value.slice(0, room - 1)}…` : value;
}

/**
 * The plan's graph as an `<svg data-testid="plan-dag">`: one
 * `<g data-testid="dag-node" data-transition data-state>` per transition.
 * `onSelect(transition)` is called when a node is clicked.
 */
export function drawDag(transitions, onSelect) {
  const columns = orderedLayers(transitions);
  const tallest = Math.max(1, ...columns.map((column) => column.length));
  const width = MARGIN * 2 + columns.length * NODE_WIDTH + Math.max(0, columns.length - 1) * COLUMN_GAP;
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP;
  const at = new Map();
  columns.forEach((column, index) => {
    const offset = ((tallest - column.length) * (NODE_HEIGHT + ROW_GAP)) / 2;
    column.forEach((t, row) => {
      at.set(t.id, {
        x: MARGIN + index * (NODE_WIDTH + COLUMN_GAP),
        y: MARGIN + offset + row * (NODE_HEIGHT + ROW_GAP),
      });
    });
  });

  const root = svg("svg", {
    class: "dag",
    testid: "plan-dag",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "The plan's transitions and their order",
  });
  root.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "dag-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrow" }),
      ),
    ),
  );

  const edges = svg("g", { class: "dag-edges" });
  for (const t of transitions) {
    const to = at.get(t.id);
    for (const dep of t.after || []) {
      const from = at.get(dep);
      if (!from || !to) continue;
      const x1 = from.x + NODE_WIDTH;
      const y1 = from.y + NODE_HEIGHT / 2;
      const x2 = to.x - 2;
      const y2 = to.y + NODE_HEIGHT / 2;
      const bend = Math.max(COLUMN_GAP / 2, (x2 - x1) / 2);
      edges.append(
        svg("path", {
          class: "dag-edge",
          "data-from": dep,
          "data-to": t.id,
          d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
          "marker-end": "url(#dag-arrow)",
        }),
      );
    }
  }
  root.append(edges);

  for (const t of transitions) {
    const { x, y } = at.get(t.id);
    const state = t.state || "pending";
    const node = svg(
      "g",
      {
        class: `dag-node state-${state}${t.execution_id ? " clickable" : ""}`,
        testid: "dag-node",
        "data-transition": t.id,
        "data-state": state,
        transform: `translate(${x},${y})`,
        tabindex: t.execution_id ? 0 : undefined,
      },
      svg("title", { text: `${t.id} · ${t.ref} · ${state}${t.error ? ` · ${t.error.code || ""}` : ""}` }),
      svg("rect", { width: NODE_WIDTH, height: NODE_HEIGHT, rx: 7 }),
      svg("text", { x: 12, y: 19, class: "dag-id", text: clip(t.id, 22) }),
      svg("text", { x: 12, y: 36, class: "dag-ref", text: clip(`${t.ref} · ${state}`, 28) }),
    );
    if (t.execution_id) {
      node.addEventListener("click", () => onSelect(t));
      node.addEventListener("keydown", (event) => {
        if (event.key === "Enter") onSelect(t);
      });
    }
    root.append(node);
  }
  return root;
}
