// License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
/**
 * Where each node of a job graph goes: in layers from left to right (a node
 * one layer right of the farthest of its dependencies), ordered within each
 * layer so that edges cross little (barycenters of the neighbours, swept
 * back and forth).
 *
 * @param {number} nodeCount nodes are 0 .. nodeCount - 1
 * @param {Array<[number, number]>} edges [dependency, dependent]
 * @returns {Array<Array<number>>} the layers, each the nodes in their order
 */
export function layoutLayers(nodeCount, edges, sweeps = 4) {
    const dependencies = Array.from({ length: nodeCount }, () => []);
    const dependents = Array.from({ length: nodeCount }, () => []);
    for (const [from, to] of edges) {
        dependents[from].push(to);
        dependencies[to].push(from);
    }
    // Longest path from the jobs that wait for nothing, in topological order.
    const layerOf = new Array(nodeCount).fill(0);
    const waiting = dependencies.map((nodes) => nodes.length);
    const ready = [];
    for (let node = 0; node < nodeCount; node++) {
        if (!waiting[node]) {
            ready.push(node);
        }
    }
    for (let next = 0; next < ready.length; next++) {
        const node = ready[next];
        for (const dependent of dependents[node]) {
            layerOf[dependent] = Math.max(layerOf[dependent], layerOf[node] + 1);
            if (!--waiting[dependent]) {
                ready.push(dependent);
            }
        }
    }
    const layers = [];
    for (let node = 0; node < nodeCount; node++) {
        (layers[layerOf[node]] ||= []).push(node);
    }
    const position = new Array(nodeCount);
    const number = (layer) => layer.forEach((node, index) => (position[node] = index));
    layers.forEach(number);
    const reorder = (layer, neighboursOf) => {
        const barycenter = (node) => {
            const neighbours = neighboursOf[node];
            if (!neighbours.length) {
                return position[node];
            }
            return neighbours.reduce((sum, other) => sum + position[other], 0) / neighbours.length;
        };
        const keys = new Map(layer.map((node) => [node, barycenter(node)]));
        layer.sort((a, b) => keys.get(a) - keys.get(b) || position[a] - position[b]);
        number(layer);
    };
    for (let sweep = 0; sweep < sweeps; sweep++) {
        for (let index = 1; index < layers.length; index++) {
            reorder(layers[index], dependencies);
        }
        for (let index = layers.length - 2; index >= 0; index--) {
            reorder(layers[index], dependents);
        }
    }
    return layers;
}
