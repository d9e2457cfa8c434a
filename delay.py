# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Build job graphs: ``delayable()``, ``chain()``, ``group()``, ``on_done()``.

Every builder here only records calls and edges in memory. ``delay()``
validates the whole graph it belongs to (every call, every option, no cycle)
before anything is written, then stores all its jobs and edges in one go: a
graph is stored whole or not at all, and since jobs that wait are inserted
waiting, in the same transaction as their edges, no runner can start a
dependent before its dependencies are done.
"""

import logging
import uuid
from collections import deque

from .execution import run_unstored
from .job import Job, must_run_without_delay

_logger = logging.getLogger(__name__)


def chain(*delayables):
    """Run ``delayables`` one after the other; each may be a chain or a group."""
    return DelayableChain(*delayables)


def group(*delayables):
    """Run ``delayables`` in parallel; ``on_done`` waits for all of them."""
    return DelayableGroup(*delayables)


class Graph:
    """A directed graph of hashable vertices, kept in insertion order.

    Peers are listed in the order they were added::

        >>> graph = Graph()
        >>> graph.add_edge("fetch", "import")
        >>> graph.add_edge("fetch", "archive")
        >>> list(graph.topological_sort())
        ['fetch', 'import', 'archive']
    """

    __slots__ = ("_graph",)

    def __init__(self, graph=None):
        # vertex -> its children, as an ordered set (dict keys)
        self._graph = graph if graph is not None else {}

    def add_vertex(self, vertex):
        """Add ``vertex``; adding it again changes nothing."""
        self._graph.setdefault(vertex, {})

    def add_edge(self, parent, child):
        """Make ``child`` depend on ``parent``; adding it again changes nothing."""
        self.add_vertex(child)
        self._graph.setdefault(parent, {})[child] = None

    def vertices(self):
        """The set of vertices."""
        return set(self._graph)

    def edges(self):
        """The ``(parent, child)`` pairs, in the order they were added."""
        return [(parent, child) for parent, children in self._graph.items() for child in children]

    def root_vertices(self):
        """The set of vertices that depend on none."""
        children = {child for children in self._graph.values() for child in children}
        return set(self._graph) - children

    def paths(self, vertex):
        """Yield the longest paths from ``vertex`` that do not loop."""
        path = [vertex]

        def extend():
            ends_here = True
            for child in self._graph[path[-1]]:
                if child not in path:
                    ends_here = False
                    path.append(child)
                    yield from extend()
                    path.pop()
            if ends_here:
                yield list(path)

        yield from extend()

    def topological_sort(self):
        """Yield the vertices, each after all the vertices it depends on.

        Peers come in insertion order. Raises ValueError, once the vertices
        outside the cycle are yielded, if the graph has a cycle.
        """
        parents_left = dict.fromkeys(self._graph, 0)
        for _parent, child in self.edges():
            parents_left[child] += 1
        ready = deque(vertex for vertex, count in parents_left.items() if not count)
        yielded = 0
        while ready:
            vertex = ready.popleft()
            yielded += 1
            yield vertex
            for child in self._graph[vertex]:
                parents_left[child] -= 1
                if not parents_left[child]:
                    ready.append(child)
        if yielded != len(self._graph):
            raise ValueError("the job graph has a cycle: on_done() links loop back")

    def __repr__(self):
        root_vertices = self.root_vertices()
        roots = [vertex for vertex in self._graph if vertex in root_vertices]
        return "\n".join(
            " → ".join(map(repr, path)) for root in roots for path in self.paths(root)
        )


class DelayableGraph(Graph):
    """The graph of :class:`Delayable` objects that one ``delay()`` stores.

    Each delayable belongs to one graph; linking delayables (``on_done``,
    ``chain``, ``group``) merges their graphs into one.
    """

    __slots__ = ()

    def _merge(self, other):
        """Take the vertices and edges of ``other``; returns the merged graph."""
        if other is self:
            return self
        if len(other._graph) > len(self._graph):  # move the smaller graph
            return other._merge(self)
        for vertex, children in other._graph.items():
            self._graph.setdefault(vertex, {}).update(children)
            vertex._graph = self
        other._graph = {}
        return self

    def _link(self, parents, children):
        """Make every delayable of ``children`` wait for every one of ``parents``."""
        graph = self
        for delayable in (*parents, *children):
            graph = graph._merge(delayable._graph)
        for parent in parents:
            for child in children:
                graph.add_edge(parent, child)
        return graph

    def _has_to_execute_directly(self, vertices):
        """True when jobs run inline instead of being stored (no-delay mode)."""
        return any(must_run_without_delay(vertex.recordset.env) for vertex in vertices)

    def delay(self):
        """Validate every delayable, then store the whole graph (or run it,
        in no-delay mode). Returns the job when the graph has only one."""
        delayables = list(self.topological_sort())  # raises on a cycle
        delayed = [delayable for delayable in delayables if delayable._generated_job is not None]
        if delayed:
            raise ValueError(f"{delayed[0]!r} was already delayed")
        jobs = {delayable: delayable._build_job() for delayable in delayables}
        if len(jobs) > 1:
            graph_uuid = str(uuid.uuid4())
            for job_ in jobs.values():
                job_.graph_uuid = graph_uuid
        for parent, child in self.edges():
            jobs[child].depends_on.add(jobs[parent])
            jobs[parent].reverse_depends_on.add(jobs[child])
        for delayable, job_ in jobs.items():
            delayable._generated_job = job_
        if self._has_to_execute_directly(delayables):
            run_unstored(list(jobs.values()))  # topological order
        else:
            Job.store_many(delayables[0].recordset.env, list(jobs.values()))
        return delayables[0]._generated_job if len(delayables) == 1 else None


class _Composite:
    """What chains, groups and single delayables share: ``on_done`` and ``delay``.

    ``_head()`` are the delayables that start the composite, ``_tail()`` the
    ones that end it; all of them belong to one :class:`DelayableGraph`.
    """

    def on_done(self, *delayables):
        """Make ``delayables`` run once all of this is done; returns self."""
        tail = self._tail()
        for delayable in delayables:
            tail[0]._graph._link(tail, delayable._head())
        return self

    def delay(self):
        """Store the whole graph this belongs to (or run it, in no-delay mode)."""
        return self._head()[0]._graph.delay()


class DelayableChain(_Composite):
    """Delayables run in sequence: each waits for the one before it."""

    def __init__(self, *delayables):
        if not delayables:
            raise ValueError("chain() needs at least one delayable")
        self._delayables = delayables
        for before, after in zip(delayables, delayables[1:]):
            before.on_done(after)

    def _head(self):
        return self._delayables[0]._head()

    def _tail(self):
        return self._delayables[-1]._tail()

    def __repr__(self):
        return f"DelayableChain({', '.join(map(repr, self._delayables))})"


class DelayableGroup(_Composite):
    """Delayables run in parallel: one graph, whose members wait for nothing
    of each other."""

    def __init__(self, *delayables):
        if not delayables:
            raise ValueError("group() needs at least one delayable")
        self._delayables = delayables
        members = self._head() + self._tail()
        members[0]._graph._link(members, ())

    def _head(self):
        return [node for delayable in self._delayables for node in delayable._head()]

    def _tail(self):
        return [node for delayable in self._delayables for node in delayable._tail()]

    def __repr__(self):
        return f"DelayableGroup({', '.join(map(repr, self._delayables))})"


class Delayable(_Composite):
    """One method call on a recordset, to become a job of a graph.

    ``record.delayable(priority=20).method(arg)`` records the call and
    returns the delayable, so calls chain as a builder.
    """

    _properties = (
        "priority", "eta", "max_retries", "description", "channel", "identity_key", "timeout",
    )

    def __init__(
        self,
        recordset,
        priority=None,
        eta=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
        timeout=None,
    ):
        self.recordset = recordset
        self._graph = DelayableGraph()
        self._graph.add_vertex(self)
        self._job_method = None
        self._job_args = ()
        self._job_kwargs = {}
        self._generated_job = None
        self._was_split = False
        self.priority = priority
        self.eta = eta
        self.max_retries = max_retries
        self.description = description
        self.channel = channel
        self.identity_key = identity_key
        self.timeout = timeout

    def _head(self):
        return [self]

    def _tail(self):
        return [self]

    def __repr__(self):
        method = self._job_method.__name__ if self._job_method else "?"
        return f"Delayable({self.recordset!r}.{method}(...))"

    def __del__(self):
        # As OCA: a delayable built and forgotten is a job that never runs.
        # (Looked up in __dict__: __getattr__ would ask the records.)
        state = self.__dict__
        if "recordset" in state and not (state.get("_generated_job") or state.get("_was_split")):
            _logger.warning("Delayable %s was prepared but never delayed", self)

    def _job_properties(self):
        """The job properties of this delayable, by name (``priority``, ``eta``...)."""
        return {name: getattr(self, name) for name in self._properties}

    def set(self, *args, **kwargs):
        """Set job properties, from a dict and/or keywords; returns self."""
        for properties in (*args, kwargs):
            for name, value in properties.items():
                if name not in self._properties:
                    raise ValueError(f"{name!r} is not a job property")
                setattr(self, name, value)
        return self

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        method = getattr(self.recordset, name)  # AttributeError for an unknown method
        if not callable(method):
            raise AttributeError(f"{self.recordset._name}.{name} is not a method")

        def store_call(*args, **kwargs):
            if self._job_method is not None:
                raise ValueError(f"{self!r} already has a call: one call per delayable")
            self._job_method = method
            self._job_args = args
            self._job_kwargs = kwargs
            return self

        return store_call

    def split(self, size, chain=False):
        """This call on batches of ``size`` records, as a group (or a chain).

        Descriptions get a `` (split i/n)`` suffix. Returns the new group or
        chain; this delayable itself is not delayed.
        """
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"split size must be a positive integer, got {size!r}")
        if self._job_method is None:
            raise ValueError(f"{self!r} has no call to split")
        records = self.recordset
        count = (len(records) + size - 1) // size
        description = self.description or self._job_method.__name__
        parts = []
        for index in range(count):
            part = Delayable(records[index * size : (index + 1) * size])
            part.set(self._job_properties())
            part.set(description=f"{description} (split {index + 1}/{count})")
            getattr(part, self._job_method.__name__)(*self._job_args, **self._job_kwargs)
            parts.append(part)
        self._was_split = True
        return (DelayableChain if chain else DelayableGroup)(*parts)

    def _build_job(self):
        if self._job_method is None:
            raise ValueError(f"{self!r}: call a method on the delayable before delay()")
        return Job(
            self._job_method,
            args=self._job_args,
            kwargs=self._job_kwargs,
            **self._job_properties(),
        )


class DelayableRecordset:
    """``record.with_delay(...)``: the next method call is stored as a job.

    ``record.with_delay(priority=5).method(arg)`` returns the :class:`Job`.
    Each call is a job of its own, with the properties given here.
    """

    __slots__ = ("delayable",)

    def __init__(
        self,
        recordset,
        priority=None,
        eta=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
        timeout=None,
    ):
        #: The :class:`Delayable` of the call (OCA's attribute: tests read
        #: the properties of the job from it).
        self.delayable = Delayable(
            recordset,
            priority=priority,
            eta=eta,
            max_retries=max_retries,
            description=description,
            channel=channel,
            identity_key=identity_key,
            timeout=timeout,
        )

    @property
    def recordset(self):
        return self.delayable.recordset

    def __getattr__(self, name):
        if name.startswith("__") or name == "delayable":
            raise AttributeError(name)
        if self.delayable._job_method is not None:
            # A second call is a job of its own, with the same properties.
            done = self.delayable
            self.delayable = Delayable(done.recordset, **done._job_properties())
        store_call = getattr(self.delayable, name)  # AttributeError for an unknown method

        def delay(*args, **kwargs):
            return store_call(*args, **kwargs).delay()

        return delay

    def __str__(self):
        return f"DelayableRecordset({self.recordset._name}{self.recordset._ids!r})"

    __repr__ = __str__
