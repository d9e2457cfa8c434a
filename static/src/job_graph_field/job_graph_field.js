// License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { Component, onWillStart, onWillUpdateProps, useState } from "@odoo/owl";

import { layoutLayers } from "./job_graph_layout";

const NODE_WIDTH = 220;
const NODE_HEIGHT = 56;
const GAP_X = 56;
const GAP_Y = 14;
const MARGIN = 8;
const LABEL_LENGTH = 32;

/**
 * The job's whole graph (the jobs of its graph_uuid), drawn as nodes and
 * arrows from what runs first to what waits for it, coloured by state;
 * members of a large group are one node with their counts by state
 * (queue.job's get_job_graph()). A click on a node opens its job(s).
 */
export class JobGraphField extends Component {
    static template = "queue_job.JobGraphField";
    static props = { ...standardFieldProps };

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.state = useState({ picture: null });
        onWillStart(() => this.load(this.props));
        onWillUpdateProps((nextProps) => this.load(nextProps));
    }

    async load(props) {
        if (!props.record.resId || !props.record.data[props.name]) {
            this.state.picture = null;
            return;
        }
        const graph = await this.orm.call("queue.job", "get_job_graph", [[props.record.resId]]);
        this.state.picture = this.draw(graph, props.record.fields.state.selection);
    }

    draw(graph, selection) {
        const stateLabels = Object.fromEntries(selection);
        const layers = layoutLayers(graph.nodes.length, graph.edges);
        const tallest = Math.max(...layers.map((layer) => layer.length));
        const place = {};
        layers.forEach((layer, column) => {
            const top = ((tallest - layer.length) * (NODE_HEIGHT + GAP_Y)) / 2;
            layer.forEach((node, row) => {
                place[node] = {
                    x: MARGIN + column * (NODE_WIDTH + GAP_X),
                    y: MARGIN + top + row * (NODE_HEIGHT + GAP_Y),
                };
            });
        });
        const nodes = graph.nodes.map((node, index) => {
            const count = node.job_ids.length;
            const states = Object.entries(node.states);
            const counts = states
                .map(([state, number]) => `${stateLabels[state] || state} ${number}`)
                .join(", ");
            const label = node.label.length > LABEL_LENGTH
                ? `${node.label.slice(0, LABEL_LENGTH - 1)}…`
                : node.label;
            let offset = 0;
            const segments = count === 1 ? [] : states.map(([state, number]) => {
                const width = ((NODE_WIDTH - 2) * number) / count;
                const segment = { state, x: 1 + offset, width };
                offset += width;
                return segment;
            });
            const classes = ["o_queue_job_graph_node"];
            if (count === 1) {
                classes.push(`o_queue_job_graph_state_${states[0][0]}`);
            } else {
                classes.push("o_queue_job_graph_group");
            }
            if (node.current) {
                classes.push("o_queue_job_graph_current");
            }
            return {
                ...node,
                ...place[index],
                label,
                detail: count === 1
                    ? stateLabels[states[0][0]] || states[0][0]
                    : _t("%s jobs", count),
                counts: count === 1 ? "" : counts,
                title: count === 1 ? `${node.label} (${counts})` : `${node.label}: ${counts}`,
                className: classes.join(" "),
                segments,
            };
        });
        const edges = graph.edges.map(([from, to]) => {
            const x1 = place[from].x + NODE_WIDTH;
            const y1 = place[from].y + NODE_HEIGHT / 2;
            const x2 = place[to].x;
            const y2 = place[to].y + NODE_HEIGHT / 2;
            const bend = GAP_X / 2;
            return { from, to, path: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}` };
        });
        return {
            nodes,
            edges,
            width: 2 * MARGIN + layers.length * NODE_WIDTH + (layers.length - 1) * GAP_X,
            height: 2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y,
        };
    }

    get nodeWidth() {
        return NODE_WIDTH;
    }

    get nodeHeight() {
        return NODE_HEIGHT;
    }

    openNode(node) {
        if (node.current) {
            return;
        }
        if (node.job_ids.length === 1) {
            return this.action.doAction({
                type: "ir.actions.act_window",
                res_model: "queue.job",
                res_id: node.job_ids[0],
                views: [[false, "form"]],
            });
        }
        return this.action.doAction({
            type: "ir.actions.act_window",
            name: node.label,
            res_model: "queue.job",
            views: [[false, "list"], [false, "form"]],
            domain: [["id", "in", node.job_ids]],
        });
    }
}

export const jobGraphField = {
    component: JobGraphField,
    displayName: _t("Job Graph"),
    supportedTypes: ["char"],
    fieldDependencies: [{ name: "state", type: "selection" }],
};

registry.category("fields").add("queue_job_graph", jobGraphField);
