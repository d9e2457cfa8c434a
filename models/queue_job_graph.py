# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The picture of a job's graph on its form: nodes and edges for the
``queue_job_graph`` widget (``static/src/job_graph_field``)."""

import collections

from odoo import api, models


class QueueJob(models.Model):
    _inherit = "queue.job"

    #: Jobs of a graph that wait for the same jobs and are waited for by the
    #: same jobs (the members of a group) are drawn as one node beyond this many.
    _graph_collapse_threshold = 10

    @api.readonly
    def get_job_graph(self):
        """The graph of this job (its ``graph_uuid``), as the widget draws it.

        Returns ``{"nodes": [...], "edges": [[from, to], ...]}``: a node is
        ``{"job_ids", "label", "states": {state: count}, "current"}``, an edge
        goes from a node's index to the index of a node that waits for it.
        Only the jobs the user may read are drawn. Jobs sharing their
        dependencies and dependents, more than
        :attr:`_graph_collapse_threshold` of them, make one node; this job
        always has a node of its own.
        """
        self.ensure_one()
        jobs = (
            self.search([("graph_uuid", "=", self.graph_uuid)], order="id")
            if self.graph_uuid
            else self
        )
        self.env.cr.execute(
            """
            SELECT dependency_id, job_id FROM queue_job_dependency
             WHERE job_id = ANY(%(ids)s) AND dependency_id = ANY(%(ids)s)
            """,
            {"ids": jobs.ids},
        )
        edges = self.env.cr.fetchall()
        dependencies = collections.defaultdict(set)
        dependents = collections.defaultdict(set)
        for dependency, dependent in edges:
            dependencies[dependent].add(dependency)
            dependents[dependency].add(dependent)
        alike = collections.defaultdict(list)
        for job in jobs - self:
            neighbours = (frozenset(dependencies[job.id]), frozenset(dependents[job.id]))
            alike[neighbours].append(job)
        members = [[self]] if self in jobs else []
        for similar in alike.values():
            if len(similar) > self._graph_collapse_threshold:
                members.append(similar)
            else:
                members.extend([job] for job in similar)
        node_of = {job.id: index for index, node_jobs in enumerate(members) for job in node_jobs}
        nodes = [self._graph_node(node_jobs) for node_jobs in members]
        return {
            "nodes": nodes,
            "edges": [
                list(edge)
                for edge in sorted(
                    {(node_of[dependency], node_of[dependent]) for dependency, dependent in edges}
                )
            ],
        }

    def _graph_node(self, jobs):
        states = collections.Counter(job.state for job in jobs)
        names = {job.name or job.channel_method_name for job in jobs}
        label = names.pop() if len(names) == 1 else self.env._("%s jobs", len(jobs))
        return {
            "job_ids": [job.id for job in jobs],
            "label": label,
            "states": dict(states),
            "current": [job.id for job in jobs] == [self.id],
        }
